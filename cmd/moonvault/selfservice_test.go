package main

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/moonvault/moonvault/internal/fips"
)

// TestCLISelfService runs, through the real binary, what a user does with
// their own credentials: TOTP enrolment, API keys (and MOONVAULT_API_KEY),
// grants, sessions and passwords, and an admin's password reset.
func TestCLISelfService(t *testing.T) {
	const adminPW = "correct horse battery staple"
	sp, base := devServer(t, adminPW)
	defer sp.stop(syscall.SIGTERM)
	adminConf, bobConf, bob2Conf := t.TempDir(), t.TempDir(), t.TempDir()
	as := func(conf string, extra ...string) func(args ...string) (string, string, int) {
		env := append(append(append([]string{}, base...), "MOONVAULT_CONFIG_DIR="+conf), extra...)
		return func(args ...string) (string, string, int) {
			t.Helper()
			return run(t, env, args...)
		}
	}
	must := func(out, errOut string, code int) string {
		t.Helper()
		if code != 0 {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		return out
	}
	admin := as(adminConf, "MOONVAULT_PASSWORD="+adminPW)
	must(admin("login", "-username", "admin"))
	must(as(adminConf, "MOONVAULT_NEW_PASSWORD=bob's first password")("user", "create", "bob"))

	// TOTP enrolment: the URI and secret, then recovery codes one per line.
	out := must(admin("mfa", "enroll"))
	m := regexp.MustCompile(`otpauth://\S+`).FindString(out)
	u, err := url.Parse(m)
	if err != nil || u.Query().Get("secret") == "" {
		t.Fatalf("mfa enroll printed no otpauth URI:\n%s", out)
	}
	code := totpNow(t, u.Query().Get("secret"))
	out = must(admin("mfa", "confirm", code))
	codes := regexp.MustCompile(`(?m)^[A-Za-z0-9-]{8,}$`).FindAllString(out, -1)
	if len(codes) < 5 {
		t.Fatalf("mfa confirm: want recovery codes one per line:\n%s", out)
	}
	// A login without a second factor is now refused; with a recovery code
	// it counts as MFA (step-up) for the next steps.
	if _, errOut, c := admin("login", "-username", "admin"); c == 0 || !strings.Contains(errOut, "mfa_required") {
		t.Fatalf("login without a code: %d %s", c, errOut)
	}
	must(admin("login", "-username", "admin", "-totp", codes[0]))

	// API keys: created (step-up), used through MOONVAULT_API_KEY, listed,
	// revoked.
	must(admin("account", "create", "treasury"))
	out = must(admin("api-key", "create", "-actions", "account.sign,account.read", "-accounts", "treasury", "ci"))
	key := regexp.MustCompile(`(?m)^key: (\S+)$`).FindStringSubmatch(out)
	id := regexp.MustCompile(`(?m)^id:  (\S+)$`).FindStringSubmatch(out)
	if key == nil || id == nil {
		t.Fatalf("api-key create:\n%s", out)
	}
	withKey := as(t.TempDir(), "MOONVAULT_API_KEY="+key[1])
	if out := must(withKey("account", "sign-message", "treasury", "hello")); !strings.Contains(out, "signature") {
		t.Fatalf("sign with the API key:\n%s", out)
	}
	if _, errOut, c := withKey("account", "create", "other"); c == 0 || !strings.Contains(errOut, "403") {
		t.Fatalf("an API key beyond its actions: %d %s", c, errOut)
	}
	if out := must(admin("api-key", "list")); !strings.Contains(out, id[1]) || strings.Contains(out, key[1]) {
		t.Fatalf("api-key list (must list the id, never the secret):\n%s", out)
	}
	must(admin("api-key", "revoke", id[1]))
	if _, errOut, c := withKey("account", "sign-message", "treasury", "hello"); c != 1 || !strings.Contains(errOut, "MOONVAULT_API_KEY") {
		t.Fatalf("revoked API key: %d %s", c, errOut)
	}

	// Grants: bob may sign as admin:treasury until the grant is withdrawn.
	bob := as(bobConf, "MOONVAULT_PASSWORD=bob's first password")
	must(bob("login", "-username", "bob"))
	if out := must(admin("account", "grant", "treasury", "bob")); !strings.Contains(out, "as admin:treasury") {
		t.Fatalf("grant does not say how bob addresses the account:\n%s", out)
	}
	if out := must(bob("account", "sign-message", "admin:treasury", "from bob")); !strings.Contains(out, "signature") {
		t.Fatalf("granted sign:\n%s", out)
	}
	must(admin("account", "ungrant", "treasury", "bob"))
	if _, errOut, c := bob("account", "sign-message", "admin:treasury", "from bob"); c == 0 || !strings.Contains(errOut, "404") {
		t.Fatalf("sign after ungrant: %d %s", c, errOut)
	}

	// Sessions: bob has two; he ends one from the other.
	bob2 := as(bob2Conf, "MOONVAULT_PASSWORD=bob's first password")
	must(bob2("login", "-username", "bob"))
	out = must(bob("session", "list"))
	rows := regexp.MustCompile(`(?m)^(\S+)\s+bob\s`).FindAllStringSubmatch(out, -1)
	if len(rows) != 2 {
		t.Fatalf("session list: want bob's two sessions:\n%s", out)
	}

	// A password change ends bob's other sessions and keeps this one.
	must(as(bobConf, "MOONVAULT_PASSWORD=bob's first password", "MOONVAULT_NEW_PASSWORD=bob's second password")("password", "change"))
	if _, errOut, c := bob2("account", "list"); c != 1 || !strings.Contains(errOut, "run `moonvault login`") {
		t.Fatalf("bob's other session after the change: %d %s", c, errOut)
	}
	must(bob("account", "list"))
	if _, errOut, c := bob2("login", "-username", "bob"); c == 0 || !strings.Contains(errOut, "invalid_credentials") {
		t.Fatalf("login with the old password: %d %s", c, errOut)
	}
	must(as(bob2Conf, "MOONVAULT_PASSWORD=bob's second password")("login", "-username", "bob"))
	out = must(bob("session", "list"))
	if rows := regexp.MustCompile(`(?m)^(\S+)\s+bob\s`).FindAllStringSubmatch(out, -1); len(rows) != 2 {
		t.Fatalf("session list after re-login:\n%s", out)
	}
	// bob revokes his other session by id: that one ends, his stays.
	mine := sessionID(t, filepath.Join(bobConf, "access-token"))
	var other string
	for _, r := range regexp.MustCompile(`(?m)^(\S+)\s+bob\s`).FindAllStringSubmatch(out, -1) {
		if r[1] != mine {
			other = r[1]
		}
	}
	if other == "" {
		t.Fatalf("bob's current session %q not among:\n%s", mine, out)
	}
	must(bob("session", "revoke", other))
	if _, errOut, c := bob2("account", "list"); c != 1 || !strings.Contains(errOut, "run `moonvault login`") {
		t.Fatalf("the revoked session still works: %d %s", c, errOut)
	}
	must(bob("account", "list"))

	// The admin's reset (step-up: the admin logged in with a recovery code)
	// ends every session of bob.
	must(as(adminConf, "MOONVAULT_NEW_PASSWORD=bob's third password!")("user", "set-password", "bob"))
	for _, s := range []func(...string) (string, string, int){bob, bob2} {
		if _, errOut, c := s("account", "list"); c != 1 || !strings.Contains(errOut, "run `moonvault login`") {
			t.Fatalf("bob's session after the reset: %d %s", c, errOut)
		}
	}
	must(as(bobConf, "MOONVAULT_PASSWORD=bob's third password!")("login", "-username", "bob"))

	// MFA off needs step-up; the admin's session has it.
	must(admin("mfa", "disable"))
}

// totpNow is the current RFC 6238 code for a base32 secret.
func totpNow(t *testing.T, secret string) string {
	t.Helper()
	var code string
	var err error
	// HMAC-SHA-1, as authenticator apps compute it: outside the FIPS
	// boundary (docs/fips.md).
	fips.Outside(func() { code, err = totp.GenerateCode(secret, time.Now()) })
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// sessionID reads the sid claim of a stored access token (the CLI's file).
func sessionID(t *testing.T, path string) string {
	t.Helper()
	parts := strings.Split(strings.TrimSpace(readFile(t, path)), ".")
	if len(parts) != 3 {
		t.Fatalf("%s is not a JWT", path)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		SID string `json:"sid"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.SID == "" {
		t.Fatalf("no sid claim: %v", err)
	}
	return claims.SID
}
