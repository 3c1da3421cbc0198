package main

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// devServer starts `moonvault server -dev` in a new data directory, the
// admin's password pw, with extra flags. It returns the server and the
// client environment that reaches it (MOONVAULT_ADDR, MOONVAULT_CACERT).
func devServer(t *testing.T, pw string, extra ...string) (*serverProc, []string) {
	t.Helper()
	dir := t.TempDir()
	ca := filepath.Join(dir, "dev-ca.pem")
	sp := startServer(t, anyPort, ca, []string{"MOONVAULT_DEV_ADMIN_PASSWORD=" + pw}, append([]string{"-dev", "-dev-listen-address", anyPort, "-data-dir", dir}, extra...)...)
	return sp, []string{"MOONVAULT_ADDR=https://" + sp.addr, "MOONVAULT_CACERT=" + ca}
}

// run runs the binary with env on top of a clean environment and returns
// stdout, stderr and the exit code.
func run(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), 0
}

// commandsOf lists the commands a help text lists under "commands:".
func commandsOf(help string) []string {
	_, list, _ := strings.Cut(help, "commands:\n")
	var out []string
	for _, line := range strings.Split(list, "\n") {
		if !strings.HasPrefix(line, "  ") {
			break
		}
		out = append(out, strings.Fields(line)[0])
	}
	return out
}

// TestHelp: -h, --help and help print usage and exit 0, and every command
// and subcommand answers -h with its flags and an example.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		out, _, code := run(t, nil, args...)
		if code != 0 || !strings.Contains(out, "usage: moonvault") || !strings.Contains(out, "account") {
			t.Errorf("moonvault %s: exit %d\n%s", args[0], code, out)
		}
	}
	top, _, _ := run(t, nil, "-h")
	cmds := commandsOf(top)
	if len(cmds) < 8 {
		t.Fatalf("top-level help lists %v", cmds)
	}
	checked := 0
	var walk func(path []string)
	walk = func(path []string) {
		name := strings.Join(path, " ")
		out, _, code := run(t, nil, append(path, "-h")...)
		if code != 0 {
			t.Errorf("moonvault %s -h: exit %d\n%s", name, code, out)
			return
		}
		subs := commandsOf(out)
		if len(subs) == 0 { // a command: its flags and an example
			if !strings.Contains(out, "flags:") || !strings.Contains(out, "example:\n  moonvault "+name) {
				t.Errorf("moonvault %s -h shows no flags or example:\n%s", name, out)
			}
			checked++
			return
		}
		if regexp.MustCompile(`(?m)^  \S+\s*$`).MatchString(out) {
			t.Errorf("moonvault %s -h: a command without a summary:\n%s", name, out)
		}
		for _, s := range subs {
			walk(append(append([]string{}, path...), s))
		}
	}
	for _, c := range cmds {
		walk([]string{c})
	}
	if checked < 25 {
		t.Errorf("checked only %d commands", checked)
	}
	if out, _, code := run(t, nil, "help", "account", "create"); code != 0 || !strings.Contains(out, "moonvault account create") {
		t.Errorf("help account create: %d %s", code, out)
	}
	if _, errOut, code := run(t, nil, "acount", "list"); code != 2 || !strings.Contains(errOut, `did you mean "account"`) {
		t.Errorf("typo: %d %s", code, errOut)
	}
	if out, _, code := run(t, nil, "version"); code != 0 || !strings.HasPrefix(out, "moonvault ") || !strings.Contains(out, "go1.") {
		t.Errorf("version: %d %q", code, out)
	}
}

// TestCLISessions logs in once and keeps working past the access token's
// lifetime (the refresh token, stored beside it, is used), logout revokes
// the session and deletes both tokens, and MOONVAULT_TOKEN wins and is
// never refreshed. It also checks the messages a user sees when something
// is wrong.
func TestCLISessions(t *testing.T) {
	sp, base := devServer(t, "correct horse battery staple", "-access-token-ttl", "2s")
	addr := sp.addr
	defer sp.stop(syscall.SIGTERM)
	conf := t.TempDir()
	env := append(base, "MOONVAULT_CONFIG_DIR="+conf)
	cli := func(extra []string, args ...string) (string, string, int) {
		t.Helper()
		return run(t, append(append([]string{}, env...), extra...), args...)
	}

	// Not logged in: the user is told what to do.
	if _, errOut, code := cli(nil, "account", "list"); code != 1 || !strings.Contains(errOut, "run `moonvault login`") {
		t.Fatalf("not logged in: %d %s", code, errOut)
	}
	// An unknown CA points to MOONVAULT_CACERT.
	if _, errOut, code := run(t, []string{"MOONVAULT_ADDR=https://" + addr, "MOONVAULT_CONFIG_DIR=" + conf}, "account", "list"); code != 1 || !strings.Contains(errOut, "unknown authority") || !strings.Contains(errOut, "MOONVAULT_CACERT") {
		t.Fatalf("unknown CA: %d %s", code, errOut)
	}

	if out, errOut, code := cli([]string{"MOONVAULT_PASSWORD=correct horse battery staple"}, "login", "-username", "admin"); code != 0 {
		t.Fatalf("login: %d %s %s", code, out, errOut)
	}
	for _, f := range []string{"access-token", "refresh-token"} {
		fi, err := os.Stat(filepath.Join(conf, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, err, fi)
		}
	}
	refresh1 := readFile(t, filepath.Join(conf, "refresh-token"))
	time.Sleep(3 * time.Second) // past the 2 s access token's expiry
	if out, errOut, code := cli(nil, "account", "create", "treasury"); code != 0 || !strings.Contains(out, "address") {
		t.Fatalf("after the access token expired: %d %s %s", code, out, errOut)
	}
	refresh2 := readFile(t, filepath.Join(conf, "refresh-token"))
	if refresh2 == refresh1 {
		t.Fatal("the session was not refreshed")
	}

	// MOONVAULT_TOKEN wins, and is never refreshed: a bad one fails with a
	// hint and leaves the stored session alone.
	if _, errOut, code := cli([]string{"MOONVAULT_TOKEN=not-a-token"}, "account", "list"); code != 1 || !strings.Contains(errOut, "MOONVAULT_TOKEN") {
		t.Fatalf("bad MOONVAULT_TOKEN: %d %s", code, errOut)
	}
	if readFile(t, filepath.Join(conf, "refresh-token")) != refresh2 {
		t.Fatal("MOONVAULT_TOKEN set, yet the stored session was refreshed")
	}

	// The user table.
	if out, errOut, code := cli(nil, "user", "list"); code != 0 || !regexp.MustCompile(`(?m)^USERNAME\s+ROLE\s+MFA\s+DISABLED\s+CREATED$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^admin\s+admin\s+no\s+no\s+\d{4}-`).MatchString(out) {
		t.Fatalf("user list: %d\n%s%s", code, out, errOut)
	}

	// logout revokes the session on the server and deletes both tokens.
	if out, errOut, code := cli(nil, "logout"); code != 0 || !strings.Contains(out, "Logged out") {
		t.Fatalf("logout: %d %s %s", code, out, errOut)
	}
	for _, f := range []string{"access-token", "refresh-token"} {
		if _, err := os.Stat(filepath.Join(conf, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still stored after logout: %v", f, err)
		}
	}
	resp, err := sp.client.Post("https://"+addr+"/v1/auth/refresh", "application/json", strings.NewReader(`{"refresh_token":"`+refresh2+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("refresh after logout: %d, want 401", resp.StatusCode)
	}

	// A stored session the server no longer knows says to log in again.
	if err := os.WriteFile(filepath.Join(conf, "access-token"), []byte("bogus\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := cli(nil, "account", "list"); code != 1 || !strings.Contains(errOut, "run `moonvault login`") {
		t.Fatalf("expired session: %d %s", code, errOut)
	}

	// A rate limit says for how long.
	var errOut string
	for range 12 {
		_, errOut, _ = cli([]string{"MOONVAULT_PASSWORD=wrong password!"}, "login", "-username", "admin")
	}
	if !regexp.MustCompile(`retry in \d+s`).MatchString(errOut) || !strings.Contains(errOut, "HTTP 429") {
		t.Fatalf("rate limit: %s", errOut)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
