package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	env := map[string]string{"MOONVAULT_LOG_LEVEL": "warn", "MOONVAULT_HSM_PIN": "1234"}
	if err := c.LoadEnv(func(k string) string { return env[k] }); err != nil {
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
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestYAMLStrictAndValidate(t *testing.T) {
	dir := t.TempDir()
	y := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(y, []byte("listen_adress: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	if err := c.LoadFile(y); err == nil || !strings.Contains(err.Error(), "listen_adress") {
		t.Fatalf("typo accepted: %v", err)
	}
	cases := map[string]func(*Server){
		"tls_min_version":   func(s *Server) { s.TLSMinVersion = "1.0" },
		"storage":           func(s *Server) { s.Storage = "redis" },
		"postgres_url":      func(s *Server) { s.Storage = "postgres" },
		"access_token_ttl":  func(s *Server) { s.AccessTokenTTL = "20m" },
		"entropy_mode":      func(s *Server) { s.EntropyMode = "weird" },
		"restore_max_bytes": func(s *Server) { s.RestoreMaxBytes = 0 },
		"restore_timeout":   func(s *Server) { s.RestoreTimeout = "forever" },
		"restore_retention": func(s *Server) { s.RestoreRetention = "-1h" },
		"trusted_proxies":   func(s *Server) { s.TrustedProxies = []string{"10.0.0.0/8", "proxy.example"} },
	}
	for name, mut := range cases {
		c := Defaults()
		mut(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	if err := c.LoadEnv(func(k string) string {
		if k == "MOONVAULT_REQUIRE_TEE" {
			return "maybe"
		}
		return ""
	}); err == nil || !strings.Contains(err.Error(), "MOONVAULT_REQUIRE_TEE") {
		t.Fatalf("bad bool accepted: %v", err)
	}
}

// TestTrustedProxies: CIDRs and single addresses, from the file (a list)
// or the environment (comma-separated); host bits set are refused.
func TestTrustedProxies(t *testing.T) {
	dir := t.TempDir()
	hcl := filepath.Join(dir, "c.hcl")
	if err := os.WriteFile(hcl, []byte("trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	if err := c.LoadFile(hcl); err != nil {
		t.Fatal(err)
	}
	ps, err := c.TrustedProxyPrefixes()
	if err != nil || len(ps) != 2 || ps[0].String() != "10.0.0.0/8" || ps[1].String() != "192.0.2.7/32" {
		t.Fatalf("from the file: %v %v", ps, err)
	}
	env := map[string]string{"MOONVAULT_TRUSTED_PROXIES": "fd00::/8, 2001:db8::1"}
	if err := c.LoadEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	ps, err = c.TrustedProxyPrefixes()
	if err != nil || len(ps) != 2 || ps[0].String() != "fd00::/8" || ps[1].String() != "2001:db8::1/128" {
		t.Fatalf("from the environment: %v %v", ps, err)
	}
	c.TrustedProxies = []string{"10.1.2.3/8"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "10.0.0.0/8") {
		t.Fatalf("host bits set: %v", err)
	}
}
