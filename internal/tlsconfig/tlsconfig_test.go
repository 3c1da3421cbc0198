package tlsconfig

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writePair(t *testing.T, dir string) (cert, key string, der []byte) {
	t.Helper()
	dc, err := NewDevCert("127.0.0.1:8200")
	if err != nil {
		t.Fatal(err)
	}
	k, _ := x509.MarshalECPrivateKey(dc.Cert.PrivateKey.(*ecdsa.PrivateKey))
	cert, key = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := os.WriteFile(cert, dc.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: k}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key, dc.Cert.Certificate[0]
}

// TestReload: SIGHUP's Reload swaps the served certificate; a broken file
// keeps the previous one.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	cert, key, der1 := writePair(t, dir)
	r, err := NewReloader(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := r.GetCertificate(nil)
	if string(got.Certificate[0]) != string(der1) {
		t.Fatal("first certificate not served")
	}
	_, _, der2 := writePair(t, dir)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if string(r.Current().Certificate[0]) != string(der2) {
		t.Fatal("reload did not swap the certificate")
	}
	if err := os.WriteFile(cert, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil {
		t.Fatal("garbage certificate accepted")
	}
	if string(r.Current().Certificate[0]) != string(der2) {
		t.Fatal("a failed reload dropped the working certificate")
	}
}

func TestServerPolicy(t *testing.T) {
	c, err := Server("", nil)
	if err != nil || c.MinVersion != tls.VersionTLS13 {
		t.Fatalf("default = %v %v", c, err)
	}
	c, err = Server("1.2", nil)
	if err != nil || c.MinVersion != tls.VersionTLS12 {
		t.Fatal("1.2 not honoured")
	}
	for _, s := range c.CipherSuites {
		name := tls.CipherSuiteName(s)
		if !(strings.Contains(name, "ECDHE") && (strings.Contains(name, "GCM") || strings.Contains(name, "CHACHA20"))) {
			t.Errorf("TLS 1.2 suite %s is not ECDHE+AEAD", name)
		}
	}
	if _, err := Server("1.1", nil); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}
	dc, err := NewDevCert("127.0.0.1:8200")
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(dc.Cert.Certificate[0])
	if leaf.PublicKeyAlgorithm != x509.ECDSA || len(dc.Fingerprint) != 95 {
		t.Fatalf("dev cert: %v %q", leaf.PublicKeyAlgorithm, dc.Fingerprint)
	}
}
