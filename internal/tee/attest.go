package tee

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/moonvault/moonvault/internal/errkind"
)

// TEE kinds, as reported in Attestation.TEE and Attester.Kind.
const (
	KindSEVSNP = "sev-snp"
	KindTDX    = "tdx"
	KindNone   = "none"
)

// Nonce bounds: at least 64 bits so that a replayed report is unlikely to be
// accepted, at most what fits SHA-512's input comfortably for the API.
const (
	MinNonceSize = 8
	MaxNonceSize = 64
)

var (
	// ErrInvalidNonce: the nonce is missing or outside 8..64 bytes.
	ErrInvalidNonce = errkind.New(errkind.Invalid, "invalid_request", fmt.Sprintf("nonce must be %d to %d bytes", MinNonceSize, MaxNonceSize))
	// ErrNoTLSKey: the TLS public key to bind to is empty.
	ErrNoTLSKey = errkind.New(errkind.Invalid, "", "the TLS public key (SubjectPublicKeyInfo DER) is empty")
	// ErrReportDataMismatch: the report is not bound to this nonce and TLS key.
	ErrReportDataMismatch = errkind.New(errkind.Integrity, "", "report_data does not match SHA-512(nonce || SHA-256(TLS public key)): the report is not bound to this connection and nonce")
	// ErrNoTEE: the server reports that it runs outside a TEE; there is
	// nothing to verify and it must not be trusted as confidential.
	ErrNoTEE = errkind.New(errkind.Denied, "", "the server reports no TEE (tee=none)")
	// ErrDebugTEE: the guest runs with debugging enabled, so the host can read
	// its memory.
	ErrDebugTEE = errkind.New(errkind.Integrity, "", "the TEE guest has debugging enabled: its memory is readable by the host")
	// ErrMeasurementMismatch: a genuine report, but not of the expected workload.
	ErrMeasurementMismatch = errkind.New(errkind.Integrity, "", "the launch measurement is not the expected one")
	// ErrNoReferenceMeasurement: no expected measurement was given, so the
	// report proves a genuine TEE but not which workload.
	ErrNoReferenceMeasurement = errkind.New(errkind.Invalid, "", "no reference measurement to compare with: give the expected value (or allow any measurement explicitly)")
	// ErrCollateralUnchecked: the TCB status and revocation lists could not
	// be checked (offline) and that was not explicitly allowed.
	ErrCollateralUnchecked = errkind.New(errkind.Unavailable, "", "the TCB and revocation collateral was not checked (no access to AMD KDS / Intel PCS); allow unchecked collateral explicitly to accept that")
	// ErrUnknownTEE: the attestation names a TEE kind this build does not know.
	ErrUnknownTEE = errkind.New(errkind.Invalid, "", "unknown TEE kind")
	// ErrTEERequired: require_tee is set and no TEE was detected.
	ErrTEERequired = errkind.New(errkind.Sealed, "tee_required", "a TEE is required (require_tee) and none was detected")
)

// Attestation is the answer of GET /v1/sys/attestation.
type Attestation struct {
	TEE string `json:"tee"` // "sev-snp" | "tdx" | "none"
	// Report is the hardware evidence: for sev-snp the raw attestation report
	// (1184 bytes) followed by the host's certificate table (VCEK/VLEK, ASK,
	// ARK) when the host provides it, as go-sev-guest's quote providers return
	// it; for tdx the raw TDX quote (v4) with its PCK certificate chain.
	Report     []byte `json:"report,omitempty"`
	ReportData string `json:"report_data"` // hex of the 64 bytes bound into Report
}

// Attester produces hardware attestation reports carrying reportData.
type Attester interface {
	Kind() string
	Attest(reportData [64]byte) ([]byte, error)
}

// ReportData binds a report to the caller's nonce and the server's TLS key:
// SHA-512(nonce || SHA-256(SubjectPublicKeyInfo DER)). A client recomputes
// it from the peer certificate of the very TLS connection it asked on
// (x509.Certificate.RawSubjectPublicKeyInfo), so a report relayed from
// another TLS endpoint does not verify.
func ReportData(nonce, tlsPublicKeyDER []byte) [64]byte {
	keyHash := sha256.Sum256(tlsPublicKeyDER)
	h := sha512.New()
	h.Write(nonce)
	h.Write(keyHash[:])
	var out [64]byte
	h.Sum(out[:0])
	return out
}

func checkInputs(nonce, tlsPublicKeyDER []byte) error {
	if len(nonce) < MinNonceSize || len(nonce) > MaxNonceSize {
		return fmt.Errorf("nonce: %d bytes: %w", len(nonce), ErrInvalidNonce)
	}
	if len(tlsPublicKeyDER) == 0 {
		return ErrNoTLSKey
	}
	return nil
}

// Attest asks a for a report bound to nonce and the server's TLS key. With
// the "none" attester the answer carries no report but still the report data,
// so that the endpoint answers honestly outside a TEE.
func Attest(a Attester, nonce, tlsPublicKeyDER []byte) (*Attestation, error) {
	if err := checkInputs(nonce, tlsPublicKeyDER); err != nil {
		return nil, err
	}
	if a == nil {
		a = noneAttester{}
	}
	rd := ReportData(nonce, tlsPublicKeyDER)
	att := &Attestation{TEE: a.Kind(), ReportData: hex.EncodeToString(rd[:])}
	if att.TEE == KindNone {
		return att, nil
	}
	report, err := a.Attest(rd)
	if err != nil {
		return nil, fmt.Errorf("%s attestation report: %w", att.TEE, err)
	}
	// Check what the device returned before handing it out: a driver that
	// ignored our report data would produce an unverifiable answer.
	got, err := parsedReportData(att.TEE, report)
	if err != nil {
		return nil, fmt.Errorf("%s attestation report: %w", att.TEE, err)
	}
	if subtle.ConstantTimeCompare(got, rd[:]) != 1 {
		return nil, fmt.Errorf("%s attestation report: %w", att.TEE, ErrReportDataMismatch)
	}
	att.Report = report
	return att, nil
}

// parsedReportData extracts the report data field of a raw report.
func parsedReportData(kind string, report []byte) ([]byte, error) {
	switch kind {
	case KindSEVSNP:
		p, err := parseSEV(report)
		if err != nil {
			return nil, err
		}
		return p.GetReport().GetReportData(), nil
	case KindTDX:
		q, err := parseTDX(report)
		if err != nil {
			return nil, err
		}
		return q.GetTdQuoteBody().GetReportData(), nil
	default:
		return nil, fmt.Errorf("%q: %w", kind, ErrUnknownTEE)
	}
}

// noneAttester stands for "no TEE detected".
type noneAttester struct{}

func (noneAttester) Kind() string { return KindNone }
func (noneAttester) Attest([64]byte) ([]byte, error) {
	return nil, errors.New("no TEE: cannot produce an attestation report")
}

// Policy decides whether the vault may unseal where it runs.
type Policy struct {
	RequireTEE bool
}

// Check returns ErrTEERequired when a TEE is required and a is not one. The
// core calls it before unsealing.
func (p Policy) Check(a Attester) error {
	if !p.RequireTEE {
		return nil
	}
	if a == nil || a.Kind() == KindNone {
		return ErrTEERequired
	}
	return nil
}
