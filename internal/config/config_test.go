package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/fips"
)

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	hcl := filepath.Join(dir, "c.hcl")
	if err := os.WriteFile(hcl, []byte("listen_address = \"127.0.0.1:9000\"\nlog_level = \"debug\"\nrequire_tee = true\naudit_max_bytes = 42\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	if err := c.LoadFile(hcl); err != nil {
		t.Fatal(err)
	}
	if err := c.LoadEnv([]string{"MOONVAULT_LOG_LEVEL=warn", "MOONVAULT_HSM_PIN=1234", "MOONVAULT_ADDR=https://x", "PATH=/bin"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Set("listen_address", "127.0.0.1:9100"); err != nil {
		t.Fatal(err)
	}
	if c.ListenAddress != "127.0.0.1:9100" || c.LogLevel != "warn" || !c.RequireTEE || c.AuditMaxBytes != 42 || c.Storage != "bolt" {
		t.Fatalf("unexpected merge: %+v", c)
	}
	if c.HSMPIN.Reveal() != "1234" {
		t.Fatal("pin not loaded")
	}
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUnknownSettingSuggestsNearest(t *testing.T) {
	for _, tc := range []struct {
		name, file, body string
	}{
		{"yaml", "c.yaml", "listen_adress: x\n"},
		{"json", "c.json", `{"listen_adress": "x"}`},
		{"hcl", "c.hcl", "listen_adress = \"x\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			err := c.LoadFile(writeFile(t, tc.file, tc.body))
			if err == nil || !strings.Contains(err.Error(), "listen_adress") || !strings.Contains(err.Error(), `"listen_address"`) {
				t.Fatalf("typo not refused with a suggestion: %v", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
	c := Defaults()
	if err := c.LoadEnv([]string{"MOONVAULT_LISTEN_ADRES=x"}); err == nil || !strings.Contains(err.Error(), `"listen_address"`) {
		t.Errorf("env typo: %v", err)
	}
	if err := c.Set("data-dir", "x"); err == nil || !strings.Contains(err.Error(), `"data_dir"`) {
		t.Errorf("Set typo: %v", err)
	}
	if err := c.LoadFile(writeFile(t, "c.hcl", "listen_address = \n")); err == nil || !strings.Contains(err.Error(), "c.hcl:1") {
		t.Errorf("broken file: %v", err)
	}
}

func TestLoadEnvBadValue(t *testing.T) {
	c := Defaults()
	err := c.LoadEnv([]string{"MOONVAULT_REQUIRE_TEE=maybe"})
	if err == nil || !strings.Contains(err.Error(), "MOONVAULT_REQUIRE_TEE") || !strings.Contains(err.Error(), "require_tee") {
		t.Fatalf("bad bool accepted: %v", err)
	}
}

// testPair writes a self-signed certificate and its key.
func testPair(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "t"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(k)
	cert, key = filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	_ = os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	return cert, key
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	cert, key := testPair(t, dir)
	_, otherKey := testPair(t, t.TempDir())
	garbage := writeFile(t, "garbage.pem", "not a certificate")
	lib := writeFile(t, "libfake.so", "")
	valid := func(s *Server) {
		s.DataDir, s.TLSCertFile, s.TLSKeyFile = dir, cert, key
	}
	c := Defaults()
	valid(&c)
	n, err := c.Resolve(Mode{})
	if err != nil {
		t.Fatal(err)
	}
	if n.AccessTokenTTL != 5*time.Minute || n.IdleTimeout != time.Hour || n.TLS.MinVersion != tls.VersionTLS13 || n.HSM != nil || n.EntropyAugmented || !n.SealWrap {
		t.Fatalf("resolved %+v", n)
	}

	for _, tc := range []struct {
		name    string
		mut     func(*Server)
		setting string // the setting the message must name
		says    string
	}{
		{"tls 1.1", func(s *Server) { s.TLSMinVersion = "1.1" }, "tls_min_version", "RFC 8996"},
		{"tls weird", func(s *Server) { s.TLSMinVersion = "tls13" }, "tls_min_version", "use 1.3"},
		{"storage", func(s *Server) { s.Storage = "redis" }, "storage", `unknown storage "redis"`},
		{"postgres url", func(s *Server) { s.Storage = "postgres" }, "postgres_url", "required"},
		{"access ttl range", func(s *Server) { s.AccessTokenTTL = "20m" }, "access_token_ttl", "between"},
		{"duration", func(s *Server) { s.SessionLifetime = "12 hours" }, "session_lifetime", "not a duration"},
		{"entropy", func(s *Server) { s.EntropyMode = "weird" }, "entropy_mode", "weird"},
		{"entropy without hsm", func(s *Server) { s.EntropyMode = "augmentation" }, "entropy_mode", "hsm_lib"},
		{"log level", func(s *Server) { s.LogLevel = "verbose" }, "log_level", "verbose"},
		{"log format", func(s *Server) { s.LogFormat = "xml" }, "log_format", "xml"},
		{"listen", func(s *Server) { s.ListenAddress = "localhost" }, "listen_address", "host:port"},
		{"listen port", func(s *Server) { s.ListenAddress = "127.0.0.1:99999" }, "listen_address", "99999"},
		{"no data dir", func(s *Server) { s.DataDir = "" }, "data_dir", "storage bolt"},
		{"no cert", func(s *Server) { s.TLSCertFile, s.TLSKeyFile = "", "" }, "tls_cert_file", "HTTPS only"},
		{"no key", func(s *Server) { s.TLSKeyFile = "" }, "tls_key_file", "required"},
		{"missing cert", func(s *Server) { s.TLSCertFile = filepath.Join(dir, "nope.pem") }, "tls_cert_file", "no such file"},
		{"missing key", func(s *Server) { s.TLSKeyFile = filepath.Join(dir, "nope.pem") }, "tls_key_file", "no such file"},
		{"garbage cert", func(s *Server) { s.TLSCertFile = garbage }, "tls_cert_file", "not a PEM certificate"},
		{"garbage key", func(s *Server) { s.TLSKeyFile = garbage }, "tls_key_file", "not a PEM private key"},
		{"key mismatch", func(s *Server) { s.TLSKeyFile = otherKey }, "tls_key_file", "does not belong"},
		{"hsm lib missing", func(s *Server) { s.HSMLib, s.HSMTokenLabel, s.HSMPIN = "/nope/lib.so", "t", "1" }, "hsm_lib", "no such file"},
		{"hsm pin missing", func(s *Server) { s.HSMLib, s.HSMTokenLabel = lib, "t" }, "hsm_pin", "missing"},
		{"hsm token missing", func(s *Server) { s.HSMLib, s.HSMPIN = lib, "1" }, "hsm_token_label", "required"},
		{"hsm slot", func(s *Server) { s.HSMLib, s.HSMSlot, s.HSMPIN = lib, "first", "1" }, "hsm_slot", "first"},
		{"hsm settings without lib", func(s *Server) { s.HSMTokenLabel = "t" }, "hsm_lib", "hsm_token_label"},
		{"max request", func(s *Server) { s.MaxRequestBytes = -1 }, "max_request_bytes", "positive"},
		{"audit weird", func(s *Server) { s.Audit = "maybe" }, "audit", "maybe"},
		{"audit off with a file", func(s *Server) { s.Audit, s.AuditFile = "off", "/x/audit.log" }, "audit", "audit_file"},
		{"audit nowhere", func(s *Server) { s.Storage, s.PostgresURL, s.DataDir = "postgres", "postgres://x", "" }, "audit_file", "on by default"},
		{"policy change approvals", func(s *Server) { s.PolicyChangeApprovals = -1 }, "policy_change_approvals", "between 0 and 10"},
		{"approval ttl", func(s *Server) { s.ApprovalTTL = "1d" }, "approval_ttl", "not a duration"},
		{"approval ttl range", func(s *Server) { s.ApprovalTTL = "1s" }, "approval_ttl", "between 1m and 720h"},
		{"approval max pending", func(s *Server) { s.ApprovalMaxPending = 0 }, "approval_max_pending", "between 1 and 100000"},
		{"approval retention", func(s *Server) { s.ApprovalRetention = "30d" }, "approval_retention", "not a duration"},
		{"approval retention range", func(s *Server) { s.ApprovalRetention = "1m" }, "approval_retention", "between 1h and 87840h"},
		{"restore max", func(s *Server) { s.RestoreMaxBytes = 0 }, "restore_max_bytes", "positive"},
		{"restore timeout", func(s *Server) { s.RestoreTimeout = "forever" }, "restore_timeout", "not a duration"},
		{"restore retention", func(s *Server) { s.RestoreRetention = "-1h" }, "restore_retention", "positive"},
		{"trusted proxy name", func(s *Server) { s.TrustedProxies = []string{"10.0.0.0/8", "proxy.example"} }, "trusted_proxies", "proxy.example"},
		{"trusted proxy host bits", func(s *Server) { s.TrustedProxies = []string{"10.1.2.3/8"} }, "trusted_proxies", "10.0.0.0/8"},
		{"hsm mechanism", func(s *Server) { s.HSMLib, s.HSMTokenLabel, s.HSMPIN, s.HSMMechanism = lib, "t", "1", "aes_ctr" }, "hsm_mechanism", "aes_cbc_pad_hmac"},
		{"hsm oaep hash", func(s *Server) { s.HSMLib, s.HSMTokenLabel, s.HSMPIN, s.HSMRSAOAEPHash = lib, "t", "1", "md5" }, "hsm_rsa_oaep_hash", "sha256"},
		{"hsm hmac label", func(s *Server) {
			s.HSMLib, s.HSMTokenLabel, s.HSMPIN, s.HSMHMACKeyLabel = lib, "t", "1", s.HSMKeyLabel
		}, "hsm_hmac_key_label", "differ"},
		{"hsm signing label", func(s *Server) {
			s.HSMLib, s.HSMTokenLabel, s.HSMPIN, s.HSMSigningKeyLabel = lib, "t", "1", s.HSMKeyLabel
		}, "hsm_signing_key_label", "differ"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			valid(&c)
			tc.mut(&c)
			_, err := c.Resolve(Mode{})
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			s, _ := Lookup(tc.setting)
			if !strings.HasPrefix(msg, tc.setting+": ") || !strings.Contains(msg, tc.says) || !strings.Contains(msg, s.Env()) {
				t.Errorf("message %q does not name %s, %s and say %q", msg, tc.setting, s.Env(), tc.says)
			}
		})
	}

	// A PostgreSQL node is stateless (its audit log goes where audit_file
	// says); dev mode needs no certificate.
	c = Defaults()
	c.Storage, c.PostgresURL, c.TLSCertFile, c.TLSKeyFile = "postgres", "postgres://x", cert, key
	c.AuditFile = filepath.Join(dir, "audit.log")
	if _, err := c.Resolve(Mode{}); err != nil {
		t.Errorf("postgres without data_dir: %v", err)
	}
	// Audit is on by default, in the data directory; off only when told.
	c = Defaults()
	valid(&c)
	if n, err := c.Resolve(Mode{}); err != nil || n.Audit.Off || n.Audit.File != filepath.Join(c.DataDir, "audit.log") || !n.Audit.Defaulted {
		t.Errorf("default audit: %+v %v", n.Audit, err)
	}
	c.Audit = "off"
	if n, err := c.Resolve(Mode{}); err != nil || !n.Audit.Off || n.Audit.File != "" {
		t.Errorf("audit off: %+v %v", n.Audit, err)
	}
	c = Defaults()
	if n, err := c.Resolve(Mode{Dev: true}); err != nil || !n.EntropyAuto {
		t.Errorf("dev: %v %+v", err, n)
	}

	// A token without a label (opencryptoki) by slot, another mechanism.
	c = Defaults()
	valid(&c)
	c.HSMLib, c.HSMSlot, c.HSMPIN, c.HSMMechanism, c.HSMRSAOAEPHash = lib, "3", "1", "rsa_oaep", "sha1"
	n, err = c.Resolve(Mode{})
	if err != nil || n.HSM == nil || n.HSM.Slot == nil || *n.HSM.Slot != 3 || n.HSM.TokenLabel != "" || n.HSM.Mechanism != "rsa_oaep" || n.HSM.OAEPHash != "sha1" {
		t.Fatalf("hsm by slot: %+v, %v", n, err)
	}
	c.HSMMechanism = ""
	if n, err = c.Resolve(Mode{}); err != nil || n.HSM.Mechanism != "aes_gcm" {
		t.Fatalf("default mechanism: %+v, %v", n, err)
	}

	// fips_mode refuses to start outside Go's FIPS 140-3 mode.
	c = Defaults()
	valid(&c)
	c.FIPSMode = true
	n, err = c.Resolve(Mode{})
	if fips.Mode() == "off" {
		if err == nil || !strings.HasPrefix(err.Error(), "fips_mode: ") || !strings.Contains(err.Error(), "GODEBUG=fips140") {
			t.Fatalf("fips_mode outside FIPS mode: %v", err)
		}
	} else if err != nil || !n.FIPSMode {
		t.Fatalf("fips_mode in FIPS mode: %+v, %v", n, err)
	}
}

// TestSettingsCoverServer keeps the settings table in step with Server.
func TestSettingsCoverServer(t *testing.T) {
	typ := reflect.TypeOf(Server{})
	if typ.NumField() != len(settings) {
		t.Fatalf("Server has %d fields, settings lists %d", typ.NumField(), len(settings))
	}
	for i := range typ.NumField() {
		f := typ.Field(i)
		json, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		hcl, _, _ := strings.Cut(f.Tag.Get("hcl"), ",")
		if json != hcl || json != settings[i].Name {
			t.Errorf("field %s: json %q, hcl %q, settings[%d] %q", f.Name, json, hcl, i, settings[i].Name)
		}
		if settings[i].Doc == "" {
			t.Errorf("%s has no documentation", json)
		}
	}
}

// TestConfigurationDoc keeps docs/configuration.md generated from the
// settings table. Run with MOONVAULT_UPDATE_DOCS=1 to rewrite it.
func TestConfigurationDoc(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "configuration.md")
	want := Markdown()
	if os.Getenv("MOONVAULT_UPDATE_DOCS") == "1" {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil { // #nosec G306 -- documentation
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatal("docs/configuration.md is stale: run MOONVAULT_UPDATE_DOCS=1 go test ./internal/config")
	}
}

// TestTrustedProxies: CIDRs and single addresses, from the file (a list)
// or the environment (comma-separated).
func TestTrustedProxies(t *testing.T) {
	dir := t.TempDir()
	cert, key := testPair(t, dir)
	c := Defaults()
	c.DataDir, c.TLSCertFile, c.TLSKeyFile = dir, cert, key
	if err := c.LoadFile(writeFile(t, "c.hcl", "trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\"]\n")); err != nil {
		t.Fatal(err)
	}
	n, err := c.Resolve(Mode{})
	if err != nil || len(n.TrustedProxies) != 2 || n.TrustedProxies[0].String() != "10.0.0.0/8" || n.TrustedProxies[1].String() != "192.0.2.7/32" {
		t.Fatalf("from the file: %v %v", n, err)
	}
	if n.Restore.Timeout != time.Hour || n.Restore.Retention != 7*24*time.Hour || n.Restore.MaxBytes != 16<<30 {
		t.Fatalf("restore defaults: %+v", n.Restore)
	}
	if err := c.LoadEnv([]string{"MOONVAULT_TRUSTED_PROXIES=fd00::/8, 2001:db8::1"}); err != nil {
		t.Fatal(err)
	}
	n, err = c.Resolve(Mode{})
	if err != nil || len(n.TrustedProxies) != 2 || n.TrustedProxies[0].String() != "fd00::/8" || n.TrustedProxies[1].String() != "2001:db8::1/128" {
		t.Fatalf("from the environment: %v %v", n, err)
	}
}
