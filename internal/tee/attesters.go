package tee

import (
	sevclient "github.com/google/go-sev-guest/client"
	tdxclient "github.com/google/go-tdx-guest/client"
)

// sevAttester asks the AMD secure processor for an extended report: the
// report followed by the host-provided certificate table.
type sevAttester struct{ qp sevclient.QuoteProvider }

func (*sevAttester) Kind() string { return KindSEVSNP }
func (a *sevAttester) Attest(reportData [64]byte) ([]byte, error) {
	return a.qp.GetRawQuote(reportData)
}

// tdxAttester asks the TDX quoting enclave for a quote; qp is a
// tdxclient.QuoteProvider or (deprecated) tdxclient.Device.
type tdxAttester struct{ qp any }

func (*tdxAttester) Kind() string { return KindTDX }
func (a *tdxAttester) Attest(reportData [64]byte) ([]byte, error) {
	return tdxclient.GetRawQuote(a.qp, reportData)
}
