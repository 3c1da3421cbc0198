package main

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/moonvault/moonvault/internal/fips"
)

// TestCLIPolicies runs, through the real binary against a dev server, what
// admins, requesters and approvers do with transaction policies: an admin
// (with a one-time code) writes a "2 of 2 over 10 ETH" policy from a file,
// lists, reads and dry-runs it; a transfer over 10 ETH is held (exit 3);
// two approvers with TOTP approve it and the requester reads the signed
// transaction; a stale -version is refused; a rejection; a bad condition
// names its position; the policy is deleted with its history kept.
func TestCLIPolicies(t *testing.T) {
	const pw = "correct horse battery staple"
	sp, base := devServer(t, pw)
	defer sp.stop(syscall.SIGTERM)
	base = append(base, "MOONVAULT_PASSWORD="+pw, "MOONVAULT_NEW_PASSWORD="+pw)
	as := func() func(args ...string) (string, string, int) {
		env := append(append([]string{}, base...), "MOONVAULT_CONFIG_DIR="+t.TempDir())
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
	// withTOTP logs a user in, enrols TOTP and logs in again with a code
	// (of the next 30 s step: the confirmation used this one).
	withTOTP := func(cli func(...string) (string, string, int), user string) {
		t.Helper()
		must(cli("login", "-username", user))
		out := must(cli("mfa", "enroll"))
		u, err := url.Parse(regexp.MustCompile(`otpauth://\S+`).FindString(out))
		if err != nil {
			t.Fatal(err)
		}
		secret := u.Query().Get("secret")
		now := time.Now()
		var code, next string
		fips.Outside(func() { // TOTP's HMAC-SHA-1 is outside the FIPS boundary (docs/fips.md)
			code, _ = totp.GenerateCode(secret, now)
			next, _ = totp.GenerateCode(secret, now.Add(30*time.Second))
		})
		must(cli("mfa", "confirm", code))
		must(cli("login", "-username", user, "-totp", next))
	}
	admin, alice, bob, treasury := as(), as(), as(), as()
	must(admin("login", "-username", "admin"))
	for _, u := range []string{"alice", "bob", "treasury"} {
		must(admin("user", "create", u))
	}
	withTOTP(admin, "admin")
	withTOTP(alice, "alice")
	withTOTP(bob, "bob")
	must(treasury("login", "-username", "treasury"))
	must(treasury("account", "create", "hot"))

	// The admin writes the policy from a file.
	file := filepath.Join(t.TempDir(), "large.json")
	doc := `{"name": "over 10 ETH: 2 of 2", "effect": "require_approval",
	  "condition": "intent.chain == \"ethereum\" && intent.value > ether(10)",
	  "approvals": {"threshold": 2, "approvers": ["alice", "bob"]}}`
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	var p struct {
		ID      string `json:"id"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal([]byte(must(admin("policy", "create", "-format", "json", file))), &p); err != nil || p.ID == "" {
		t.Fatalf("policy create: %v", err)
	}
	if out := must(admin("policy", "list")); !strings.Contains(out, p.ID) || !strings.Contains(out, "require_approval") {
		t.Fatalf("policy list:\n%s", out)
	}
	if out := must(admin("policy", "get", p.ID)); !strings.Contains(out, "over 10 ETH: 2 of 2") {
		t.Fatalf("policy get:\n%s", out)
	}
	if _, errOut, c := treasury("policy", "list"); c != 1 || !strings.Contains(errOut, "403") {
		t.Fatalf("a user lists policies: %d %s", c, errOut)
	}

	// The requester's dry run, then the real request: held, exit 3.
	tx := `{"transaction":{"chainId":"0x1","nonce":"0x0","to":"0x3535353535353535353535353535353535353535","value":"0x9c2007651b2500000","gas":"0x5208","maxFeePerGas":"0x3b9aca00","maxPriorityFeePerGas":"0x1"}}` // 180 ETH
	if out := must(treasury("policy", "evaluate", "-account", "hot", tx)); !strings.Contains(out, "decision: require_approval") || !strings.Contains(out, p.ID) {
		t.Fatalf("policy evaluate:\n%s", out)
	}
	var body struct {
		Transaction json.RawMessage `json:"transaction"`
	}
	_ = json.Unmarshal([]byte(tx), &body)
	out, errOut, code := treasury("account", "sign-transaction", "hot", string(body.Transaction))
	id := regexp.MustCompile(`Held for approval (apr_\S+)`).FindStringSubmatch(out)
	if code != 3 || id == nil {
		t.Fatalf("held request: exit %d\n%s%s", code, out, errOut)
	}

	// Approvers list and approve; the second vote signs it.
	if out := must(alice("approval", "list", "-status", "pending")); !strings.Contains(out, id[1]) || !strings.Contains(out, "0/2") {
		t.Fatalf("approval list:\n%s", out)
	}
	// Without a fresh one-time code nobody approves (the requester never).
	if _, errOut, c := treasury("approval", "approve", id[1]); c != 1 || !strings.Contains(errOut, "mfa_required") || !strings.Contains(errOut, "moonvault login -totp") {
		t.Fatalf("approve without a one-time code: %d %s", c, errOut)
	}
	if out := must(alice("approval", "approve", id[1])); !strings.Contains(out, "more approvers are needed") {
		t.Fatalf("first approval:\n%s", out)
	}
	if out := must(bob("approval", "approve", id[1])); !strings.Contains(out, "signed") {
		t.Fatalf("second approval:\n%s", out)
	}
	var ap struct {
		Status string `json:"status"`
		Result struct {
			Raw string `json:"raw_transaction"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(must(treasury("approval", "get", "-format", "json", id[1]))), &ap); err != nil ||
		ap.Status != "signed" || !strings.HasPrefix(ap.Result.Raw, "0x02") {
		t.Fatalf("approval get: %+v %v", ap, err)
	}

	// Update with -version; a stale version is refused.
	must(admin("policy", "update", "-version", "1", p.ID, file))
	if _, errOut, c := admin("policy", "update", "-version", "1", p.ID, file); c != 1 || !strings.Contains(errOut, "policy_version_conflict") {
		t.Fatalf("stale update: %d %s", c, errOut)
	}

	// A rejection ends a request.
	out, _, code = treasury("account", "sign-transaction", "hot", strings.Replace(string(body.Transaction), `"nonce":"0x0"`, `"nonce":"0x1"`, 1))
	id2 := regexp.MustCompile(`Held for approval (apr_\S+)`).FindStringSubmatch(out)
	if code != 3 || id2 == nil {
		t.Fatalf("second held request: exit %d\n%s", code, out)
	}
	if out := must(bob("approval", "reject", id2[1])); !strings.Contains(out, "Rejected") {
		t.Fatalf("reject:\n%s", out)
	}

	// A bad condition is refused, naming its position.
	bad := filepath.Join(t.TempDir(), "bad.json")
	_ = os.WriteFile(bad, []byte(`{"name": "typo", "effect": "deny", "condition": "intent.valu > 1"}`), 0o600)
	if _, errOut, c := admin("policy", "create", bad); c != 1 || !strings.Contains(errOut, "line 1, column 7") {
		t.Fatalf("bad condition: %d %s", c, errOut)
	}

	// Delete; the history stays.
	must(admin("policy", "delete", p.ID))
	if out := must(admin("policy", "get", "-versions", p.ID)); strings.Count(out, `"version"`) != 3 || !strings.Contains(out, `"delete"`) {
		t.Fatalf("history:\n%s", out)
	}
}
