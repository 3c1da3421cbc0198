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

// VerifyOptions tunes Verify. The zero value verifies offline against the
// vendors' roots embedded in go-sev-guest and go-tdx-guest, rejects debug
// guests, and checks no revocation lists.
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
	// CheckRevocations checks CRLs; it needs the getter of the TEE kind.
	CheckRevocations bool
	// Now is the time for certificate validity; zero means time.Now().
	Now time.Time
	// Measurement, when set, is the launch measurement the client expects
	// (SEV-SNP MEASUREMENT, TDX MRTD); a genuine report of another workload
	// is refused with ErrMeasurementMismatch.
	Measurement []byte
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
		CheckRevocations:    opts.CheckRevocations && opts.SEVGetter != nil,
		Now:                 opts.Now,
	}
	if opts.CheckRevocations && opts.SEVGetter == nil {
		return errors.New("verify options: CheckRevocations needs SEVGetter to fetch the CRL")
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
	return checkMeasurement(a.GetReport().GetMeasurement(), opts.Measurement)
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
	if opts.CheckRevocations && opts.TDXGetter == nil {
		return errors.New("verify options: CheckRevocations needs TDXGetter to fetch the CRLs")
	}
	vo := &tdxverify.Options{
		TrustedRoots:     opts.TDXTrustedRoots,
		GetCollateral:    opts.TDXGetter != nil,
		CheckRevocations: opts.CheckRevocations,
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
	return checkMeasurement(q.GetTdQuoteBody().GetMrTd(), opts.Measurement)
}

func checkMeasurement(got, want []byte) error {
	if want == nil {
		return nil
	}
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return fmt.Errorf("measurement %x, expected %x: %w", got, want, ErrMeasurementMismatch)
	}
	return nil
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
