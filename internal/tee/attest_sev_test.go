package tee

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"math/big"
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
	// The simulated guest policy has DEBUG set, hence AllowDebug; the
	// collateral checks have their own test (TestSEVSNPCollateral).
	ok := VerifyOptions{SEVTrustedRoots: goodRoots, AllowDebug: true, AllowUncheckedCollateral: true, AllowAnyMeasurement: true}
	if err := Verify(att, nonce, spki, ok); err != nil {
		t.Fatalf("Verify: %v", err)
	}

	m, err := Measurement(att)
	if err != nil || len(m) != 48 {
		t.Fatalf("Measurement = %x, %v", m, err)
	}
	withM := ok
	withM.AllowAnyMeasurement = false
	withM.Measurement = m
	if err := Verify(att, nonce, spki, withM); err != nil {
		t.Fatalf("Verify with the expected measurement: %v", err)
	}
	policy := withM
	policy.Measurement = nil
	policy.Measurements = [][]byte{bytes.Repeat([]byte{0x11}, 48), m}
	if err := Verify(att, nonce, spki, policy); err != nil {
		t.Fatalf("Verify with the measurement among several allowed: %v", err)
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
		{"debug guest refused by default", att, nonce, spki, VerifyOptions{SEVTrustedRoots: goodRoots, AllowUncheckedCollateral: true, Measurement: m}, ErrDebugTEE},
		{"other measurement", att, nonce, spki, VerifyOptions{SEVTrustedRoots: goodRoots, AllowDebug: true, AllowUncheckedCollateral: true, Measurement: wrongM}, ErrMeasurementMismatch},
		{"no measurement among the allowed", att, nonce, spki, VerifyOptions{SEVTrustedRoots: goodRoots, AllowDebug: true, AllowUncheckedCollateral: true, Measurements: [][]byte{wrongM, bytes.Repeat([]byte{0x11}, 48)}}, ErrMeasurementMismatch},
		{"no reference measurement", att, nonce, spki, VerifyOptions{SEVTrustedRoots: goodRoots, AllowDebug: true, AllowUncheckedCollateral: true}, ErrNoReferenceMeasurement},
		{"collateral unchecked", att, nonce, spki, VerifyOptions{SEVTrustedRoots: goodRoots, AllowDebug: true, Measurement: m}, ErrCollateralUnchecked},
		{"tampered report", &tampered, nonce, spki, ok, nil},
		{"wrong roots", att, nonce, spki, VerifyOptions{SEVTrustedRoots: badRoots, AllowDebug: true}, nil},
		{"real AMD roots do not sign the simulator", att, nonce, spki, VerifyOptions{AllowDebug: true}, nil},
		{"revocation without getter", att, nonce, spki, VerifyOptions{SEVTrustedRoots: goodRoots, AllowDebug: true, CheckRevocations: true, Measurement: m}, ErrCollateralUnchecked},
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

// crlGetter serves the product CRL, signed by the simulated ARK, at the
// ASK's distribution point (what AMD KDS does), optionally revoking the ASK.
func crlGetter(t *testing.T, a Attester, revokeASK bool) *test.Getter {
	t.Helper()
	qp, ok := a.(*sevAttester).qp.(*test.QuoteProvider)
	if !ok {
		t.Fatalf("quote provider %T is not the simulator", a.(*sevAttester).qp)
	}
	signer := qp.Device.Signer
	tmpl := &x509.RevocationList{
		Number:             big.NewInt(1),
		ThisUpdate:         time.Now().Add(-time.Hour),
		NextUpdate:         time.Now().Add(24 * time.Hour),
		SignatureAlgorithm: x509.SHA384WithRSAPSS,
	}
	if revokeASK {
		tmpl.RevokedCertificateEntries = []x509.RevocationListEntry{{SerialNumber: signer.Ask.SerialNumber, RevocationTime: time.Now().Add(-time.Minute)}}
	}
	crl, err := x509.CreateRevocationList(rand.Reader, tmpl, signer.Ark, signer.Keys.Ark)
	if err != nil {
		t.Fatal(err)
	}
	return test.SimpleGetter(map[string][]byte{signer.Ask.CRLDistributionPoints[0]: crl})
}

type failingGetter struct{}

func (failingGetter) Get(string) ([]byte, error) { return nil, errors.New("network unreachable") }

// TestSEVSNPCollateral: the revocation list is fetched and checked when a
// getter is given; a revoked ASK or an unreachable KDS fails, and so does
// verifying without collateral unless that is explicitly allowed.
func TestSEVSNPCollateral(t *testing.T) {
	for _, tc := range []struct {
		name   string
		getter func(t *testing.T, a Attester) sevtrust.HTTPSGetter
		allow  bool
		want   error // nil: verifies
		fails  bool
	}{
		{"CRL checked", func(t *testing.T, a Attester) sevtrust.HTTPSGetter { return crlGetter(t, a, false) }, false, nil, false},
		{"ASK revoked", func(t *testing.T, a Attester) sevtrust.HTTPSGetter { return crlGetter(t, a, true) }, false, nil, true},
		{"KDS unreachable", func(*testing.T, Attester) sevtrust.HTTPSGetter { return failingGetter{} }, false, nil, true},
		{"offline, not allowed", nil, false, ErrCollateralUnchecked, true},
		{"offline, allowed explicitly", nil, true, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nonce, spki := newNonce(t, 32), newSPKI(t)
			rd := ReportData(nonce, spki)
			a, roots, _ := sevSimulated(t, []test.TestCase{{Name: "bound", Input: rd, Output: test.TestRawReport(rd)}})
			att, err := Attest(a, nonce, spki)
			if err != nil {
				t.Fatal(err)
			}
			m, _ := Measurement(att)
			opts := VerifyOptions{SEVTrustedRoots: roots, AllowDebug: true, Measurement: m, AllowUncheckedCollateral: tc.allow}
			if tc.getter != nil {
				opts.SEVGetter = tc.getter(t, a)
			}
			err = Verify(att, nonce, spki, opts)
			switch {
			case !tc.fails && err != nil:
				t.Fatalf("Verify: %v", err)
			case tc.fails && err == nil:
				t.Fatal("Verify accepted it")
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}
