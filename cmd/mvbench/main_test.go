package main

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunAgainstFakeVault runs the command's flag and environment handling
// end to end against a stand-in TLS server trusted through -cacert.
func TestRunAgainstFakeVault(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1/auth/login":
			fmt.Fprint(w, `{"access_token":"t","expires_in":300}`)
		case r.Header.Get("Authorization") != "Bearer t":
			w.WriteHeader(http.StatusUnauthorized)
		case r.URL.Path == "/v1/accounts":
			fmt.Fprint(w, `{"name":"a1"}`)
		case r.URL.Path == "/v1/accounts/a1/sign-message":
			fmt.Fprint(w, `{"signature":"0x00"}`)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MOONVAULT_TOKEN", "")
	t.Setenv("MOONVAULT_BENCH_PASSWORD", "s3cret-pw")
	var stdout, stderr bytes.Buffer
	err := run([]string{"-addr", srv.URL, "-cacert", ca, "-c", "2", "-d", "300ms"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "req/s") || !strings.Contains(stdout.String(), "p99") {
		t.Fatalf("summary missing: %s", stdout.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), "s3cret-pw") {
		t.Fatal("password printed")
	}
}

func TestRunNeedsCredentials(t *testing.T) {
	for _, k := range []string{"MOONVAULT_TOKEN", "MOONVAULT_BENCH_PASSWORD", "MOONVAULT_DEV_ADMIN_PASSWORD"} {
		t.Setenv(k, "")
	}
	var out bytes.Buffer
	if err := run([]string{"-d", "1s"}, &out, &out); err == nil || !strings.Contains(err.Error(), "MOONVAULT_BENCH_PASSWORD") {
		t.Fatalf("want a credentials error, got %v", err)
	}
}
