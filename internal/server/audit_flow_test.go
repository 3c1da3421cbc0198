package server

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/moonvault/moonvault/internal/audit"
	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/fips"
)

// TestAuditFullExercise drives the API through every kind of secret (shares,
// passwords, tokens, TOTP seed and codes, a private key, an API key), then
// checks the audit log verifies, holds none of them, and that an edited or
// shortened copy is rejected.
func TestAuditFullExercise(t *testing.T) {
	logPath := t.TempDir() + "/audit.log"
	tn := startNode(t, t.TempDir(), nodeOpts{mutate: func(c *config.Server) { c.AuditFile = logPath }})
	var ir initResp
	tn.mustCall(200, "POST", "/v1/sys/init", map[string]int{"secret_shares": 3, "secret_threshold": 2}, &ir)
	unsealAll(t, tn, ir.Keys[:2])
	secrets := append([]string{ir.RootToken}, ir.Keys...)

	tn.token = ir.RootToken
	const pw = "a very secret password 123"
	secrets = append(secrets, pw)
	tn.mustCall(201, "POST", "/v1/users", map[string]string{"username": "alice", "password": pw}, nil)
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	tn.mustCall(200, "POST", "/v1/auth/login", map[string]string{"username": "alice", "password": pw}, &tok)
	secrets = append(secrets, tok.AccessToken, tok.RefreshToken)
	var e apiErr
	if got := tn.call("POST", "/v1/auth/login", map[string]string{"username": "alice", "password": "wrong password 1234"}, &e); got != 401 || e.Error.Code != "invalid_credentials" {
		t.Fatalf("wrong password = %d %+v", got, e)
	}
	if got := tn.call("POST", "/v1/auth/login", map[string]string{"username": "nobody", "password": "wrong password 1234"}, &e); got != 401 || e.Error.Code != "invalid_credentials" {
		t.Fatalf("unknown user = %d %+v", got, e)
	}

	// TOTP enrolment, then a step-up login.
	tn.token = tok.AccessToken
	var enr struct {
		Secret string `json:"secret"`
		URL    string `json:"otpauth_url"`
	}
	tn.mustCall(200, "POST", "/v1/auth/mfa/totp/enroll", nil, &enr)
	secrets = append(secrets, enr.Secret)
	code, err := totpCode(enr.Secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var rc struct {
		Codes []string `json:"recovery_codes"`
	}
	tn.mustCall(200, "POST", "/v1/auth/mfa/totp/confirm", map[string]string{"code": code}, &rc)
	secrets = append(secrets, rc.Codes...)
	if got := tn.call("POST", "/v1/auth/login", map[string]string{"username": "alice", "password": pw}, &e); got != 401 || e.Error.Code != "mfa_required" {
		t.Fatalf("login without code = %d %+v", got, e)
	}
	// The confirm code was used; the next step's code is within the ±1 step
	// tolerance (RFC 6238 §5.2).
	code2, _ := totpCode(enr.Secret, time.Now().Add(30*time.Second))
	secrets = append(secrets, code, code2)
	var tok2 struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	tn.mustCall(200, "POST", "/v1/auth/login", map[string]string{"username": "alice", "password": pw, "totp": code2}, &tok2)
	secrets = append(secrets, tok2.AccessToken, tok2.RefreshToken)
	if got := tn.call("POST", "/v1/auth/login", map[string]string{"username": "alice", "password": pw, "totp": code2}, &e); got != 401 {
		t.Fatalf("replayed TOTP code = %d", got)
	}
	tn.token = tok2.AccessToken

	// Step-up operations: import a key, create an API key, use it.
	priv := "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
	secrets = append(secrets, priv)
	var acc account
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "imported", "private_key": "0x" + priv}, &acc)
	if acc.Address != "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23" {
		t.Fatalf("imported address %s", acc.Address)
	}
	var ak struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	tn.mustCall(201, "POST", "/v1/auth/api-keys", map[string]any{"name": "ci", "actions": []string{"account.sign", "account.read"}, "accounts": []string{"imported"}}, &ak)
	secrets = append(secrets, ak.Key)
	req, _ := http.NewRequest("POST", tn.url+"/v1/accounts/imported/sign-message", strings.NewReader(`{"data":"via api key"}`))
	req.Header.Set("X-API-Key", ak.Key)
	resp, err := tn.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("api key sign = %d", resp.StatusCode)
	}
	var rt struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	tn.mustCall(200, "POST", "/v1/auth/refresh", map[string]string{"refresh_token": tok2.RefreshToken}, &rt)
	secrets = append(secrets, rt.AccessToken, rt.RefreshToken)
	tn.token = rt.AccessToken
	tn.mustCall(204, "DELETE", "/v1/accounts/imported", nil, nil)
	if got := tn.call("GET", "/v1/accounts/imported", nil, nil); got != 404 {
		t.Fatalf("deleted account answers %d, want 404", got)
	}
	if got := tn.call("POST", "/v1/accounts/imported/sign-message", map[string]string{"data": "x"}, nil); got != 404 {
		t.Fatalf("deleted account still signs: %d", got)
	}

	// A request to no route is audited too.
	if got := tn.call("GET", "/v1/no-such-endpoint", nil, nil); got != 404 {
		t.Fatalf("unknown endpoint = %d", got)
	}
	// The operator can find a token's uses by hashing it.
	tn.token = ir.RootToken
	var h struct{ Hash string }
	tn.mustCall(200, "POST", "/v1/sys/audit/hash", map[string]string{"input": tok.RefreshToken}, &h)
	var pk struct {
		KeyID     string `json:"key_id"`
		PublicKey string `json:"public_key"`
		HeadSeq   uint64 `json:"head_seq"`
	}
	tn.mustCall(200, "GET", "/v1/sys/audit/public-key", nil, &pk)
	tn.stop()

	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if s != "" && bytes.Contains(raw, []byte(s)) {
			t.Errorf("a secret (%d chars) appears in the audit log", len(s))
		}
	}
	if !bytes.Contains(raw, []byte(h.Hash)) {
		t.Error("the HMAC of the refresh token is not in the log")
	}
	for _, want := range []string{`"operation":"accounts.sign_message"`, `"api_key_id":`, `"subject":"alice"`, `"status":401`, `"error_code":"invalid_credentials"`, `"account":"alice/imported"`, `"operation":"unknown"`} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Errorf("log lacks %s", want)
		}
	}
	pub, _ := hex.DecodeString(pk.PublicKey)
	keys := map[string]ed25519.PublicKey{pk.KeyID: pub}
	rep, err := audit.Verify(bytes.NewReader(raw), keys, audit.VerifyOptions{MinSeq: pk.HeadSeq})
	if err != nil {
		t.Fatalf("untouched log does not verify: %v", err)
	}
	edited := bytes.Replace(raw, []byte(`"subject":"alice"`), []byte(`"subject":"mallory"`), 1)
	if _, err := audit.Verify(bytes.NewReader(edited), keys); err == nil {
		t.Fatal("edited log verifies")
	}
	lines := bytes.SplitAfter(bytes.TrimRight(raw, "\n"), []byte("\n"))
	short := bytes.Join(lines[:len(lines)-1], nil)
	if _, err := audit.Verify(bytes.NewReader(short), keys, audit.VerifyOptions{MinSeq: rep.LastSeq}); err == nil {
		t.Fatal("shortened log verifies against the known head")
	}
	holed := bytes.Join(append(append([][]byte{}, lines[:len(lines)/2]...), lines[len(lines)/2+1:]...), nil)
	if _, err := audit.Verify(bytes.NewReader(holed), keys); err == nil {
		t.Fatal("log with a line removed verifies")
	}
}

// flakySink fails while broken is set: a fault-injecting sink.
type flakySink struct{ broken atomic.Bool }

func (f *flakySink) Write(p []byte) error {
	if f.broken.Load() {
		return errors.New("injected sink failure")
	}
	return nil
}
func (f *flakySink) Name() string { return "flaky" }

// TestAuditFailClosed: with no sink able to record, requests are refused;
// once the sink heals, they are served again.
func TestAuditFailClosed(t *testing.T) {
	sink := &flakySink{}
	tn := startNode(t, t.TempDir(), nodeOpts{auditSinks: []audit.Sink{sink}})
	root := initShamir(t, tn)
	tn.token = root
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "a"}, nil)
	sink.broken.Store(true)
	var e apiErr
	if got := tn.call("POST", "/v1/accounts/a/sign-message", map[string]string{"data": "x"}, &e); got != 503 || e.Error.Code != "audit_unavailable" {
		t.Fatalf("unaudited request served: %d %+v", got, e)
	}
	if got := tn.call("POST", "/v1/accounts", map[string]string{"name": "b"}, &e); got != 503 {
		t.Fatalf("unaudited create served: %d", got)
	}
	sink.broken.Store(false)
	tn.mustCall(200, "POST", "/v1/accounts/a/sign-message", map[string]string{"data": "x"}, nil)
}

// fullDiskSink is a real file sink whose writes fail with ENOSPC while full
// is set, as a full disk answers.
type fullDiskSink struct {
	*audit.FileSink
	full atomic.Bool
}

func (f *fullDiskSink) Write(p []byte) error {
	if f.full.Load() {
		return fmt.Errorf("write %s: %w", f.Path(), syscall.ENOSPC)
	}
	return f.FileSink.Write(p)
}

// TestAuditFullDiskChangesNothing is issue 13 item 3: while the audit sink
// cannot write, a state-changing request is refused before it runs, so
// nothing it would have changed is committed; once the disk has room the
// same requests succeed, with their request lines.
func TestAuditFullDiskChangesNothing(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "audit.log")
	fs, err := audit.NewFileSink(logPath, 0)
	if err != nil {
		t.Fatal(err)
	}
	sink := &fullDiskSink{FileSink: fs}
	tn := startNode(t, t.TempDir(), nodeOpts{auditSinks: []audit.Sink{sink}})
	tn.token = initShamir(t, tn)
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "kept"}, nil)

	sink.full.Store(true)
	var e apiErr
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1/accounts", map[string]string{"name": "ghost"}},
		{"POST", "/v1/users", map[string]string{"username": "ghostuser", "password": "a long enough password 1"}},
		{"DELETE", "/v1/accounts/kept", nil},
	} {
		if got := tn.call(c.method, c.path, c.body, &e); got != 503 || e.Error.Code != "audit_unavailable" {
			t.Fatalf("%s %s with a full audit disk = %d %+v, want 503 audit_unavailable", c.method, c.path, got, e)
		}
	}
	sink.full.Store(false) // the disk has room again

	if got := tn.call("GET", "/v1/accounts/ghost", nil, nil); got != 404 {
		t.Fatalf("an account created while the audit disk was full exists: GET = %d", got)
	}
	if got := tn.call("GET", "/v1/users/ghostuser", nil, nil); got != 404 {
		t.Fatalf("a user created while the audit disk was full exists: GET = %d", got)
	}
	if got := tn.call("GET", "/v1/accounts/kept", nil, nil); got != 200 {
		t.Fatalf("an account deleted while the audit disk was full is gone: GET = %d", got)
	}
	// The sink recovers by itself: the same requests now succeed.
	var ghost account
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "ghost"}, &ghost)
	tn.mustCall(200, "POST", "/v1/accounts/ghost/sign-message", map[string]string{"data": "hello"}, nil)
	tn.mustCall(200, "POST", "/v1/rpc", `{"jsonrpc":"2.0","id":1,"method":"personal_sign","params":["0x68656c6c6f","`+ghost.Address+`"]}`, nil)
	// Another chain: the SHA-256 of the payload it signed.
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "sol", "chain": "solana"}, nil)
	tn.mustCall(200, "POST", "/v1/accounts/sol/sign-message", map[string]string{"data": "hello"}, nil)
	tn.stop()
	// sha256("hello")
	if !bytes.Contains(mustRead(t, logPath), []byte(`"signed":[{"kind":"message","hash":"sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}]`)) {
		t.Error("the Solana signature's line lacks the SHA-256 of its message")
	}

	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var intent, done, rpc bool
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if bytes.Contains(line, []byte(`"operation":"rpc"`)) && bytes.Contains(line, []byte(`"signed":[{"kind":"message","hash":"0x`)) {
			rpc = true
		}
		if bytes.Contains(line, []byte(`"operation":"accounts.create"`)) && bytes.Contains(line, []byte(`"phase":"request"`)) {
			intent = true
		}
		if bytes.Contains(line, []byte(`"operation":"accounts.sign_message"`)) && bytes.Contains(line, []byte(`"signed":[{"kind":"message","hash":"0x`)) {
			done = true
		}
	}
	if !intent || !done || !rpc {
		t.Fatalf("log lacks the create request line (%v) or the signed message hash of REST (%v) or JSON-RPC (%v)", intent, done, rpc)
	}
}

// TestAuditOnByDefault: a node with no audit setting logs to audit.log in
// its data directory; only audit = "off" turns the log off.
func TestAuditOnByDefault(t *testing.T) {
	dir := t.TempDir()
	tn := startNode(t, dir, nodeOpts{})
	tn.token = initShamir(t, tn)
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "a"}, nil)
	tn.stop()
	raw, err := os.ReadFile(filepath.Join(dir, "audit.log"))
	if err != nil || !bytes.Contains(raw, []byte(`"operation":"accounts.create"`)) {
		t.Fatalf("default audit log: %v, %d bytes", err, len(raw))
	}

	off := t.TempDir()
	tn = startNode(t, off, nodeOpts{mutate: func(c *config.Server) { c.Audit = "off" }})
	tn.token = initShamir(t, tn)
	if got := tn.call("GET", "/v1/sys/audit/public-key", nil, nil); got != 404 {
		t.Fatalf("audit off: public key = %d, want 404", got)
	}
	tn.stop()
	if _, err := os.Stat(filepath.Join(off, "audit.log")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf(`audit = "off" still wrote a log: %v`, err)
	}
}

// totpCode is what an authenticator app shows (HMAC-SHA-1, outside the
// FIPS boundary; see fips.Outside).
func totpCode(secret string, t time.Time) (code string, err error) {
	fips.Outside(func() { code, err = totp.GenerateCode(secret, t) })
	return code, err
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
