package tee

import (
	"encoding/hex"
	"testing"
)

// FuzzVerifyReport feeds untrusted report bytes (what a client receives from
// a server it does not trust yet) to the parsers and Verify: they must
// refuse without panicking.
func FuzzVerifyReport(f *testing.F) {
	f.Add(true, make([]byte, 1184))
	f.Add(false, make([]byte, 632))
	nonce := []byte("fuzz-nonce-0123")
	key := []byte("fuzz-spki")
	rd := ReportData(nonce, key)
	f.Fuzz(func(t *testing.T, sev bool, report []byte) {
		kind := KindTDX
		if sev {
			kind = KindSEVSNP
		}
		_, _ = parsedReportData(kind, report)
		att := &Attestation{TEE: kind, Report: report, ReportData: hex.EncodeToString(rd[:])}
		if err := Verify(att, nonce, key, VerifyOptions{}); err == nil {
			t.Fatalf("Verify accepted fuzzed %s report", kind)
		}
	})
}
