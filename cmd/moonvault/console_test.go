package main

// Browser tests of the web console (/ui/): the real binary in dev mode, as
// ./scripts/dev runs it, driven through Debian's headless Chromium with
// chromedp over real HTTPS. Controls are found by their accessible role and
// name in Chromium's accessibility tree, as a screen reader sees them.
//
// Every flow is one entry of consoleFlows, run in order against one dev
// server; none is skipped. Without Chromium the test skips, except under
// CI=true, where it fails (chromiumPath).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/fetch"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/moonvault/moonvault/internal/fips"
	"github.com/moonvault/moonvault/internal/testdeps"
)

const consoleAdminPW = "console admin passphrase 1"

// consoleFlow is one thing a person does in the console.
type consoleFlow struct {
	name string
	run  func(t *testing.T, ce *consoleEnv)
}

var consoleFlows = []consoleFlow{
	{name: "sign in with a password, reload, sign out", run: flowPasswordSignIn},
	{name: "CSP header, refresh cookie, no token in web storage", run: flowSecurity},
	{name: "create an Ethereum account and sign a message", run: flowEthereumSign},
	{name: "sign in with TOTP", run: flowTOTPSignIn},
	{name: "MFA enrolment with a QR code", run: flowMFAEnrolment},
	{name: "API keys: create with step-up, use, revoke", run: flowAPIKeys},
	{name: "revoke a session and be signed out", run: flowRevokeSession},
	{name: "an admin disables a user", run: flowAdminDisablesUser},
	{name: "admin system page", run: flowSystemPage},
	{name: "phone width", run: flowPhoneWidth},
	{name: "long lists paginate", run: flowPagination},
	{name: "change the password", run: flowPasswordChange},
	{name: "create a Bitcoin account from an HD wallet", run: flowBitcoinHD},
	{name: "approve a pending approval", run: flowApprove},
	{name: "Solana account from an HD wallet, signature and provenance", run: flowSolana},
	{name: "policies: view and dry run", run: flowPolicyDryRun},
}

func TestConsole(t *testing.T) {
	ce := startConsole(t, nil)
	for _, f := range consoleFlows {
		t.Run(f.name, func(t *testing.T) { f.run(t, ce) })
	}
}

// TestConsoleIdleLogout: with idle_timeout = 4s, a console left alone signs
// itself out, and the server has ended the session too.
func TestConsoleIdleLogout(t *testing.T) {
	ce := startConsole(t, []string{"MOONVAULT_IDLE_TIMEOUT=4s"})
	b := ce.browser(t)
	b.signIn(ce, "admin", consoleAdminPW, "")
	b.waitText(".notice", "without activity")
	b.find("button", "Sign in")
	b.reload()
	b.find("button", "Sign in") // the cookie no longer restores anything
}

// consoleEnv is one dev server and one Chromium shared by the flows.
type consoleEnv struct {
	sp      *serverProc
	dir     string // the dev data dir (audit.log is there)
	base    string // https://127.0.0.1:port
	browse  context.Context
	adminMu sync.Mutex
	admin   string // an admin access token for API calls
	padmin  string // an admin access token with step-up (policyAdmin)
	// padminRecovery are padmin's unused recovery codes.
	padminRecovery []string
}

func chromiumPath(t *testing.T) string {
	for _, p := range []string{os.Getenv("MOONVAULT_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	testdeps.Missing(t, "Chromium is not installed: apt-get install chromium chromium-driver (scripts/test does it)")
	return ""
}

func startConsole(t *testing.T, extraEnv []string) *consoleEnv {
	t.Helper()
	chromium := chromiumPath(t)
	dir := t.TempDir()
	env := append([]string{"MOONVAULT_DEV_ADMIN_PASSWORD=" + consoleAdminPW}, extraEnv...)
	sp := startServer(t, anyPort, filepath.Join(dir, "dev-ca.pem"), env, "-dev", "-dev-listen-address", anyPort, "-data-dir", dir)
	addr := sp.addr
	if want := "https://" + addr + "/ui/"; !strings.Contains(sp.out.String(), want) {
		t.Fatalf("the dev banner does not print the console address %s:\n%s", want, sp.out.String())
	}
	// Chromium trusts exactly the dev certificate's key, nothing else.
	pemBytes, err := os.ReadFile(filepath.Join(dir, "dev-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		t.Fatal("dev-ca.pem holds no PEM block")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(spki[:])),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	if err := chromedp.Do(bctx); err != nil { // starts Chromium
		cancelBrowser()
		cancelAlloc()
		t.Fatalf("start %s: %v", chromium, err)
	}
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	return &consoleEnv{sp: sp, dir: dir, base: "https://" + addr, browse: bctx}
}

// audited reports whether the dev audit log has a line of operation op by
// subject (and for account, when given).
func (ce *consoleEnv) audited(t *testing.T, op, subject, account string) bool {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(ce.dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(raw, []byte("\n")) {
		var e struct{ Operation, Subject, Account string }
		if json.Unmarshal(line, &e) == nil && e.Operation == op && e.Subject == subject && (account == "" || e.Account == account) {
			return true
		}
	}
	return false
}

// call makes an API request as a client program would (not the browser).
func (ce *consoleEnv) call(t *testing.T, tok, method, path string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, ce.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(tok, "mvk_") {
		req.Header.Set("X-API-Key", tok)
	} else if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := ce.sp.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		_ = json.Unmarshal(raw, out)
	}
	return resp.StatusCode
}

func (ce *consoleEnv) mustCall(t *testing.T, want int, tok, method, path string, body, out any) {
	t.Helper()
	var raw json.RawMessage
	if got := ce.call(t, tok, method, path, body, &raw); got != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, got, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatal(err)
		}
	}
}

// login is the JSON API login of a client program.
func (ce *consoleEnv) login(t *testing.T, user, pw, code string) string {
	t.Helper()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	body := map[string]string{"username": user, "password": pw}
	if code != "" {
		body["totp"] = code
	}
	ce.mustCall(t, 200, "", "POST", "/v1/auth/login", body, &tok)
	return tok.AccessToken
}

func (ce *consoleEnv) adminToken(t *testing.T) string {
	ce.adminMu.Lock()
	defer ce.adminMu.Unlock()
	return ce.adminTokenLocked(t)
}

func (ce *consoleEnv) adminTokenLocked(t *testing.T) string {
	if ce.admin == "" || ce.call(t, ce.admin, "GET", "/v1/users", nil, nil) != 200 {
		ce.admin = ce.login(t, "admin", consoleAdminPW, "")
	}
	return ce.admin
}

// policyAdmin returns an access token of an admin who signed in with a
// second factor (policy writes need step-up), made on first use. Access
// tokens live 5 minutes, so a later call may sign in again, with one of
// the recovery codes (each works once, and counts as a second factor).
func (ce *consoleEnv) policyAdmin(t *testing.T) string {
	t.Helper()
	const user, pw = "padmin", "passphrase for padmin"
	ce.adminMu.Lock()
	defer ce.adminMu.Unlock()
	if ce.padmin != "" && ce.call(t, ce.padmin, "GET", "/v1/policies", nil, nil) == 200 {
		return ce.padmin
	}
	if ce.padminRecovery == nil {
		ce.mustCall(t, 201, ce.adminTokenLocked(t), "POST", "/v1/users", map[string]string{"username": user, "password": pw, "role": "admin"}, nil)
		tok := ce.login(t, user, pw, "")
		var en struct {
			Secret string `json:"secret"`
		}
		ce.mustCall(t, 200, tok, "POST", "/v1/auth/mfa/totp/enroll", nil, &en)
		var conf struct {
			RecoveryCodes []string `json:"recovery_codes"`
		}
		ce.mustCall(t, 200, tok, "POST", "/v1/auth/mfa/totp/confirm", map[string]string{"code": codesFor(t, en.Secret).cur}, &conf)
		ce.padminRecovery = conf.RecoveryCodes
	}
	if len(ce.padminRecovery) == 0 {
		t.Fatal("padmin has used every recovery code")
	}
	ce.padmin = ce.login(t, user, pw, ce.padminRecovery[0])
	ce.padminRecovery = ce.padminRecovery[1:]
	return ce.padmin
}

// newUser creates a user through the API and returns its password.
func (ce *consoleEnv) newUser(t *testing.T, name string) string {
	t.Helper()
	pw := "passphrase for " + name
	ce.mustCall(t, 201, ce.adminToken(t), "POST", "/v1/users", map[string]string{"username": name, "password": pw}, nil)
	return pw
}

// enrollTOTP turns TOTP on for a user through the API, confirming with the
// code of the previous step, and returns the secret.
func (ce *consoleEnv) enrollTOTP(t *testing.T, user, pw string) (string, totpCodes) {
	t.Helper()
	tok := ce.login(t, user, pw, "")
	var en struct {
		Secret string `json:"secret"`
	}
	ce.mustCall(t, 200, tok, "POST", "/v1/auth/mfa/totp/enroll", nil, &en)
	codes := codesFor(t, en.Secret)
	ce.mustCall(t, 200, tok, "POST", "/v1/auth/mfa/totp/confirm", map[string]string{"code": codes.prev}, nil)
	return en.Secret, codes
}

// totpCodes are the codes of three consecutive 30 s steps. The server
// accepts ±1 step and each step once, in order: prev, then cur, then next.
type totpCodes struct{ prev, cur, next string }

// codesFor waits, when the current step is about to end, for the next one,
// so that all three codes stay acceptable for at least 12 s.
func codesFor(t *testing.T, secret string) totpCodes {
	t.Helper()
	if left := 30 - time.Now().Unix()%30; left < 12 {
		time.Sleep(time.Duration(left)*time.Second + 100*time.Millisecond)
	}
	now := time.Now()
	gen := func(at time.Time) string {
		var c string
		var err error
		// HMAC-SHA-1, as authenticator apps compute it: outside the FIPS
		// boundary (docs/fips.md), so allowed under GODEBUG=fips140=only.
		fips.Outside(func() {
			c, err = totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return totpCodes{prev: gen(now.Add(-30 * time.Second)), cur: gen(now), next: gen(now.Add(30 * time.Second))}
}

// browser is one isolated browser context (its own cookies and storage).
type browser struct {
	t   *testing.T
	ctx context.Context
	// tab is the context without the overall deadline (for describe).
	tab context.Context
	mu  sync.Mutex
	// problems are script exceptions and CSP / Trusted Types violations.
	problems []string
	// headers of each response, by URL
	headers map[string]network.Headers
	seq     int
	// quiet: violations are expected here (a probe of the CSP).
	quiet bool
	// forged answers requests paused by the Fetch domain (forge).
	forged []byte
}

func (ce *consoleEnv) browser(t *testing.T) *browser {
	t.Helper()
	b := &browser{t: t, headers: map[string]network.Headers{}}
	listen := func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			b.problems = append(b.problems, "exception: "+exceptionText(e.ExceptionDetails))
		case *cdplog.EventEntryAdded:
			txt := e.Entry.Text
			if e.Entry.Source == cdplog.EntrySourceSecurity || strings.Contains(txt, "Content Security Policy") || strings.Contains(txt, "Trusted Type") {
				b.problems = append(b.problems, "security: "+txt)
			}
		case *network.EventResponseReceived:
			b.headers[e.Response.URL] = e.Response.Headers
		case *fetch.EventRequestPaused:
			// Answer from another goroutine: a listener must not block.
			tab, body := b.tab, b.forged
			go func() {
				_, _ = chromedp.Run(tab, func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
					_, err := cdp.Call(ctx, tg, fetch.FulfillRequest, fetch.FulfillRequestParams{RequestID: e.RequestID, ResponseCode: 200,
						ResponseHeaders: []*fetch.HeaderEntry{{Name: "Content-Type", Value: "application/json"}}, Body: body})
					return chromedp.Void{}, err
				})
			}()
		}
	}
	ctx, cancel := chromedp.NewContext(ce.browse, chromedp.WithNewBrowserContext(), chromedp.WithListener(listen))
	if _, err := chromedp.Run(ctx, func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return chromedp.Void{}, err
		}
		_, err := cdp.Call(ctx, tg, cdplog.Enable, cdp.Empty{})
		return chromedp.Void{}, err
	}); err != nil {
		cancel()
		t.Fatalf("open a browser context: %v", err)
	}
	tctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	b.mu.Lock()
	b.ctx, b.tab = tctx, ctx
	b.mu.Unlock()
	t.Cleanup(func() {
		b.mu.Lock()
		probs := b.problems
		if b.quiet {
			probs = nil
		}
		b.mu.Unlock()
		for _, p := range probs {
			t.Errorf("browser: %s", p)
		}
		cancelT()
		cancel()
	})
	return b
}

func exceptionText(d *runtime.ExceptionDetails) string {
	if d == nil {
		return "?"
	}
	s := d.Text
	if d.Exception != nil && d.Exception.Description != "" {
		s += ": " + d.Exception.Description
	}
	return s
}

func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v\n%s", err, b.describe())
	}
}

// evalJS evaluates a JavaScript expression in the page.
func evalJS[T any](b *browser, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v\n%s", js, err, b.describe())
	}
	return v
}

// describe is the visible page text, for failure messages.
func (b *browser) describe() string {
	ctx, cancel := context.WithTimeout(b.tab, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.title + "\n" + (document.body ? document.body.innerText : "")`))
	return s
}

// poll runs fn until it reports done (the browser renders asynchronously);
// the context's deadline bounds the wait.
func (b *browser) poll(what string, fn func(ctx context.Context, tg *chromedp.Target) (bool, error)) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		done, err := chromedp.Run(b.ctx, fn)
		if err != nil && b.ctx.Err() == nil && strings.Contains(err.Error(), "context") {
			err = nil // an execution context went away with a navigation: try again
		}
		if err != nil {
			b.t.Fatalf("%s: %v\n%s", what, err, b.describe())
		}
		if done {
			return
		}
		if time.Now().After(deadline) || b.ctx.Err() != nil {
			b.t.Fatalf("%s: not after 30 s\n%s", what, b.describe())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// axNodes lists the elements with this ARIA role and accessible name, as
// Chromium's accessibility tree computes them.
func axNodes(ctx context.Context, tg *chromedp.Target, role, name string) ([]*accessibility.Node, error) {
	doc, err := cdp.Call(ctx, tg, runtime.Evaluate, runtime.EvaluateParams{Expression: "document"})
	if err != nil || doc.Result == nil {
		return nil, err
	}
	res, err := cdp.Call(ctx, tg, accessibility.QueryAXTree, accessibility.QueryAXTreeParams{ObjectID: doc.Result.ObjectID, AccessibleName: name, Role: role})
	if err != nil {
		return nil, nil // the page is navigating
	}
	var out []*accessibility.Node
	for _, n := range res.Nodes {
		if !n.Ignored && n.BackendDOMNodeID != 0 {
			out = append(out, n)
		}
	}
	return out, nil
}

// find waits for a visible control with this role and accessible name and
// returns a CSS selector for it.
func (b *browser) find(role, name string) string {
	b.t.Helper()
	var sel string
	b.poll(fmt.Sprintf("find %s %q", role, name), func(ctx context.Context, tg *chromedp.Target) (bool, error) {
		nodes, err := axNodes(ctx, tg, role, name)
		if err != nil {
			return false, err
		}
		for _, n := range nodes {
			obj, err := cdp.Call(ctx, tg, dom.ResolveNode, dom.ResolveNodeParams{BackendNodeID: n.BackendDOMNodeID})
			if err != nil || obj.Object == nil {
				continue
			}
			b.seq++
			tag := fmt.Sprintf("ax%d", b.seq)
			ret := true
			res, err := cdp.Call(ctx, tg, runtime.CallFunctionOn, runtime.CallFunctionOnParams{
				FunctionDeclaration: `function() { this.setAttribute('data-test-ax', '` + tag + `'); return this.getClientRects().length > 0; }`,
				ObjectID:            obj.Object.ObjectID, ReturnByValue: &ret,
			})
			if err != nil || res.Result == nil || string(res.Result.Value) != "true" {
				continue
			}
			sel = `[data-test-ax="` + tag + `"]`
			return true, nil
		}
		return false, nil
	})
	return sel
}

// has reports whether such a control is on the page now.
func (b *browser) has(role, name string) bool {
	b.t.Helper()
	nodes, err := chromedp.Run(b.ctx, func(ctx context.Context, tg *chromedp.Target) ([]*accessibility.Node, error) {
		return axNodes(ctx, tg, role, name)
	})
	if err != nil {
		b.t.Fatal(err)
	}
	return len(nodes) > 0
}

// fill types into the text box with this label, replacing its content.
func (b *browser) fill(name, text string) {
	b.t.Helper()
	sel := b.find("textbox", name)
	evalJS[bool](b, fmt.Sprintf(`(e => { e.value = ''; return e.dispatchEvent(new Event('input', {bubbles: true})); })(document.querySelector(%q))`, sel))
	b.do(chromedp.SendKeys(chromedp.CSS(sel), text))
}

// choose picks an option of the select with this label.
func (b *browser) choose(name, value string) {
	b.t.Helper()
	sel := b.find("combobox", name)
	b.do(chromedp.SetValue(chromedp.CSS(sel), value))
	evalJS[bool](b, fmt.Sprintf(`document.querySelector(%q).dispatchEvent(new Event('change', {bubbles: true}))`, sel))
}

func (b *browser) click(role, name string) {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS(b.find(role, name))))
}

func (b *browser) clickCSS(css string) {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS(css), chromedp.NodeVisible))
}

func (b *browser) waitCSS(css string) {
	b.t.Helper()
	b.do(chromedp.WaitVisible(chromedp.CSS(css)))
}

// text waits for css and returns its text.
func (b *browser) text(css string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(css), chromedp.NodeVisible))
	if err != nil {
		b.t.Fatalf("text of %s: %v\n%s", css, err, b.describe())
	}
	return strings.TrimSpace(s)
}

// waitText waits until an element matching css contains want.
func (b *browser) waitText(css, want string) {
	b.t.Helper()
	b.poll(fmt.Sprintf("text %q in %s", want, css), func(ctx context.Context, tg *chromedp.Target) (bool, error) {
		s, err := chromedp.Evaluate[string](fmt.Sprintf(`Array.from(document.querySelectorAll(%q)).map(e => e.innerText).join("\n")`, css))(ctx, tg)
		return strings.Contains(s, want), err
	})
}

func (b *browser) waitTitle(prefix string) {
	b.t.Helper()
	b.poll("title "+prefix, func(ctx context.Context, tg *chromedp.Target) (bool, error) {
		s, err := chromedp.Title()(ctx, tg)
		return strings.HasPrefix(s, prefix), err
	})
}

func (b *browser) open(url string) { b.t.Helper(); b.do(chromedp.Navigate(url)) }
func (b *browser) reload()         { b.t.Helper(); b.do(chromedp.Reload()) }

// signIn opens the console and signs in; code is the one-time code when
// the user has TOTP.
func (b *browser) signIn(ce *consoleEnv, user, pw, code string) {
	b.t.Helper()
	b.open(ce.base + "/ui/")
	b.waitTitle("Sign in — Moon Vault")
	b.fill("Username", user)
	b.fill("Password", pw)
	b.click("button", "Sign in")
	if code != "" {
		b.fill("One-time code", code)
		b.click("button", "Sign in")
	}
	b.find("button", "Sign out")
}

// shot saves a full-page screenshot as NAME.png in $MOONVAULT_CONSOLE_SHOTS,
// when set: a way to look at the pages the tests walk through.
func (b *browser) shot(name string) {
	b.t.Helper()
	dir := os.Getenv("MOONVAULT_CONSOLE_SHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o600); err != nil {
		b.t.Fatal(err)
	}
}

// forge makes the browser receive body instead of the server's answer for
// every request whose URL matches pattern (Fetch domain wildcards): a
// stand-in for a tampered answer.
func (b *browser) forge(pattern string, body []byte) {
	b.t.Helper()
	b.mu.Lock()
	b.forged = body
	b.mu.Unlock()
	b.do(func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: pattern}}})
		return chromedp.Void{}, err
	})
}

// goTo follows a link of the main navigation.
func (b *browser) goTo(link string) {
	b.t.Helper()
	b.click("link", link)
	b.waitTitle(link)
}
