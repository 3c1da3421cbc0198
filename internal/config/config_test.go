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
		"tls_min_version":  func(s *Server) { s.TLSMinVersion = "1.0" },
		"storage":          func(s *Server) { s.Storage = "redis" },
		"postgres_url":     func(s *Server) { s.Storage = "postgres" },
		"access_token_ttl": func(s *Server) { s.AccessTokenTTL = "20m" },
		"entropy_mode":     func(s *Server) { s.EntropyMode = "weird" },
		"audit":            func(s *Server) { s.Audit = "maybe" },
		"audit_file":       func(s *Server) { s.Audit, s.AuditFile = "off", "/x/audit.log" },
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
