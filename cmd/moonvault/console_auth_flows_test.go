package main

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Console flows of signing in and of a user's own credentials: passwords,
// TOTP, API keys and sessions.

func flowPasswordSignIn(t *testing.T, ce *consoleEnv) {
	b := ce.browser(t)
	b.open(ce.base + "/ui/")
	b.waitTitle("Sign in — Moon Vault")
	// A wrong password shows the API's message.
	b.fill("Username", "admin")
	b.fill("Password", "not the password")
	b.click("button", "Sign in")
	b.waitText("[role=alert]", "invalid username, password or code")
	b.shot("signin-error")

	b.fill("Password", consoleAdminPW)
	b.click("button", "Sign in")
	b.find("button", "Sign out")
	b.waitTitle("Accounts — Moon Vault (" + strings.TrimPrefix(ce.base, "https://") + ")")
	b.find("link", "Users") // admins see the admin pages

	// A reload keeps the session: the refresh cookie restores it.
	b.reload()
	b.find("button", "Sign out")

	b.click("button", "Sign out")
	b.find("button", "Sign in")
	b.waitText(".notice", "You signed out")
	b.reload()
	b.find("button", "Sign in")
	if b.has("button", "Sign out") {
		t.Fatal("signed in again after sign-out and reload")
	}
}

func flowSecurity(t *testing.T, ce *consoleEnv) {
	b := ce.browser(t)
	b.signIn(ce, "admin", consoleAdminPW, "")

	for _, u := range []string{ce.base + "/ui/", ce.base + "/ui/js/app.js", ce.base + "/ui/app.css"} {
		b.mu.Lock()
		h := b.headers[u]
		b.mu.Unlock()
		csp, _ := h["content-security-policy"].(string)
		if csp == "" {
			csp, _ = h["Content-Security-Policy"].(string)
		}
		for _, want := range []string{"default-src 'self'", "frame-ancestors 'none'", "script-src 'self'", "style-src 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %s", u, csp, want)
			}
		}
		for _, bad := range []string{"unsafe-inline", "unsafe-eval", "http:", "*"} {
			if strings.Contains(csp, bad) {
				t.Errorf("%s: CSP %q allows %s", u, csp, bad)
			}
		}
	}
	// The policy is enforced: a script injected into the page does not run
	// (in a browser of its own, whose expected violation is not a failure).
	probe := ce.browser(t)
	probe.quiet = true
	probe.open(ce.base + "/ui/")
	probe.waitTitle("Sign in")
	ran := evalJS[string](probe, `(() => {
		try {
			const s = document.createElement('script');
			s.textContent = 'window.__injected = true';
			document.head.appendChild(s);
		} catch (e) { return 'refused: ' + e.name; }
		return window.__injected ? 'ran' : 'refused';
	})()`)
	if !strings.HasPrefix(ran, "refused") {
		t.Errorf("an injected inline script %s under the console's CSP", ran)
	}

	// No token in web storage, none readable by script.
	type webStorage struct {
		Local, Session int
		Values         string
		Cookie         string
	}
	storage := evalJS[webStorage](b, `({Local: localStorage.length, Session: sessionStorage.length,
		Values: JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)]),
		Cookie: document.cookie})`)
	if storage.Local != 0 || storage.Session != 0 || strings.Contains(storage.Values, "eyJ") || storage.Cookie != "" {
		t.Errorf("web storage holds something: %+v", storage)
	}

	// The refresh token is an HttpOnly, Secure, SameSite=Strict cookie for
	// the refresh path only.
	got, err := chromedp.Run(b.ctx, func(ctx context.Context, tg *chromedp.Target) (network.GetCookiesResult, error) {
		return cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{ce.base + "/v1/auth/console/refresh", ce.base + "/ui/", ce.base + "/v1/accounts"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	cookies := got.Cookies
	if len(cookies) != 1 {
		t.Fatalf("cookies: %d, want 1", len(cookies))
	}
	c := cookies[0]
	if c.Name != "__Secure-mv-console-refresh" || !c.HTTPOnly || !c.Secure || c.SameSite != network.CookieSameSiteStrict || c.Path != "/v1/auth/console/refresh" {
		t.Errorf("refresh cookie: %+v", c)
	}

	// The cookie endpoint refuses requests that a cross-site page could make.
	for _, hdr := range []map[string]string{
		{}, // no console header: a form post or a simple fetch
		{"X-Moonvault-Console": "1", "Origin": "https://evil.example"},
		{"X-Moonvault-Console": "1", "Sec-Fetch-Site": "cross-site"},
	} {
		req, _ := http.NewRequest("POST", ce.base+"/v1/auth/console/refresh", nil)
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := ce.sp.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("refresh with %v: %d, want 403", hdr, resp.StatusCode)
		}
	}
	// The API keeps its own strict policy.
	resp, err := ce.sp.client.Get(ce.base + "/v1/sys/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Content-Security-Policy"); got != "default-src 'none'; frame-ancestors 'none'" {
		t.Errorf("API CSP: %q", got)
	}
	// The session still works after all that (nothing above consumed it).
	b.goTo("Sessions")
	b.find("button", "Revoke")
}

func flowTOTPSignIn(t *testing.T, ce *consoleEnv) {
	pw := ce.newUser(t, "tina")
	secret, _ := ce.enrollTOTP(t, "tina", pw)
	codes := codesFor(t, secret)
	b := ce.browser(t)
	b.open(ce.base + "/ui/")
	b.fill("Username", "tina")
	b.fill("Password", pw)
	b.click("button", "Sign in")
	// The vault asks for the second factor; a wrong code shows its message.
	b.shot("signin-code")
	b.fill("One-time code", "000000")
	b.click("button", "Sign in")
	b.waitText("[role=alert]", "invalid username, password or code")
	b.fill("One-time code", codes.cur)
	b.click("button", "Sign in")
	b.find("button", "Sign out")
	if b.has("link", "Users") {
		t.Error("a user sees the admin pages")
	}
	b.goTo("Two-factor")
	b.waitText("main", "signed in with a one-time code")
}

func flowMFAEnrolment(t *testing.T, ce *consoleEnv) {
	pw := ce.newUser(t, "maya")
	b := ce.browser(t)
	b.signIn(ce, "maya", pw, "")
	b.goTo("Two-factor")
	b.click("button", "Set up two-factor sign-in")
	b.find("image", "QR code of the authenticator setup link")
	secret := b.text(`[data-secret="totp"]`)
	b.shot("mfa-enrol")
	codes := codesFor(t, secret)
	b.fill("One-time code", codes.prev)
	b.click("button", "Confirm")
	b.waitCSS(`[data-secret="recovery-codes"]`)
	n := evalJS[int](b, `document.querySelectorAll('[data-secret="recovery-codes"] li').length`)
	if n != 10 {
		t.Errorf("%d recovery codes shown, want 10", n)
	}
	// From now on signing in needs the code.
	b.click("button", "Sign out")
	b.signIn(ce, "maya", pw, codes.cur)
}

func flowAPIKeys(t *testing.T, ce *consoleEnv) {
	pw := ce.newUser(t, "kim")
	secret, _ := ce.enrollTOTP(t, "kim", pw)
	codes := codesFor(t, secret)
	b := ce.browser(t)
	b.signIn(ce, "kim", pw, codes.cur)
	b.goTo("API keys")
	b.fill("Key name", "ci")
	// A fresh code proves the second factor again (step-up) before the key is made.
	b.fill("One-time code", codes.next)
	b.click("button", "Create API key")
	key := b.text(`[data-secret="api-key"]`)
	b.shot("api-key-created")
	if !strings.HasPrefix(key, "mvk_") {
		t.Fatalf("API key %q", key)
	}
	if code := ce.call(t, key, "GET", "/v1/accounts", nil, nil); code != 200 {
		t.Fatalf("the new key does not work: %d", code)
	}
	b.click("button", "I have stored it")
	b.waitText("table", "ci")
	b.click("button", "Revoke")
	b.waitText("table", "No API keys.")
	if code := ce.call(t, key, "GET", "/v1/accounts", nil, nil); code != 401 {
		t.Fatalf("a revoked key still answers %d", code)
	}

	// An admin signed in with a password only: the vault asks for a second
	// factor, and the console shows its message.
	a := ce.browser(t)
	a.signIn(ce, "admin", consoleAdminPW, "")
	a.goTo("API keys")
	a.fill("Key name", "nope")
	a.click("button", "Create API key")
	a.waitText("[role=alert]", "needs a recent login with a TOTP code")
}

func flowRevokeSession(t *testing.T, ce *consoleEnv) {
	pw := ce.newUser(t, "rob")
	other := ce.login(t, "rob", pw, "") // a second session, from a program
	b := ce.browser(t)
	b.signIn(ce, "rob", pw, "")
	b.goTo("Sessions")
	b.waitCSS("tr:has(.badge) button")
	b.shot("sessions")
	rows := evalJS[int](b, `document.querySelectorAll('tbody tr').length`)
	if rows != 2 {
		t.Fatalf("%d sessions listed, want 2", rows)
	}
	b.find("button", "Revoke")
	// Revoke the program's session: it stops working at once.
	b.clickCSS(`tbody tr:not(:has(.badge)) button`)
	b.poll("one session left", func(ctx context.Context, tg *chromedp.Target) (bool, error) {
		n, err := chromedp.Evaluate[int](`document.querySelectorAll('tbody tr').length`)(ctx, tg)
		return n == 1, err
	})
	if code := ce.call(t, other, "GET", "/v1/accounts", nil, nil); code != 401 {
		t.Fatalf("revoked session answers %d", code)
	}
	// Revoke this very session: the console is signed out, and stays so.
	b.clickCSS(`tr:has(.badge) button`)
	b.find("button", "Sign in")
	b.waitText(".notice", "revoked this session")
	b.reload()
	b.find("button", "Sign in")

	// A session revoked elsewhere signs the console out at its next call.
	b.signIn(ce, "rob", pw, "")
	tok := ce.login(t, "rob", pw, "")
	var raw struct {
		Sessions []map[string]any `json:"sessions"`
	}
	ce.mustCall(t, 200, tok, "GET", "/v1/auth/sessions", nil, &raw)
	for _, s := range raw.Sessions {
		if ua, _ := s["user_agent"].(string); strings.Contains(ua, "Chrome") {
			ce.mustCall(t, 204, tok, "DELETE", "/v1/auth/sessions/"+s["id"].(string), nil, nil)
		}
	}
	b.click("link", "Sessions")
	b.find("button", "Sign in")
	b.waitText(".notice", "session has ended")
}

func flowAdminDisablesUser(t *testing.T, ce *consoleEnv) {
	// dora is signed in in her own browser.
	dora := ce.browser(t)
	admin := ce.browser(t)
	admin.signIn(ce, "admin", consoleAdminPW, "")
	admin.goTo("Users")
	admin.fill("New username", "dora")
	admin.fill("New password", "passphrase for dora")
	admin.click("button", "Create user")
	admin.waitCSS(`tr[data-user="dora"] button`)
	dora.signIn(ce, "dora", "passphrase for dora", "")

	admin.find("button", "Disable")
	admin.clickCSS(`tr[data-user="dora"] button`)
	admin.waitText(`tr[data-user="dora"] .status`, "disabled")
	admin.shot("users")
	if code := ce.call(t, "", "POST", "/v1/auth/login", map[string]string{"username": "dora", "password": "passphrase for dora"}, nil); code != 401 {
		t.Fatalf("a disabled user logs in: %d", code)
	}
	// Her console is signed out at its next call.
	dora.click("link", "Sessions")
	dora.find("button", "Sign in")

	// Enable again: she can sign in.
	admin.find("button", "Enable")
	admin.clickCSS(`tr[data-user="dora"] button`)
	admin.waitText(`tr[data-user="dora"] .status`, "active")
	dora.signIn(ce, "dora", "passphrase for dora", "")
}

// flowPasswordChange: a user changes her password; the old one stops
// working, the new one works, and her other sessions end.
func flowPasswordChange(t *testing.T, ce *consoleEnv) {
	pw := ce.newUser(t, "quinn")
	other := ce.login(t, "quinn", pw, "")
	b := ce.browser(t)
	b.signIn(ce, "quinn", pw, "")
	b.goTo("Password")
	b.fill("Current password", pw)
	b.fill("New password", "short")
	b.click("button", "Change password")
	b.waitText("[role=alert]", "password") // the API's message about the weak password
	b.fill("New password", "a much better passphrase")
	b.click("button", "Change password")
	b.waitText(".notice", "Your password was changed")
	if code := ce.call(t, other, "GET", "/v1/accounts", nil, nil); code != 401 {
		t.Errorf("another session survives the change: %d", code)
	}
	if code := ce.call(t, "", "POST", "/v1/auth/login", map[string]string{"username": "quinn", "password": pw}, nil); code != 401 {
		t.Errorf("old password: %d", code)
	}
	ce.login(t, "quinn", "a much better passphrase", "")
	b.goTo("Accounts") // this session lives on
}
