package tee

import (
	"encoding/hex"
	"errors"
	"testing"
	"time"

	tdxtest "github.com/google/go-tdx-guest/testing"
	"github.com/google/go-tdx-guest/testing/testdata"
)

// go-tdx-guest ships no simulated quoting enclave that signs arbitrary
// report data, only a recorded production quote (tdx_prod_quote_SPR_E4.dat,
// signed through Intel's real PCK chain). We verify that quote's chain to
// Intel's embedded root offline, and check that report-data binding refuses
// it for any nonce and key of ours.

// sampleValidAt is inside the validity of the sample's PCK certificates
// (the time go-tdx-guest's own tests use).
var sampleValidAt = time.Date(2023, time.July, 1, 1, 0, 0, 0, time.UTC)

func TestTDXRecordedQuoteSignatureChain(t *testing.T) {
	q, err := parseTDX(testdata.RawQuote)
	if err != nil {
		t.Fatal(err)
	}
	offline := VerifyOptions{Now: sampleValidAt, AllowUncheckedCollateral: true, AllowAnyMeasurement: true}
	if err := verifyTDXQuote(q, offline); err != nil {
		t.Fatalf("recorded quote: %v", err)
	}
	if err := verifyTDXQuote(q, VerifyOptions{Now: time.Date(2053, 1, 1, 0, 0, 0, 0, time.UTC), AllowUncheckedCollateral: true, AllowAnyMeasurement: true}); err == nil {
		t.Error("recorded quote accepted with expired certificates")
	}

	mrtd, err := Measurement(&Attestation{TEE: KindTDX, Report: testdata.RawQuote})
	if err != nil || len(mrtd) != 48 {
		t.Fatalf("Measurement = %x, %v", mrtd, err)
	}
	if err := verifyTDXQuote(q, VerifyOptions{Now: sampleValidAt, AllowUncheckedCollateral: true, Measurement: mrtd}); err != nil {
		t.Fatalf("recorded quote with its MRTD: %v", err)
	}
	if err := verifyTDXQuote(q, VerifyOptions{Now: sampleValidAt, AllowUncheckedCollateral: true, Measurements: [][]byte{make([]byte, 48), mrtd}}); err != nil {
		t.Fatalf("recorded quote with its MRTD among several: %v", err)
	}
	if err := verifyTDXQuote(q, VerifyOptions{Now: sampleValidAt, AllowUncheckedCollateral: true, Measurement: make([]byte, 48)}); !errors.Is(err, ErrMeasurementMismatch) {
		t.Errorf("recorded quote with another MRTD: %v", err)
	}
	if err := verifyTDXQuote(q, VerifyOptions{Now: sampleValidAt, AllowUncheckedCollateral: true}); !errors.Is(err, ErrNoReferenceMeasurement) {
		t.Errorf("recorded quote without a reference MRTD: %v", err)
	}
	// The TCB info, QE identity and CRLs must be checked unless that is
	// explicitly waived; an unreachable Intel PCS fails.
	if err := verifyTDXQuote(q, VerifyOptions{Now: sampleValidAt, Measurement: mrtd}); !errors.Is(err, ErrCollateralUnchecked) {
		t.Errorf("recorded quote, collateral unchecked: %v", err)
	}
	if err := verifyTDXQuote(q, VerifyOptions{Now: sampleValidAt, Measurement: mrtd, TDXGetter: failingPCS{}}); err == nil {
		t.Error("recorded quote accepted with Intel PCS unreachable")
	}

	tampered := append([]byte(nil), testdata.RawQuote...)
	tampered[0x30+0x200] ^= 1 // a byte of the TD quote body's report data
	tq, err := parseTDX(tampered)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyTDXQuote(tq, offline); err == nil {
		t.Error("tampered quote accepted")
	}
}

func TestTDXBinding(t *testing.T) {
	nonce, spki := newNonce(t, 32), newSPKI(t)
	q, err := parseTDX(testdata.RawQuote)
	if err != nil {
		t.Fatal(err)
	}
	// The quote's own report data, presented as if it were bound to us.
	att := &Attestation{TEE: KindTDX, Report: testdata.RawQuote, ReportData: hex.EncodeToString(q.GetTdQuoteBody().GetReportData())}
	if err := Verify(att, nonce, spki, VerifyOptions{Now: sampleValidAt}); !errors.Is(err, ErrReportDataMismatch) {
		t.Fatalf("Verify = %v, want ErrReportDataMismatch", err)
	}
	// Claiming our report data while carrying the recorded quote.
	rd := ReportData(nonce, spki)
	att.ReportData = hex.EncodeToString(rd[:])
	if err := Verify(att, nonce, spki, VerifyOptions{Now: sampleValidAt}); !errors.Is(err, ErrReportDataMismatch) {
		t.Fatalf("Verify = %v, want ErrReportDataMismatch", err)
	}
	got, err := parsedReportData(KindTDX, testdata.RawQuote)
	if err != nil || len(got) != 64 {
		t.Fatalf("parsedReportData = %x, %v", got, err)
	}
}

// The TDX attester goes through go-tdx-guest's client with its mock quote
// provider; the recorded quote does not carry our report data, so Attest
// refuses to hand it out.
func TestTDXAttesterThroughMockProvider(t *testing.T) {
	nonce, spki := newNonce(t, 32), newSPKI(t)
	rd := ReportData(nonce, spki)
	qp, err := tdxtest.TcQuoteProvider([]tdxtest.TestCase{{Name: "recorded", Input: rd, Quote: testdata.RawQuote}})
	if err != nil {
		t.Fatal(err)
	}
	a := &tdxAttester{qp: qp}
	raw, err := a.Attest(rd)
	if err != nil {
		t.Fatalf("mock provider: %v", err)
	}
	if len(raw) != len(testdata.RawQuote) {
		t.Fatalf("mock quote: %d bytes", len(raw))
	}
	if _, err := Attest(a, nonce, spki); !errors.Is(err, ErrReportDataMismatch) {
		t.Fatalf("Attest = %v, want ErrReportDataMismatch", err)
	}
}

// failingPCS is an Intel PCS that cannot be reached.
type failingPCS struct{}

func (failingPCS) Get(string) (map[string][]string, []byte, error) {
	return nil, nil, errors.New("network unreachable")
}
