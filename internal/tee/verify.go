package tee

import (
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	sevabi "github.com/google/go-sev-guest/abi"
	sevpb "github.com/google/go-sev-guest/proto/sevsnp"
	sevverify "github.com/google/go-sev-guest/verify"
	sevtrust "github.com/google/go-sev-guest/verify/trust"
	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
	tdxverify "github.com/google/go-tdx-guest/verify"
	tdxtrust "github.com/google/go-tdx-guest/verify/trust"
)

// VerifyOptions tunes Verify. The zero value is strict and refuses every
// report: it asks for a reference measurement (Measurement or
// Measurements) and for the TCB and revocation collateral to be checked
// (SEVGetter / TDXGetter), unless AllowAnyMeasurement or
// AllowUncheckedCollateral say explicitly that the caller does without.
// Debug guests are refused.
type VerifyOptions struct {
	// SEVTrustedRoots replaces AMD's embedded ARK/ASK roots, keyed by
	// product line ("Milan", "Genoa"); tests pass the simulated roots.
	SEVTrustedRoots map[string][]*sevtrust.AMDRootCerts
	// SEVGetter fetches missing VCEK certificates (and CRLs) from AMD KDS.
	// Nil keeps verification offline: the report must carry its VCEK.
	SEVGetter sevtrust.HTTPSGetter
	// TDXTrustedRoots replaces Intel's embedded SGX root CA.
	TDXTrustedRoots *x509.CertPool
	// TDXGetter fetches the TCB info, QE identity and CRLs (collateral) from
	// Intel PCS. Nil keeps verification offline: only the quote's signature
	// and PCK chain are checked, not the TCB status.
	TDXGetter tdxtrust.HTTPSGetter
	// CheckRevocations is kept for callers of earlier versions: with a
	// getter, revocation lists are always checked.
	CheckRevocations bool
	// Now is the time for certificate validity; zero means time.Now().
	Now time.Time
	// Measurement and Measurements are the launch measurements the client
	// accepts (SEV-SNP MEASUREMENT, TDX MRTD): a genuine report of another
	// workload is refused with ErrMeasurementMismatch.
	Measurement  []byte
	Measurements [][]byte
	// AllowAnyMeasurement accepts a report without comparing its
	// measurement with a reference value: it then proves a genuine TEE, not
	// which workload runs in it.
	AllowAnyMeasurement bool
	// AllowUncheckedCollateral accepts a report whose TCB status and
	// revocation lists were not checked (no getter: offline verification).
	AllowUncheckedCollateral bool
	// AllowDebug accepts guests with debugging enabled (tests only: the
	// host can read such a guest's memory).
	AllowDebug bool
}

// Verify checks that att is bound to nonce and the server's TLS key, then
// verifies the report's signature chain up to the vendor's roots. It returns
// ErrNoTEE for a "none" attestation: nothing there can be trusted.
func Verify(att *Attestation, nonce, tlsPublicKeyDER []byte, opts VerifyOptions) error {
	if att == nil {
		return errors.New("attestation: missing")
	}
	if err := checkInputs(nonce, tlsPublicKeyDER); err != nil {
		return err
	}
	want := ReportData(nonce, tlsPublicKeyDER)
	claimed, err := hex.DecodeString(att.ReportData)
	if err != nil {
		return fmt.Errorf("report_data: not hex: %w", err)
	}
	if subtle.ConstantTimeCompare(claimed, want[:]) != 1 {
		return fmt.Errorf("report_data: %w", ErrReportDataMismatch)
	}
	switch att.TEE {
	case KindNone:
		return ErrNoTEE
	case KindSEVSNP:
		return verifySEV(att.Report, want, opts)
	case KindTDX:
		return verifyTDX(att.Report, want, opts)
	default:
		return fmt.Errorf("tee: %q: %w", att.TEE, ErrUnknownTEE)
	}
}

func parseSEV(report []byte) (*sevpb.Attestation, error) {
	if len(report) < sevabi.ReportSize {
		return nil, fmt.Errorf("report: %d bytes, an SEV-SNP report is at least %d", len(report), sevabi.ReportSize)
	}
	a, err := sevabi.ReportCertsToProto(report)
	if err != nil {
		return nil, fmt.Errorf("report: parsing SEV-SNP report: %w", err)
	}
	return a, nil
}

func parseTDX(report []byte) (*tdxpb.QuoteV4, error) {
	q, err := tdxabi.QuoteToProto(report)
	if err != nil {
		return nil, fmt.Errorf("report: parsing TDX quote: %w", err)
	}
	v4, ok := q.(*tdxpb.QuoteV4)
	if !ok {
		return nil, fmt.Errorf("report: unsupported TDX quote format %T", q)
	}
	return v4, nil
}

func verifySEV(report []byte, want [64]byte, opts VerifyOptions) error {
	a, err := parseSEV(report)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(a.GetReport().GetReportData(), want[:]) != 1 {
		return fmt.Errorf("report: %w", ErrReportDataMismatch)
	}
	vo := &sevverify.Options{
		TrustedRoots:        opts.SEVTrustedRoots,
		Getter:              opts.SEVGetter,
		DisableCertFetching: opts.SEVGetter == nil,
		// With a getter the CRL is always fetched and checked: a revoked ASK
		// (AMD's only revocation) must not pass.
		CheckRevocations: opts.SEVGetter != nil,
		Now:              opts.Now,
	}
	if opts.SEVGetter == nil && !opts.AllowUncheckedCollateral {
		return fmt.Errorf("SEV-SNP: %w", ErrCollateralUnchecked)
	}
	if vo.Now.IsZero() {
		vo.Now = time.Now()
	}
	if err := sevverify.SnpAttestation(a, vo); err != nil {
		return fmt.Errorf("report: SEV-SNP signature chain: %w", err)
	}
	// Checked after the signature, so that the policy read is authentic.
	policy, err := sevabi.ParseSnpPolicy(a.GetReport().GetPolicy())
	if err != nil {
		return fmt.Errorf("report: SEV-SNP guest policy: %w", err)
	}
	if policy.Debug && !opts.AllowDebug {
		return ErrDebugTEE
	}
	return checkMeasurement(a.GetReport().GetMeasurement(), opts)
}

// tdAttributesDebug is TD_ATTRIBUTES bit 0 (DEBUG), Intel TDX Module ABI
// specification, TD_ATTRIBUTES definition.
const tdAttributesDebug = 0x01

func verifyTDX(report []byte, want [64]byte, opts VerifyOptions) error {
	q, err := parseTDX(report)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(q.GetTdQuoteBody().GetReportData(), want[:]) != 1 {
		return fmt.Errorf("report: %w", ErrReportDataMismatch)
	}
	return verifyTDXQuote(q, opts)
}

// verifyTDXQuote checks the quote's signature, its PCK chain to Intel's root
// and (with a getter) the TCB collateral, then the debug attribute.
func verifyTDXQuote(q *tdxpb.QuoteV4, opts VerifyOptions) error {
	if opts.TDXGetter == nil && !opts.AllowUncheckedCollateral {
		return fmt.Errorf("TDX: %w", ErrCollateralUnchecked)
	}
	// With a getter, the TCB info, QE identity and CRLs are fetched from
	// Intel PCS and checked: a quote from an out-of-date or revoked
	// platform fails.
	vo := &tdxverify.Options{
		TrustedRoots:     opts.TDXTrustedRoots,
		GetCollateral:    opts.TDXGetter != nil,
		CheckRevocations: opts.TDXGetter != nil,
		Getter:           opts.TDXGetter,
		Now:              opts.Now,
	}
	if vo.Now.IsZero() {
		vo.Now = time.Now()
	}
	if err := tdxverify.TdxQuote(q, vo); err != nil {
		return fmt.Errorf("report: TDX quote signature chain: %w", err)
	}
	if attrs := q.GetTdQuoteBody().GetTdAttributes(); len(attrs) > 0 && attrs[0]&tdAttributesDebug != 0 && !opts.AllowDebug {
		return ErrDebugTEE
	}
	return checkMeasurement(q.GetTdQuoteBody().GetMrTd(), opts)
}

// checkMeasurement compares got with the reference values, after the
// signature checks so that the measurement read is authentic.
func checkMeasurement(got []byte, opts VerifyOptions) error {
	want := opts.Measurements
	if opts.Measurement != nil {
		want = append([][]byte{opts.Measurement}, want...)
	}
	if len(want) == 0 {
		if opts.AllowAnyMeasurement {
			return nil
		}
		return fmt.Errorf("measurement %x: %w", got, ErrNoReferenceMeasurement)
	}
	for _, w := range want {
		if subtle.ConstantTimeCompare(got, w) == 1 {
			return nil
		}
	}
	return fmt.Errorf("measurement %x is not among the %d allowed: %w", got, len(want), ErrMeasurementMismatch)
}

// Measurement returns the launch measurement of an attestation's report
// (SEV-SNP MEASUREMENT, TDX MRTD) so that a client can show it or compare it
// with its reference value. It does not verify the report: call Verify.
func Measurement(att *Attestation) ([]byte, error) {
	if att == nil {
		return nil, errors.New("attestation: missing")
	}
	switch att.TEE {
	case KindSEVSNP:
		a, err := parseSEV(att.Report)
		if err != nil {
			return nil, err
		}
		return a.GetReport().GetMeasurement(), nil
	case KindTDX:
		q, err := parseTDX(att.Report)
		if err != nil {
			return nil, err
		}
		return q.GetTdQuoteBody().GetMrTd(), nil
	case KindNone:
		return nil, ErrNoTEE
	default:
		return nil, fmt.Errorf("tee: %q: %w", att.TEE, ErrUnknownTEE)
	}
}

// FetchCollateral makes Verify fetch the collateral it checks: VCEKs and
// the product CRL from AMD KDS, the TCB info, QE identity and CRLs from
// Intel PCS (over HTTPS, with the libraries' own retries).
func (o *VerifyOptions) FetchCollateral() {
	o.SEVGetter = sevtrust.DefaultHTTPSGetter()
	o.TDXGetter = tdxtrust.DefaultHTTPSGetter()
}
