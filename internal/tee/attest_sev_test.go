package tee

import (
	"encoding/hex"
	"errors"
	"testing"
	"time"

	sevabi "github.com/google/go-sev-guest/abi"
	sevclient "github.com/google/go-sev-guest/client"
	test "github.com/google/go-sev-guest/testing"
	testclient "github.com/google/go-sev-guest/testing/client"
	sevtrust "github.com/google/go-sev-guest/verify/trust"

	"github.com/moonvault/moonvault/internal/fips"
)

// sevSimulated returns an attester backed by go-sev-guest's simulated
// AMD secure processor (reports signed by a fake VCEK chained to test
// roots), answering for the given report data.
func sevSimulated(t *testing.T, tcs []test.TestCase) (Attester, map[string][]*sevtrust.AMDRootCerts, map[string][]*sevtrust.AMDRootCerts) {
	t.Helper()
	var qp sevclient.QuoteProvider
	var good, bad map[string][]*sevtrust.AMDRootCerts
	// The simulated AMD secure processor makes its fake root and signing
	// keys with a deterministic generator, which Go's FIPS 140-3 module
	// refuses under GODEBUG=fips140=only; it stands in for AMD hardware,
	// outside the vault's boundary.
	fips.Outside(func() {
		qp, good, bad, _ = testclient.GetSevQuoteProvider(tcs, &test.DeviceOptions{Now: time.Now(), Product: sevabi.DefaultSevProduct()}, t)
	})
	return &sevAttester{qp: qp}, good, bad
}

func TestSEVSNPAttestAndVerify(t *testing.T) {
	nonce, spki := newNonce(t, 32), newSPKI(t)
	rd := ReportData(nonce, spki)
	a, goodRoots, badRoots := sevSimulated(t, []test.TestCase{{Name: "bound", Input: rd, Output: test.TestRawReport(rd)}})

	att, err := Attest(a, nonce, spki)
	if err != nil {
		t.Fatalf("Attest: %v", err)
	}
	if att.TEE != KindSEVSNP || len(att.Report) <= 1184 {
		t.Fatalf("Attest = tee %q, %d report bytes; want sev-snp with report and certificates", att.TEE, len(att.Report))
	}
	// The simulated guest policy has DEBUG set, hence AllowDebug.
	ok := VerifyOptions{SEVTrustedRoots: goodRoots, AllowDebug: true}
	if err := Verify(att, nonce, spki, ok); err != nil {
		t.Fatalf("Verify: %v", err)
	}

	m, err := Measurement(att)
	if err != nil || len(m) != 48 {
		t.Fatalf("Measurement = %x, %v", m, err)
	}
	withM := ok
	withM.Measurement = m
	if err := Verify(att, nonce, spki, withM); err != nil {
		t.Fatalf("Verify with the expected measurement: %v", err)
	}
	wrongM := append([]byte(nil), m...)
	wrongM[0] ^= 0xff
	otherNonce := newNonce(t, 32)
	otherRD := ReportData(otherNonce, spki)
	relabelled := *att
	relabelled.ReportData = hex.EncodeToString(otherRD[:])
	tampered := *att
	tampered.Report = append([]byte(nil), att.Report...)
	tampered.Report[0x90] ^= 1 // a measurement bit, inside the signed part

	for _, tc := range []struct {
		name  string
		att   *Attestation
		nonce []byte
		key   []byte
		opts  VerifyOptions
		want  error
	}{
		{"other TLS key", att, nonce, newSPKI(t), ok, ErrReportDataMismatch},
		{"other nonce", att, otherNonce, spki, ok, ErrReportDataMismatch},
		{"report_data relabelled for other nonce", &relabelled, otherNonce, spki, ok, ErrReportDataMismatch},
		{"debug guest refused by default", att, nonce, spki, VerifyOptions{SEVTrustedRoots: goodRoots}, ErrDebugTEE},
		{"other measurement", att, nonce, spki, VerifyOptions{SEVTrustedRoots: goodRoots, AllowDebug: true, Measurement: wrongM}, ErrMeasurementMismatch},
		{"tampered report", &tampered, nonce, spki, ok, nil},
		{"wrong roots", att, nonce, spki, VerifyOptions{SEVTrustedRoots: badRoots, AllowDebug: true}, nil},
		{"real AMD roots do not sign the simulator", att, nonce, spki, VerifyOptions{AllowDebug: true}, nil},
		{"revocation without getter", att, nonce, spki, VerifyOptions{SEVTrustedRoots: goodRoots, AllowDebug: true, CheckRevocations: true}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.att, tc.nonce, tc.key, tc.opts)
			if err == nil {
				t.Fatal("Verify accepted it")
			}
			t.Logf("refused: %v", err)
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

// A device that ignores our report data must not produce an answer.
func TestSEVSNPAttestRefusesUnboundReport(t *testing.T) {
	nonce, spki := newNonce(t, 32), newSPKI(t)
	rd := ReportData(nonce, spki)
	var other [64]byte
	other[0] = 1
	a, _, _ := sevSimulated(t, []test.TestCase{{Name: "unbound", Input: rd, Output: test.TestRawReport(other)}})
	if _, err := Attest(a, nonce, spki); !errors.Is(err, ErrReportDataMismatch) {
		t.Fatalf("Attest = %v, want ErrReportDataMismatch", err)
	}
}
