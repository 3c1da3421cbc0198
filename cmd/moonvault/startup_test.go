package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// runServerOnce runs `moonvault server args...` expecting it to stop by
// itself, and returns its combined output and exit code. A server still
// running after a minute is a hang: the test fails.
func runServerOnce(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append([]string{"server"}, args...)...)
	cmd.Env = append(cleanEnv(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("moonvault server %s did not stop within a minute (a hang):\n%s", strings.Join(args, " "), out.String())
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), 0
}

// cleanEnv is the test's environment without MOONVAULT_ settings, so that
// the machine's own cannot change what a case tests.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MOONVAULT_") {
			env = append(env, kv)
		}
	}
	return env
}

// TestStartupMistakes starts the binary with each configuration mistake an
// operator can make: each must end the process at once with a non-zero
// exit and one line naming the problem and the setting, never a panic, a
// hang or a silent start.
func TestStartupMistakes(t *testing.T) {
	tlsDir := t.TempDir()
	cert, key := writeTLS(t, tlsDir)
	_, otherKey := writeTLS(t, t.TempDir())
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	notALib := filepath.Join(t.TempDir(), "libnot.so")
	for _, f := range []string{garbage, notALib} {
		if err := os.WriteFile(f, []byte("this is not what it should be\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg := func(name, body string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	data := t.TempDir()
	// A data dir whose database another process holds open (here: this test).
	locked := t.TempDir()
	db, err := bbolt.Open(filepath.Join(locked, "moonvault.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	base := func(extra ...string) []string {
		return append([]string{"-listen-address", "127.0.0.1:0", "-data-dir", data, "-tls-cert-file", cert, "-tls-key-file", key}, extra...)
	}
	hsmEnv := []string{"MOONVAULT_HSM_TOKEN_LABEL=t", "MOONVAULT_HSM_PIN=1234"}

	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		// the one line must name the setting and say this
		setting, says string
	}{
		{"tls cert missing", nil, base("-tls-cert-file", filepath.Join(tlsDir, "nope.crt")), 1, "tls_cert_file", "no such file"},
		{"tls cert unreadable", nil, base("-tls-cert-file", tlsDir), 1, "tls_cert_file", "is a directory"},
		{"tls cert garbage", nil, base("-tls-cert-file", garbage), 1, "tls_cert_file", "not a PEM certificate"},
		{"tls key garbage", nil, base("-tls-key-file", garbage), 1, "tls_key_file", "not a PEM private key"},
		{"tls key mismatch", nil, base("-tls-key-file", otherKey), 1, "tls_key_file", "does not belong to the certificate"},
		{"no tls", nil, []string{"-listen-address", "127.0.0.1:0", "-data-dir", data}, 1, "tls_cert_file", "HTTPS only"},
		{"tls below 1.2", nil, base("-tls-min-version", "1.1"), 1, "tls_min_version", "RFC 8996"},
		{"broken config file", nil, base("-config", writeCfg("broken.hcl", "listen_address = \n")), 1, "config file", "broken.hcl:1"},
		{"broken yaml", nil, base("-config", writeCfg("broken.yaml", "listen_address: [\n")), 1, "config file", "broken.yaml"},
		{"unknown setting in file", nil, base("-config", writeCfg("typo.hcl", "listen_adress = \"127.0.0.1:0\"\n")), 1, "listen_adress", `"listen_address"`},
		{"unknown setting in yaml", nil, base("-config", writeCfg("typo.yaml", "storag: bolt\n")), 1, "storag", `did you mean "storage"`},
		{"unknown setting in env", []string{"MOONVAULT_STORAG=bolt"}, base(), 1, "MOONVAULT_STORAG", `did you mean "storage"`},
		{"unknown flag", nil, base("-data-dri", data), 2, "-data-dri", `did you mean "data-dir"`},
		{"unknown storage", nil, base("-storage", "redis"), 1, "storage", `unknown storage "redis"`},
		{"postgres without url", nil, base("-storage", "postgres"), 1, "postgres_url", "required"},
		{"unreachable postgres", []string{"MOONVAULT_POSTGRES_URL=postgres://postgres@127.0.0.1:1/moonvault?connect_timeout=3"}, base("-storage", "postgres"), 1, "postgres_url", "cannot use the database"},
		{"port in use", nil, base("-listen-address", busy.Addr().String()), 1, "listen_address", "already in use"},
		{"malformed listen address", nil, base("-listen-address", "localhost"), 1, "listen_address", "host:port"},
		{"listen port out of range", nil, base("-listen-address", "127.0.0.1:70000"), 1, "listen_address", "70000"},
		{"invalid log level", nil, base("-log-level", "verbose"), 1, "log_level", "verbose"},
		{"invalid duration", []string{"MOONVAULT_SESSION_LIFETIME=12 hours"}, base(), 1, "session_lifetime", "not a duration"},
		{"invalid boolean", []string{"MOONVAULT_AUDIT_STDOUT=maybe"}, base(), 1, "audit_stdout", "not a boolean"},
		{"database in use", nil, base("-data-dir", locked), 1, "data_dir", "cannot open the database"},
		{"no data dir", nil, []string{"-listen-address", "127.0.0.1:0", "-tls-cert-file", cert, "-tls-key-file", key}, 1, "data_dir", "storage bolt"},
		{"pkcs11 library missing", hsmEnv, base("-hsm-lib", "/nonexistent/libpkcs11.so"), 1, "hsm_lib", "no such file"},
		{"pkcs11 library does not load", hsmEnv, base("-hsm-lib", notALib), 1, "hsm_lib", "not a PKCS#11 library"},
		{"hsm pin missing", []string{"MOONVAULT_HSM_TOKEN_LABEL=t"}, base("-hsm-lib", notALib), 1, "hsm_pin", "missing"},
		{"audit file unwritable", nil, base("-audit-file", filepath.Join(garbage, "audit.log")), 1, "audit_file", "audit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runServerOnce(t, tc.env, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
				t.Errorf("panicked:\n%s", out)
			}
			var hits []string
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if strings.Contains(line, tc.setting) && strings.Contains(line, tc.says) {
					hits = append(hits, line)
				}
			}
			if len(hits) != 1 {
				t.Errorf("want one line naming %s and saying %q; output:\n%s", tc.setting, tc.says, out)
			}
			if strings.Contains(out, "moonvault listening") {
				t.Errorf("started anyway:\n%s", out)
			}
			t.Logf("%s", strings.Join(hits, "\n"))
		})
	}
}

// TestSettingPrecedence sets listen_address in the file, the environment
// and a flag: the flag wins; without the flag the environment wins over
// the file (issue 21, mutation 9: applying the environment after flags).
func TestSettingPrecedence(t *testing.T) {
	// Three loopback hosts tell the settings apart; with port 0 the server
	// picks a free port (no port is probed, closed and reused).
	fileAddr, envAddr, flagAddr := "127.0.0.2:0", "127.0.0.3:0", "127.0.0.4:0"
	host := func(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }
	cert, key := writeTLS(t, t.TempDir())
	cfg := filepath.Join(t.TempDir(), "moonvault.hcl")
	hcl := fmt.Sprintf("listen_address = %q\ndata_dir = %q\ntls_cert_file = %q\ntls_key_file = %q\nlog_level = \"error\"\n", fileAddr, t.TempDir(), cert, key)
	if err := os.WriteFile(cfg, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"MOONVAULT_LISTEN_ADDRESS=" + envAddr, "MOONVAULT_LOG_LEVEL=info"}

	sp := startServer(t, flagAddr, cert, env, "-config", cfg, "-listen-address", flagAddr)
	if host(sp.addr) != host(flagAddr) {
		t.Errorf("the server listens on %s; the flag (%s) must win over the environment (%s) and the file (%s)", sp.addr, flagAddr, envAddr, fileAddr)
	}
	// The environment beat the file for log_level: info lines are logged.
	if !strings.Contains(sp.out.String(), `"moonvault listening"`) {
		t.Errorf("log_level from the environment (info) did not beat the file (error):\n%s", sp.out.String())
	}
	sp.stop(syscall.SIGTERM)

	sp = startServer(t, envAddr, cert, env, "-config", cfg)
	if host(sp.addr) != host(envAddr) {
		t.Errorf("the server listens on %s; the environment's %s must win over the file's %s", sp.addr, envAddr, fileAddr)
	}
	sp.stop(syscall.SIGTERM)

	// And a flag beats the environment for log_level too.
	sp = startServer(t, flagAddr, cert, env, "-config", cfg, "-listen-address", flagAddr, "-log-level", "error")
	sp.stop(syscall.SIGTERM)
	if strings.Contains(sp.out.String(), `"moonvault listening"`) {
		t.Errorf("-log-level error did not beat MOONVAULT_LOG_LEVEL=info:\n%s", sp.out.String())
	}
}
