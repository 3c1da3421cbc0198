//go:build linux

package tee

import (
	"bytes"
	"os"

	"github.com/google/go-configfs-tsm/configfs/linuxtsm"
	"github.com/google/go-configfs-tsm/report"
	sevclient "github.com/google/go-sev-guest/client"
	tdxclient "github.com/google/go-tdx-guest/client"
)

const tdxGuestDevice = "/dev/tdx_guest"

// Detect finds the TEE this process runs in: SEV-SNP through configfs-tsm
// (/sys/kernel/config/tsm/report) or /dev/sev-guest, then TDX through
// configfs-tsm or /dev/tdx_guest; otherwise the "none" attester. Probing
// creates a configfs entry, so call it once at start-up.
func Detect() Attester {
	if qp, err := sevclient.GetQuoteProvider(); err == nil {
		return &sevAttester{qp: qp}
	}
	if _, err := os.Stat(tdxGuestDevice); err == nil || configfsProvider() == "tdx_guest" {
		qp, err := tdxclient.GetQuoteProvider()
		if err == nil {
			return &tdxAttester{qp: qp}
		}
	}
	return noneAttester{}
}

// configfsProvider names the configfs-tsm report provider ("sev_guest",
// "tdx_guest"), or "" when configfs-tsm is absent.
func configfsProvider() string {
	c, err := linuxtsm.MakeClient()
	if err != nil {
		return ""
	}
	r, err := report.Create(c, &report.Request{})
	if err != nil {
		return ""
	}
	defer r.Destroy()
	p, err := r.ReadOption("provider")
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(p))
}
