// Package tlsconfig builds the server's TLS policy: TLS 1.3 by default,
// TLS 1.2 only on request and then only with ECDHE and AEAD suites, a
// certificate reloadable without dropping connections, and the ephemeral
// self-signed certificate of dev mode.
package tlsconfig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// tls12Suites are the only TLS 1.2 suites allowed: forward secret (ECDHE)
// and AEAD, as in Mozilla's "intermediate" profile.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Server returns the server TLS configuration for minVersion "1.3" (the
// default when empty) or "1.2", serving the certificate from getCert.
func Server(minVersion string, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) (*tls.Config, error) {
	c := &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: getCert,
		NextProtos:     []string{"h2", "http/1.1"},
	}
	switch minVersion {
	case "", "1.3":
	case "1.2":
		c.MinVersion = tls.VersionTLS12
		c.CipherSuites = tls12Suites
	default:
		return nil, fmt.Errorf("tls minimum version %q: use 1.3 or 1.2", minVersion)
	}
	return c, nil
}

// Reloader serves a certificate loaded from files and swaps it atomically
// on Reload, so that a SIGHUP changes it without dropping connections.
type Reloader struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// NewReloader loads the key pair once; an unreadable or mismatched pair is
// an error naming the files.
func NewReloader(certFile, keyFile string) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files again; on error the previous certificate stays.
func (r *Reloader) Reload() error {
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS key pair %s / %s: %w", r.certFile, r.keyFile, err)
	}
	r.cur.Store(&c)
	return nil
}

// GetCertificate is the tls.Config hook.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load(), nil
}

// Current returns the certificate in use.
func (r *Reloader) Current() *tls.Certificate { return r.cur.Load() }

// Static serves one fixed certificate.
func Static(c *tls.Certificate) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c, nil }
}

// DevCert is the ephemeral certificate of dev mode.
type DevCert struct {
	Cert        tls.Certificate
	PEM         []byte
	Fingerprint string // SHA-256 of the DER certificate, colon-separated hex
}

// NewDevCert generates an ECDSA P-256 self-signed certificate for the
// loopback names and the host of listenAddr, valid for 30 days.
func NewDevCert(listenAddr string) (*DevCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate dev TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "moonvault dev"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if host, _, err := net.SplitHostPort(listenAddr); err == nil && host != "" {
		if ip := net.ParseIP(host); ip != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if ip == nil && host != "localhost" {
			tmpl.DNSNames = append(tmpl.DNSNames, host)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create dev certificate: %w", err)
	}
	sum := sha256.Sum256(der)
	return &DevCert{
		Cert:        tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		PEM:         pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Fingerprint: Fingerprint(sum[:]),
	}, nil
}

// Fingerprint formats a digest as colon-separated upper-case hex.
func Fingerprint(sum []byte) string {
	h := strings.ToUpper(hex.EncodeToString(sum))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// WritePEM writes the certificate (public only) where clients can read it.
func (d *DevCert) WritePEM(path string) error {
	if err := os.WriteFile(path, d.PEM, 0o644); err != nil { // #nosec G306 -- a public certificate
		return fmt.Errorf("write dev certificate: %w", err)
	}
	return nil
}

// ClientConfig builds the CLI's TLS settings: the CA file when given, else
// the system roots. TLS 1.2 is the client floor so that the server decides.
func ClientConfig(caFile string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return c, nil
	}
	pemBytes, err := os.ReadFile(caFile) // #nosec G304 -- the user names the CA file
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, errors.New("CA file " + caFile + " holds no PEM certificate")
	}
	c.RootCAs = pool
	return c, nil
}

// PublicKeyDER returns the SubjectPublicKeyInfo DER of a certificate's leaf.
func PublicKeyDER(c *tls.Certificate) ([]byte, error) {
	if c == nil || len(c.Certificate) == 0 {
		return nil, errors.New("no certificate")
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return leaf.RawSubjectPublicKeyInfo, nil
}
