package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moonvault/moonvault/internal/config"
)

// consoleReq sends a request to the console endpoints.
func consoleReq(t *testing.T, tn *testNode, method, path string, body any, cookie *http.Cookie, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, tn.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := tn.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

func refreshCookieOf(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == "__Secure-mv-console-refresh" {
			return c
		}
	}
	return nil
}

// TestConsoleAssets: /ui/ is served from the binary with the console's own
// headers; the API keeps its own.
func TestConsoleAssets(t *testing.T) {
	tn := startNode(t, t.TempDir(), nodeOpts{})
	resp, body := consoleReq(t, tn, "GET", "/ui/", nil, nil, nil)
	if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`<script type="module" src="js/app.js">`)) {
		t.Fatalf("/ui/: %d %s", resp.StatusCode, body)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "frame-ancestors 'none'", "script-src 'self'", "style-src 'self'", "object-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %s", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") {
		t.Errorf("CSP %q", csp)
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("headers %v", resp.Header)
	}
	// Revalidation with the ETag.
	etag := resp.Header.Get("ETag")
	resp, _ = consoleReq(t, tn, "GET", "/ui/", nil, nil, map[string]string{"If-None-Match": etag})
	if resp.StatusCode != 304 {
		t.Errorf("If-None-Match: %d", resp.StatusCode)
	}
	resp, _ = consoleReq(t, tn, "GET", "/ui/js/app.js", nil, nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Errorf("app.js: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	resp, _ = consoleReq(t, tn, "GET", "/ui/vendor/LICENSE.preact", nil, nil, nil)
	if resp.StatusCode != 200 {
		t.Errorf("license: %d", resp.StatusCode)
	}
	resp, _ = consoleReq(t, tn, "GET", "/ui/../v1/sys/health", nil, nil, nil)
	if resp.StatusCode == 200 && strings.Contains(resp.Header.Get("Content-Security-Policy"), "'self'") {
		t.Error("path traversal out of /ui/")
	}
	resp, _ = consoleReq(t, tn, "GET", "/ui/nope.js", nil, nil, nil)
	if resp.StatusCode != 404 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("missing file: %d", resp.StatusCode)
	}
	noRedirect := *tn.client
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	r, err := noRedirect.Get(tn.url + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 301 || r.Header.Get("Location") != "/ui/" {
		t.Errorf("/ui: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	// POST to the console is not a route.
	resp, _ = consoleReq(t, tn, "POST", "/ui/", nil, nil, nil)
	if resp.StatusCode != 404 && resp.StatusCode != 405 {
		t.Errorf("POST /ui/: %d", resp.StatusCode)
	}
	// The API keeps default-src 'none'.
	resp, _ = consoleReq(t, tn, "GET", "/v1/sys/health", nil, nil, nil)
	if got := resp.Header.Get("Content-Security-Policy"); got != "default-src 'none'; frame-ancestors 'none'" {
		t.Errorf("API CSP %q", got)
	}
}

// TestConsoleSession: console login puts the refresh token in an HttpOnly
// cookie only; refresh rotates it, refuses cross-site requests and detects
// reuse; logout deletes it; the JSON flow of API clients is unchanged; and
// every call is audited.
func TestConsoleSession(t *testing.T) {
	dir := t.TempDir()
	auditFile := filepath.Join(t.TempDir(), "audit.log")
	tn := startNode(t, dir, nodeOpts{mutate: func(c *config.Server) { c.AuditFile = auditFile }})
	tn.token = initShamir(t, tn)
	const pw = "correct horse battery staple"
	tn.mustCall(201, "POST", "/v1/users", map[string]string{"username": "alice", "password": pw}, nil)
	console := map[string]string{"X-Moonvault-Console": "1", "Origin": tn.url, "Sec-Fetch-Site": "same-origin"}

	// Without the console header a login is refused (a cross-site form cannot set it).
	resp, _ := consoleReq(t, tn, "POST", "/v1/auth/console/login", map[string]string{"username": "alice", "password": pw}, nil, nil)
	if resp.StatusCode != 403 {
		t.Fatalf("login without header: %d", resp.StatusCode)
	}
	resp, body := consoleReq(t, tn, "POST", "/v1/auth/console/login", map[string]string{"username": "alice", "password": "wrong password here"}, nil, console)
	if resp.StatusCode != 401 || !strings.Contains(string(body), "invalid_credentials") {
		t.Fatalf("bad password: %d %s", resp.StatusCode, body)
	}
	resp, body = consoleReq(t, tn, "POST", "/v1/auth/console/login", map[string]string{"username": "alice", "password": pw}, nil, console)
	if resp.StatusCode != 200 {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	var sess struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		ExpiresIn    int    `json:"expires_in"`
		IdleTimeout  int    `json:"idle_timeout"`
		Session      struct {
			ID, Username, Role string
			AMR                []string
		} `json:"session"`
	}
	if err := json.Unmarshal(body, &sess); err != nil {
		t.Fatal(err)
	}
	if sess.AccessToken == "" || sess.RefreshToken != "" || sess.IdleTimeout != 3600 || sess.Session.Username != "alice" || sess.Session.Role != "user" || sess.Session.ID == "" {
		t.Fatalf("console login answer: %s", body)
	}
	c := refreshCookieOf(t, resp)
	if c == nil || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/v1/auth/console/refresh" || c.MaxAge <= 0 {
		t.Fatalf("refresh cookie: %+v", c)
	}
	if bytes.Contains(body, []byte(c.Value)) {
		t.Fatal("the refresh token is in the body")
	}

	// Refresh: only same-origin console requests.
	for _, h := range []map[string]string{
		nil,
		{"X-Moonvault-Console": "1", "Origin": "https://evil.example"},
		{"X-Moonvault-Console": "1", "Sec-Fetch-Site": "cross-site"},
		{"X-Moonvault-Console": "0"},
	} {
		if resp, _ := consoleReq(t, tn, "POST", "/v1/auth/console/refresh", nil, c, h); resp.StatusCode != 403 {
			t.Fatalf("refresh with %v: %d", h, resp.StatusCode)
		}
	}
	resp, body = consoleReq(t, tn, "POST", "/v1/auth/console/refresh", nil, nil, console)
	if resp.StatusCode != 401 {
		t.Fatalf("refresh without cookie: %d %s", resp.StatusCode, body)
	}
	resp, body = consoleReq(t, tn, "POST", "/v1/auth/console/refresh", nil, c, console)
	if resp.StatusCode != 200 {
		t.Fatalf("refresh: %d %s", resp.StatusCode, body)
	}
	c2 := refreshCookieOf(t, resp)
	if c2 == nil || c2.Value == c.Value {
		t.Fatal("refresh did not rotate the cookie")
	}
	var again struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.Unmarshal(body, &again)
	if tn.callTok(again.AccessToken, "GET", "/v1/accounts", nil, nil) != 200 {
		t.Fatal("refreshed access token refused")
	}

	// Logout ends the session and deletes the cookie.
	resp, _ = consoleReq(t, tn, "POST", "/v1/auth/console/logout", nil, nil, map[string]string{"X-Moonvault-Console": "1", "Authorization": "Bearer " + again.AccessToken})
	if resp.StatusCode != 204 {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if d := refreshCookieOf(t, resp); d == nil || d.MaxAge >= 0 {
		t.Fatalf("logout cookie: %+v", d)
	}
	resp, _ = consoleReq(t, tn, "POST", "/v1/auth/console/refresh", nil, c2, console)
	if resp.StatusCode != 401 {
		t.Fatalf("refresh after logout: %d", resp.StatusCode)
	}

	// Reuse of a rotated cookie revokes the session.
	resp, _ = consoleReq(t, tn, "POST", "/v1/auth/console/login", map[string]string{"username": "alice", "password": pw}, nil, console)
	c = refreshCookieOf(t, resp)
	resp, body = consoleReq(t, tn, "POST", "/v1/auth/console/refresh", nil, c, console)
	_ = json.Unmarshal(body, &again)
	c2 = refreshCookieOf(t, resp)
	if resp, _ := consoleReq(t, tn, "POST", "/v1/auth/console/refresh", nil, c, console); resp.StatusCode != 401 {
		t.Fatalf("reused cookie: %d", resp.StatusCode)
	}
	if resp, _ := consoleReq(t, tn, "POST", "/v1/auth/console/refresh", nil, c2, console); resp.StatusCode != 401 {
		t.Fatalf("after reuse the session lives on: %d", resp.StatusCode)
	}

	// Step-up without TOTP enrolled: the API says so.
	var fresh struct {
		AccessToken string `json:"access_token"`
	}
	_, body = consoleReq(t, tn, "POST", "/v1/auth/console/login", map[string]string{"username": "alice", "password": pw}, nil, console)
	_ = json.Unmarshal(body, &fresh)
	h := map[string]string{"X-Moonvault-Console": "1", "Authorization": "Bearer " + fresh.AccessToken}
	resp, body = consoleReq(t, tn, "POST", "/v1/auth/console/step-up", map[string]string{"code": "123456"}, nil, h)
	if resp.StatusCode != 409 || !strings.Contains(string(body), "mfa_not_enrolled") {
		t.Fatalf("step-up without TOTP: %d %s", resp.StatusCode, body)
	}

	// API clients keep the JSON flow: the refresh token in the body, no cookie.
	resp, body = consoleReq(t, tn, "POST", "/v1/auth/login", map[string]string{"username": "alice", "password": pw}, nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"refresh_token"`) || len(resp.Cookies()) != 0 {
		t.Fatalf("API login: %d %s %v", resp.StatusCode, body, resp.Cookies())
	}

	// Each console call is one audit line, with the refresh token only as an HMAC.
	tn.stop()
	log, err := os.ReadFile(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"auth.console.login", "auth.console.refresh", "auth.console.logout", "auth.console.step_up"} {
		if !bytes.Contains(log, []byte(`"`+op+`"`)) {
			t.Errorf("audit log has no %s line", op)
		}
	}
	if bytes.Contains(log, []byte(c.Value)) || bytes.Contains(log, []byte(c2.Value)) {
		t.Error("a refresh token is in the audit log")
	}
}
