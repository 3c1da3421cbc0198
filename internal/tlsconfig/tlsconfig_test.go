package tlsconfig

import (
	"crypto/ecdsa"
	"crypto/fips140"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
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
	// An empty list would mean Go's defaults, CBC suites included.
	if len(c.CipherSuites) == 0 {
		t.Fatal("TLS 1.2 allowed without a cipher suite list")
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

// handshake runs a TLS handshake between a server with policy minVersion
// and a client with cfg over an in-memory connection; it returns the
// client's error and the negotiated state.
func handshake(t *testing.T, minVersion string, client *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	dc, err := NewDevCert("127.0.0.1:8200")
	if err != nil {
		t.Fatal(err)
	}
	srvCfg, err := Server(minVersion, Static(&dc.Cert))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(dc.PEM)
	client.RootCAs, client.ServerName = pool, "127.0.0.1"
	cc, sc := net.Pipe()
	defer cc.Close()
	srvDone := make(chan error, 1)
	go func() {
		defer sc.Close()
		srvDone <- tls.Server(sc, srvCfg).Handshake()
	}()
	conn := tls.Client(cc, client)
	err = conn.Handshake()
	cc.Close()
	<-srvDone
	return conn.ConnectionState(), err
}

// TestHandshakePolicy checks the policy on the wire: what a client offering
// only weak options gets, not only what the config lists.
func TestHandshakePolicy(t *testing.T) {
	tls12 := func(suites ...uint16) *tls.Config {
		return &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: suites} // #nosec G402 -- a deliberately weak client
	}
	for _, c := range []struct {
		name, policy string
		client       *tls.Config
		ok           bool
	}{
		{"default policy, TLS 1.3 client", "", &tls.Config{MinVersion: tls.VersionTLS13}, true},
		{"default policy, TLS 1.2 client", "", tls12(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), false},
		{"1.2 policy, ECDHE+GCM", "1.2", tls12(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), true},
		// ChaCha20-Poly1305 is not FIPS-approved: crypto/tls drops it in FIPS 140-3 mode.
		{"1.2 policy, ECDHE+ChaCha20", "1.2", tls12(tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256), !fips140.Enabled()},
		{"1.2 policy, CBC-SHA only", "1.2", tls12(tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA), false},
		{"1.2 policy, CBC-SHA256 only", "1.2", tls12(tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256), false},
		{"1.2 policy, TLS 1.1 client", "1.2", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false}, // #nosec G402 -- a deliberately old client
	} {
		t.Run(c.name, func(t *testing.T) {
			st, err := handshake(t, c.policy, c.client)
			if c.ok != (err == nil) {
				t.Fatalf("handshake error = %v, want ok=%v (negotiated %s)", err, c.ok, tls.CipherSuiteName(st.CipherSuite))
			}
		})
	}
}
