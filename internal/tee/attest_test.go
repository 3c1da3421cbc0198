package tee

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"
)

func newSPKI(t testing.TB) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func newNonce(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReportDataVector(t *testing.T) {
	raw, err := os.ReadFile("testdata/report_data_vector.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Nonce      string `json:"nonce"`
		SPKI       string `json:"spki"`
		ReportData string `json:"report_data"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	nonce, _ := hex.DecodeString(v.Nonce)
	spki, _ := hex.DecodeString(v.SPKI)
	got := ReportData(nonce, spki)
	if hex.EncodeToString(got[:]) != v.ReportData {
		t.Fatalf("ReportData = %x, want %s", got, v.ReportData)
	}
}

func TestAttestInputs(t *testing.T) {
	spki := newSPKI(t)
	for _, tc := range []struct {
		name  string
		nonce []byte
		key   []byte
		want  error
	}{
		{"nonce 8 bytes", make([]byte, 8), spki, nil},
		{"nonce 64 bytes", make([]byte, 64), spki, nil},
		{"nonce 7 bytes", make([]byte, 7), spki, ErrInvalidNonce},
		{"nonce 65 bytes", make([]byte, 65), spki, ErrInvalidNonce},
		{"no nonce", nil, spki, ErrInvalidNonce},
		{"no key", make([]byte, 16), nil, ErrNoTLSKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Attest(noneAttester{}, tc.nonce, tc.key)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Attest err = %v, want %v", err, tc.want)
			}
		})
	}
}

// On this machine there is no TEE: Detect must say so, and the endpoint
// answers honestly with no report.
func TestDetectNoTEEHere(t *testing.T) {
	a := Detect()
	if a.Kind() != KindNone {
		t.Fatalf("Detect().Kind() = %q on a machine without a TEE", a.Kind())
	}
	nonce, spki := newNonce(t, 32), newSPKI(t)
	att, err := Attest(a, nonce, spki)
	if err != nil {
		t.Fatal(err)
	}
	want := ReportData(nonce, spki)
	if att.TEE != KindNone || att.Report != nil || att.ReportData != hex.EncodeToString(want[:]) {
		t.Fatalf("Attest = %+v", att)
	}
	js, err := json.Marshal(att)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(js, []byte(`"report"`)) || !bytes.Contains(js, []byte(`"tee":"none"`)) {
		t.Errorf("JSON = %s", js)
	}
	if err := Verify(att, nonce, spki, VerifyOptions{}); !errors.Is(err, ErrNoTEE) {
		t.Errorf("Verify(none) = %v, want ErrNoTEE", err)
	}
	if err := Verify(att, newNonce(t, 32), spki, VerifyOptions{}); !errors.Is(err, ErrReportDataMismatch) {
		t.Errorf("Verify(none, other nonce) = %v, want ErrReportDataMismatch", err)
	}
}

func TestPolicyCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Policy
		a    Attester
		want error
	}{
		{"not required, none", Policy{}, noneAttester{}, nil},
		{"not required, nil", Policy{}, nil, nil},
		{"required, none", Policy{RequireTEE: true}, noneAttester{}, ErrTEERequired},
		{"required, nil", Policy{RequireTEE: true}, nil, ErrTEERequired},
		{"required, sev-snp", Policy{RequireTEE: true}, &sevAttester{}, nil},
		{"required, tdx", Policy{RequireTEE: true}, &tdxAttester{}, nil},
		{"required, detected here", Policy{RequireTEE: true}, Detect(), ErrTEERequired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.p.Check(tc.a); !errors.Is(err, tc.want) {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestVerifyRejectsMalformed(t *testing.T) {
	nonce, spki := newNonce(t, 16), newSPKI(t)
	rd := ReportData(nonce, spki)
	good := hex.EncodeToString(rd[:])
	for _, tc := range []struct {
		name string
		att  *Attestation
		want error
	}{
		{"nil", nil, nil},
		{"bad hex", &Attestation{TEE: KindSEVSNP, ReportData: "zz"}, nil},
		{"unknown tee", &Attestation{TEE: "sgx", ReportData: good}, ErrUnknownTEE},
		{"sev short report", &Attestation{TEE: KindSEVSNP, ReportData: good, Report: []byte{1, 2, 3}}, nil},
		{"tdx short quote", &Attestation{TEE: KindTDX, ReportData: good, Report: []byte{1, 2, 3}}, nil},
		{"sev no report", &Attestation{TEE: KindSEVSNP, ReportData: good}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.att, nonce, spki, VerifyOptions{})
			if err == nil {
				t.Fatal("Verify accepted a malformed attestation")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}
