package httpapi

// The web console (internal/console) is served at /ui/ from files embedded in
// the binary, with its own security headers. It is a client of the public
// API like any other, with one difference in how it holds its session: the
// console logs in through /v1/auth/console/login, which keeps the refresh
// token out of JavaScript's reach in an HttpOnly cookie scoped to
// /v1/auth/console/refresh, and the access token lives only in the page's
// memory. API clients keep the JSON flow of /v1/auth/login unchanged.

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/moonvault/moonvault/internal/auth"
	"github.com/moonvault/moonvault/internal/console"
	"github.com/moonvault/moonvault/internal/secret"
)

const (
	consolePrefix = "/ui/"
	// consoleCookie holds a console session's refresh token. The __Secure-
	// prefix makes browsers refuse it unless it is set Secure over HTTPS
	// (RFC 6265bis §4.1.3.1).
	consoleCookie      = "__Secure-mv-console-refresh"
	consoleRefreshPath = "/v1/auth/console/refresh"
	// consoleHeader must be present on every console auth call: a custom
	// header cannot be sent cross-origin without a CORS preflight, which
	// this server never grants.
	consoleHeader = "X-Moonvault-Console"
)

// consoleCSP allows the console's own scripts, styles and API calls and
// nothing else: no inline script or style, no eval, no framing.
const consoleCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; " +
	"frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"

func (a *API) consoleRoutes() []route {
	return []route{
		{"POST", "/v1/auth/console/login", "auth.console.login", unsealed, a.consoleLogin},
		{"POST", consoleRefreshPath, "auth.console.refresh", unsealed, a.consoleRefresh},
		{"POST", "/v1/auth/console/logout", "auth.console.logout", authed, a.consoleLogout},
		{"POST", "/v1/auth/console/step-up", "auth.console.step_up", authed, a.consoleStepUp},
	}
}

// consoleFile is one embedded file, ready to serve.
type consoleFile struct {
	body        []byte
	contentType string
	etag        string
}

// mountConsole serves the embedded console at /ui/ (GET and HEAD). Static
// files are the same for everyone and carry no credential, so they are not
// audited; every action the console takes is an audited API call.
func (a *API) mountConsole() {
	files := map[string]consoleFile{}
	err := fs.WalkDir(console.Files(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(console.Files(), p)
		if err != nil {
			return err
		}
		ct := mime.TypeByExtension(path.Ext(p))
		switch path.Ext(p) {
		case ".js", ".mjs":
			ct = "text/javascript; charset=utf-8"
		case "":
			ct = "text/plain; charset=utf-8" // LICENSE files
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(b)
		files[p] = consoleFile{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		return nil
	})
	if err != nil {
		panic("console: embedded files unreadable: " + err.Error()) // fixed at build time
	}
	a.mux.HandleFunc("GET /ui/", func(w http.ResponseWriter, r *http.Request) {
		consoleHeaders(w.Header())
		name := strings.TrimPrefix(r.URL.Path, consolePrefix)
		if name == "" {
			name = "index.html"
		}
		f, ok := files[name]
		if !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", f.contentType)
		w.Header().Set("ETag", f.etag)
		if r.Header.Get("If-None-Match") == f.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(f.body)
		}
	})
	a.mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) {
		consoleHeaders(w.Header())
		http.Redirect(w, r, consolePrefix, http.StatusMovedPermanently)
	})
}

// consoleHeaders replaces the API's headers for console pages.
func consoleHeaders(h http.Header) {
	h.Set("Content-Security-Policy", consoleCSP)
	h.Set("Cache-Control", "no-cache") // revalidate with the ETag: a new binary serves new files at once
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
}

// consoleGuard admits only same-origin console requests to the cookie
// endpoints: the custom header forces a CORS preflight on any cross-origin
// request, and Origin / Sec-Fetch-Site, when the browser sends them, must
// name this very origin. The cookie is also SameSite=Strict.
func consoleGuard(r *http.Request) error {
	if r.Header.Get(consoleHeader) != "1" {
		return errForbidden("console session requests need the " + consoleHeader + ": 1 header")
	}
	if o := r.Header.Get("Origin"); o != "" && o != "https://"+r.Host {
		return errForbidden("cross-origin console request refused")
	}
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" {
		return errForbidden("cross-site console request refused")
	}
	return nil
}

// consoleSession is what the console learns at login and each refresh: the
// access token and how long the session may idle, who is signed in.
type consoleSession struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	// IdleTimeout (seconds): the console signs out after this long without
	// activity, as the server ends an unused session.
	IdleTimeout int `json:"idle_timeout"`
	Session     struct {
		ID       string    `json:"id"`
		Username string    `json:"username"`
		Role     string    `json:"role"`
		AMR      []string  `json:"amr"`
		AuthTime time.Time `json:"auth_time"`
	} `json:"session"`
}

func refreshCookie(value string, maxAge time.Duration) *http.Cookie {
	c := &http.Cookie{Name: consoleCookie, Value: value, Path: consoleRefreshPath,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: int(maxAge.Seconds())}
	if value == "" {
		c.MaxAge = -1 // delete
	}
	return c
}

// consoleAnswer sets the refresh cookie and answers with the session.
func (a *API) consoleAnswer(q *request, tok *auth.Tokens) (int, any, error) {
	p, err := a.d.Auth.Authenticate(q.ctx(), tok.AccessToken)
	if err != nil {
		return 0, nil, err
	}
	q.principal = p
	idle, lifetime := a.d.Auth.SessionTimeouts()
	out := consoleSession{AccessToken: tok.AccessToken, TokenType: tok.TokenType, ExpiresIn: tok.ExpiresIn,
		IdleTimeout: int(idle.Seconds())}
	out.Session.ID, out.Session.Username, out.Session.Role = p.SessionID, p.Subject, p.Role
	out.Session.AMR, out.Session.AuthTime = p.AMR, p.AuthTime
	if tok.RefreshToken == "" { // step-up: the session's refresh token is unchanged
		return 200, out, nil
	}
	cookie := refreshCookie(tok.RefreshToken, lifetime)
	return 200, streamBody(func(w http.ResponseWriter) {
		http.SetCookie(w, cookie)
		writeJSON(w, 200, out)
	}), nil
}

// consoleLogin is /v1/auth/login for the console: the same body and checks,
// and the refresh token goes into the cookie instead of the answer.
func (a *API) consoleLogin(q *request) (int, any, error) {
	if err := consoleGuard(q.Request); err != nil {
		return 0, nil, err
	}
	tok, err := a.logIn(q)
	if err != nil {
		return 0, nil, err
	}
	return a.consoleAnswer(q, tok)
}

// consoleRefresh rotates the cookie's refresh token and returns a new access
// token; a page reload restores the session this way.
func (a *API) consoleRefresh(q *request) (int, any, error) {
	if err := consoleGuard(q.Request); err != nil {
		return 0, nil, err
	}
	c, err := q.Cookie(consoleCookie)
	if err != nil || c.Value == "" {
		return 0, nil, errUnauthenticated
	}
	q.hashSecret("refresh_token", c.Value)
	tok, err := a.d.Auth.Refresh(q.ctx(), secret.String(c.Value), remoteIP(q.Request), q.UserAgent())
	if err != nil {
		// The cookie stays until it expires or the console logs in again:
		// it names a session that no longer refreshes, and the answer to
		// an error carries no Set-Cookie.
		return 0, nil, err
	}
	return a.consoleAnswer(q, tok)
}

// consoleLogout ends the session and deletes the cookie.
func (a *API) consoleLogout(q *request) (int, any, error) {
	if err := consoleGuard(q.Request); err != nil {
		return 0, nil, err
	}
	if q.principal.IsAPIKey() {
		return 0, nil, errForbidden("API keys have no sessions")
	}
	if err := a.d.Auth.Logout(q.ctx(), q.principal); err != nil {
		return 0, nil, err
	}
	cookie := refreshCookie("", 0)
	return 204, streamBody(func(w http.ResponseWriter) {
		http.SetCookie(w, cookie)
		w.WriteHeader(http.StatusNoContent)
	}), nil
}

// consoleStepUp proves a fresh one-time code for the console's session
// (auth.Service.StepUp) and answers a new access token that carries it; the
// console asks for a code before an operation that needs step-up (creating
// an API key, approving).
func (a *API) consoleStepUp(q *request) (int, any, error) {
	if err := consoleGuard(q.Request); err != nil {
		return 0, nil, err
	}
	var req struct {
		Code secret.String `json:"code"`
	}
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	tok, err := a.d.Auth.StepUp(q.ctx(), q.principal, req.Code, remoteIP(q.Request))
	if err != nil {
		return 0, nil, err
	}
	return a.consoleAnswer(q, tok)
}
