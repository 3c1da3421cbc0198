package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/mr-tron/base58"
)

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

func flowEthereumSign(t *testing.T, ce *consoleEnv) {
	b := ce.browser(t)
	b.signIn(ce, "admin", consoleAdminPW, "")
	b.fill("Account name", "treasury")
	b.choose("Chain", "ethereum")
	b.click("button", "Create account")
	b.waitTitle("Account treasury — Moon Vault")
	addr := b.text(`[data-field="address"] dd`)
	b.shot("account")
	if !common.IsHexAddress(addr) || common.HexToAddress(addr).Hex() != addr {
		t.Fatalf("address %q is not EIP-55 hex", addr)
	}
	qrLabel := evalJS[string](b, `document.querySelector('svg.qr[role=img]').getAttribute('aria-label')`)
	if !strings.Contains(qrLabel, addr) {
		t.Errorf("QR code label %q", qrLabel)
	}

	const msg = "hello from the console"
	b.fill("Message", msg)
	b.click("button", "Sign")
	sigHex := b.text(`.result [data-field="signature"] dd`) // the sign result, not the provenance card's signature
	b.shot("account-signed")
	sig, err := hexutil.Decode(sigHex)
	if err != nil || len(sig) != 65 {
		t.Fatalf("signature %q", sigHex)
	}
	sig[64] -= 27 // EIP-191 personal_sign v is 27/28
	pub, err := crypto.SigToPub(accounts.TextHash([]byte(msg)), sig)
	if err != nil {
		t.Fatal(err)
	}
	if got := crypto.PubkeyToAddress(*pub); got != common.HexToAddress(addr) {
		t.Fatalf("signature recovers %s, want %s", got, addr)
	}
	// The console's actions are the API's calls, audited as such.
	for _, op := range []string{"auth.console.login", "accounts.create", "accounts.sign_message"} {
		if !ce.audited(t, op, "admin", map[bool]string{true: "admin/treasury"}[op != "auth.console.login"]) {
			t.Errorf("no audit line for %s by admin", op)
		}
	}

	// The list shows it under its chain; the filter keeps it.
	b.click("link", "← All accounts")
	b.waitTitle("Accounts")
	b.choose("Show chain", "ethereum")
	b.waitText("table", "treasury")
	b.waitText("table", addr)
	b.waitText("table", "Ethereum")
	b.shot("accounts")
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

func flowSystemPage(t *testing.T, ce *consoleEnv) {
	b := ce.browser(t)
	b.signIn(ce, "admin", consoleAdminPW, "")
	b.goTo("System")
	b.waitText("main", "pkcs11")               // seal type and entropy source: SoftHSM2 in dev mode
	b.waitText("main", "Head sequence number") // audit head
	b.waitText("main", "Requests")             // metrics summary
	b.waitText("main", "HSM bytes drawn")
	b.shot("system")
}

func flowPhoneWidth(t *testing.T, ce *consoleEnv) {
	b := ce.browser(t)
	b.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	b.signIn(ce, "admin", consoleAdminPW, "")
	b.find("button", "Create account")
	overflow := evalJS[bool](b, `document.documentElement.scrollWidth > window.innerWidth + 1`)
	if overflow {
		t.Error("the accounts page scrolls sideways at 390 px")
	}
	b.shot("phone-accounts")
	b.goTo("Sessions")
	b.find("button", "Revoke")
	b.shot("phone-sessions")
	overflow = evalJS[bool](b, `document.documentElement.scrollWidth > window.innerWidth + 1`)
	if overflow {
		t.Error("the sessions page scrolls sideways at 390 px (tables scroll inside their box)")
	}
}

// flowBitcoinHD: an HD wallet made in the console, Bitcoin accounts derived
// from it (P2WPKH mainnet at the next index, P2TR testnet at a chosen one),
// shown with their paths, xpubs and verified provenance; the wallet then
// counts them, and deleting it needs step-up.
func flowBitcoinHD(t *testing.T, ce *consoleEnv) {
	b := ce.browser(t)
	b.signIn(ce, "admin", consoleAdminPW, "")
	b.goTo("HD wallets")
	b.fill("Wallet name", "cold")
	b.click("button", "Create wallet")
	b.waitTitle("Wallet cold")
	b.waitText(`[data-field="origin"]`, "generated")
	b.waitText(`[data-field="accounts"]`, "0")
	fingerprint := b.text(`[data-field="fingerprint"] dd`)
	b.shot("wallet")
	var w struct{ Fingerprint string }
	ce.mustCall(t, 200, ce.adminToken(t), "GET", "/v1/wallets/cold", nil, &w)
	if len(fingerprint) != 8 || fingerprint != w.Fingerprint {
		t.Fatalf("fingerprint %q, the API says %q", fingerprint, w.Fingerprint)
	}

	b.goTo("Accounts")
	b.fill("Account name", "btc-savings")
	b.choose("Chain", "bitcoin")
	b.clickCSS(`input[name="key-source"][value="wallet"]`)
	b.find("combobox", "HD wallet")
	b.click("button", "Create account")
	b.waitTitle("Account btc-savings")
	addr := b.text(`[data-field="address"] dd`)
	if !strings.HasPrefix(addr, "bc1q") {
		t.Fatalf("address %q, want a P2WPKH mainnet address", addr)
	}
	b.waitText(`[data-field="derivation_path"]`, "m/84'/0'/0'/0/0")
	b.waitText(`[data-field="xpub"]`, "xpub")
	b.waitText(`[data-field="master_fingerprint"]`, fingerprint)
	// The provenance record, checked in the browser against the published key.
	b.waitCSS(`[data-provenance="verified"]`)
	b.waitText("#prov-h ~ .facts", "derived")
	b.waitText("#prov-h ~ .facts", "cold (master key fingerprint "+fingerprint)
	b.shot("account-bitcoin")
	var acc map[string]any
	ce.mustCall(t, 200, ce.adminToken(t), "GET", "/v1/accounts/btc-savings", nil, &acc)
	if acc["address"] != addr || acc["chain"] != "bitcoin" || acc["wallet"] != "cold" || acc["derivation_path"] != "m/84'/0'/0'/0/0" {
		raw, _ := json.Marshal(acc)
		t.Fatalf("API shows %s", raw)
	}
	if b.has("button", "Sign") {
		t.Error("a Bitcoin account offers to sign a message (the API refuses: PSBTs only)")
	}

	// A record altered on its way (the origin rewritten, the signature
	// kept) is shown as not verifying.
	var prov map[string]any
	ce.mustCall(t, 200, ce.adminToken(t), "GET", "/v1/accounts/btc-savings/provenance", nil, &prov)
	payload, err := base64.StdEncoding.DecodeString(prov["payload"].(string))
	if err != nil || !bytes.Contains(payload, []byte(`"origin":"derived"`)) {
		t.Fatalf("provenance payload %s", payload)
	}
	prov["payload"] = base64.StdEncoding.EncodeToString(bytes.Replace(payload, []byte(`"origin":"derived"`), []byte(`"origin":"imported"`), 1))
	forged, _ := json.Marshal(prov)
	f := ce.browser(t)
	f.signIn(ce, "admin", consoleAdminPW, "")
	f.forge("*/v1/accounts/btc-savings/provenance", forged)
	f.open(ce.base + "/ui/#/accounts/btc-savings")
	f.waitCSS(`[data-provenance="invalid"]`)
	f.waitText(`[data-provenance]`, "Does NOT verify: the signature does not verify")
	if evalJS[bool](f, `document.querySelector('#prov-h ~ .facts') !== null`) {
		t.Error("the fields of a record that does not verify are shown")
	}
	f.shot("provenance-forged")

	// Taproot on testnet, at a chosen index: the form's network,
	// address_type and index reach the API.
	b.click("link", "← All accounts")
	b.waitTitle("Accounts")
	b.fill("Account name", "btc-tr")
	b.choose("Chain", "bitcoin")
	b.choose("Network", "testnet")
	b.choose("Address type", "p2tr")
	b.clickCSS(`input[name="key-source"][value="wallet"]`)
	b.fill("Index", "5")
	b.click("button", "Create account")
	b.waitTitle("Account btc-tr")
	if tr := b.text(`[data-field="address"] dd`); !strings.HasPrefix(tr, "tb1p") {
		t.Fatalf("address %q, want a P2TR testnet address", tr)
	}
	b.waitText(`[data-field="derivation_path"]`, "m/86'/1'/0'/0/5")
	b.waitText(`[data-field="xpub"]`, "tpub")
	b.waitCSS(`[data-provenance="verified"]`)

	// The wallet counts its accounts; deleting it destroys the seed, so
	// the vault asks for a second factor, and the console shows its answer.
	b.click("link", "HD wallet cold")
	b.waitTitle("Wallet cold")
	b.waitText(`[data-field="accounts"]`, "2")
	b.click("button", "Delete wallet")
	b.waitText("[role=alert]", "TOTP")
	ce.mustCall(t, 200, ce.adminToken(t), "GET", "/v1/wallets/cold", nil, nil)
}

// flowSolana: a user with TOTP derives a Solana account from a new wallet,
// signs a message (checked with Ed25519 here), sees a verified provenance
// record and a forged one refused; deleting a wallet with a fresh code works,
// and one with accounts is refused with the API's message.
func flowSolana(t *testing.T, ce *consoleEnv) {
	pw := ce.newUser(t, "sam")
	secret, _ := ce.enrollTOTP(t, "sam", pw)
	codes := codesFor(t, secret)
	b := ce.browser(t)
	b.signIn(ce, "sam", pw, codes.cur)
	b.goTo("HD wallets")
	b.fill("Wallet name", "hot")
	b.click("button", "Create wallet")
	b.waitTitle("Wallet hot")
	b.goTo("Accounts")
	b.fill("Account name", "sol")
	b.choose("Chain", "solana")
	b.clickCSS(`input[name="key-source"][value="wallet"]`)
	b.click("button", "Create account")
	b.waitTitle("Account sol")
	b.waitText(`[data-field="derivation_path"]`, "m/44'/501'/0'/0'")
	addr := b.text(`[data-field="address"] dd`)
	pubHex := b.text(`[data-field="public_key"] dd`)
	pub, err := hexutil.Decode(pubHex)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		t.Fatalf("public key %q", pubHex)
	}
	if raw, err := base58.Decode(addr); err != nil || !bytes.Equal(raw, pub) {
		t.Fatalf("address %q is not the base58 of the public key %s", addr, pubHex)
	}
	b.waitCSS(`[data-provenance="verified"]`)

	const msg = "hello from the console, on Solana"
	b.fill("Message", msg)
	b.click("button", "Sign")
	sigB58 := b.text(`.result [data-field="signature"] dd`)
	b.shot("account-solana")
	sig, err := base58.Decode(sigB58)
	if err != nil || !ed25519.Verify(pub, []byte(msg), sig) {
		t.Fatalf("signature %q does not verify for %s", sigB58, addr)
	}

	// Deleting: refused while the wallet has accounts; a spare one goes,
	// with a fresh code (the step after the one signed in with).
	b.goTo("HD wallets")
	b.fill("Wallet name", "spare")
	b.click("button", "Create wallet")
	b.waitTitle("Wallet spare")
	b.fill("One-time code", codesFor(t, secret).next)
	b.click("button", "Delete wallet")
	b.waitText(".notice", "Wallet spare deleted")
	b.reload()
	b.waitText("[role=alert]", "wallet_not_found")
	b.open(ce.base + "/ui/#/wallets/hot")
	b.waitTitle("Wallet hot")
	b.click("button", "Delete wallet")
	b.waitText("[role=alert]", "wallet_in_use")
}

// flowApprove: a policy needs one approval for messages on an account; the
// request waits, an approver approves in the console with a fresh code, and
// the approval holds the signature.
func flowApprove(t *testing.T, ce *consoleEnv) {
	padmin := ce.policyAdmin(t)
	// alice asks; ann approves.
	alicePW := ce.newUser(t, "alice")
	annPW := ce.newUser(t, "ann")
	annSecret, _ := ce.enrollTOTP(t, "ann", annPW)
	alice := ce.login(t, "alice", alicePW, "")
	var acc struct{ Address string }
	ce.mustCall(t, 201, alice, "POST", "/v1/accounts", map[string]string{"name": "payroll"}, &acc)
	ce.mustCall(t, 201, padmin, "POST", "/v1/policies", map[string]any{
		"name": "messages-need-ann", "effect": "require_approval", "condition": `intent.kind == "message"`,
		"accounts": []string{"alice/payroll"}, "approvals": map[string]any{"threshold": 1, "approvers": []string{"ann"}},
	}, nil)
	const msg = "pay the team"
	var pending struct {
		Approval struct{ ID, Status string } `json:"approval"`
	}
	ce.mustCall(t, 202, alice, "POST", "/v1/accounts/payroll/sign-message", map[string]string{"data": msg}, &pending)
	if pending.Approval.ID == "" || pending.Approval.Status != "pending" {
		t.Fatalf("approval %+v", pending)
	}

	// The requester sees her request waiting, and no way to approve it.
	a := ce.browser(t)
	a.signIn(ce, "alice", alicePW, "")
	a.open(ce.base + "/ui/#/approvals/" + pending.Approval.ID)
	a.waitText("main", "You made this request")
	if a.has("button", "Approve") {
		t.Error("the requester is offered to approve her own request")
	}

	codes := codesFor(t, annSecret)
	b := ce.browser(t)
	b.signIn(ce, "ann", annPW, codes.cur)
	b.goTo("Approvals")
	b.waitText("main", "alice/payroll") // the decoded intent: account and kind
	b.waitText("main", "message")
	b.waitText("main", "1 of ann (messages-need-ann) needed, 0 given")
	b.shot("approvals")
	b.click("link", "sign-message on alice/payroll")
	b.waitTitle("Approval " + pending.Approval.ID)
	b.waitText("main", "messages-need-ann")
	b.fill("One-time code", codes.next)
	b.find("button", "Reject") // both decisions are offered
	b.click("button", "Approve")
	b.waitText(".notice", "You approved this request: it is now signed.")
	b.waitText(`[data-field="status"]`, "signed")
	b.waitText("main", "Approved by ann")
	sigShown := b.text(`.result [data-field="signature"] dd`)
	b.shot("approval-signed")

	var done struct {
		Status string
		Result struct{ Signature string }
	}
	ce.mustCall(t, 200, alice, "GET", "/v1/approvals/"+pending.Approval.ID, nil, &done)
	sig, err := hexutil.Decode(done.Result.Signature)
	if done.Status != "signed" || err != nil || len(sig) != 65 || sigShown != done.Result.Signature {
		t.Fatalf("approval after approve: %+v (the console shows %s)", done, sigShown)
	}
	sig[64] -= 27
	pub, err := crypto.SigToPub(accounts.TextHash([]byte(msg)), sig)
	if err != nil || crypto.PubkeyToAddress(*pub) != common.HexToAddress(acc.Address) {
		t.Fatalf("the approved signature does not recover %s", acc.Address)
	}
	if !ce.audited(t, "approvals.approve", "ann", "") {
		t.Error("no audit line for approvals.approve by ann")
	}
}

// flowPolicyDryRun: an admin reads the policies and their history, and
// evaluates a transaction: the decision, the matched policy with its
// reason, and the decoded intent. A user, who may not read policies,
// evaluates on her own account.
func flowPolicyDryRun(t *testing.T, ce *consoleEnv) {
	evePW := ce.newUser(t, "eve")
	eve := ce.login(t, "eve", evePW, "")
	ce.mustCall(t, 201, eve, "POST", "/v1/accounts", map[string]string{"name": "ops"}, nil)
	var pol struct{ ID string }
	ce.mustCall(t, 201, ce.policyAdmin(t), "POST", "/v1/policies", map[string]any{
		"name": "ops: 1 ETH at most", "effect": "deny", "condition": `intent.chain == "ethereum" && intent.value >= ether(1)`,
		"accounts": []string{"eve/ops"},
	}, &pol)

	b := ce.browser(t)
	b.signIn(ce, "admin", consoleAdminPW, "")
	b.goTo("Policies")
	b.click("link", "ops: 1 ETH at most")
	b.waitTitle("Policy ops: 1 ETH at most")
	b.waitText(`[data-field="condition"]`, "intent.value >= ether(1)")
	b.waitText(`[data-field="accounts"]`, "eve/ops")
	b.waitText("main", "History")
	b.waitText("main", "padmin")
	b.click("link", "← All policies")
	b.waitTitle("Policies")
	// The example body sends exactly 1 ETH to 0x3535…: denied.
	b.fill("Account", "eve/ops")
	b.choose("Operation", "sign-transaction")
	b.click("button", "Evaluate")
	b.waitText("#decision-h", "deny")
	b.waitText(`[data-matched="`+pol.ID+`"]`, "ops: 1 ETH at most")
	reason := b.text(`[data-matched="` + pol.ID + `"] td[data-label="Why"]`)
	b.waitText(`.result [data-field="value"]`, "1 ETH (1000000000000000000 wei)")
	b.waitText(`.result [data-field="to"]`, "0x3535353535353535353535353535353535353535")
	b.waitText(`.result [data-field="account"]`, "eve/ops")
	b.shot("policy-dry-run")
	var ev struct {
		Decision string
		Matched  []struct{ Policy, Reason string }
	}
	ce.mustCall(t, 200, eve, "POST", "/v1/policies/evaluate", map[string]any{"account": "ops", "operation": "sign-transaction",
		"request": json.RawMessage(`{"transaction": {"chainId": "0x1", "nonce": "0x0", "to": "0x3535353535353535353535353535353535353535", "value": "0xde0b6b3a7640000", "gas": "0x5208", "maxFeePerGas": "0x3b9aca00", "maxPriorityFeePerGas": "0x1"}}`)}, &ev)
	if ev.Decision != "deny" || len(ev.Matched) != 1 || ev.Matched[0].Reason != reason {
		t.Fatalf("the API decides %+v; the console showed the reason %q", ev, reason)
	}
	// A message is not a transaction of value: allowed, nothing matched.
	b.choose("Operation", "sign-message")
	b.click("button", "Evaluate")
	b.waitText("#decision-h", "allow")
	b.waitText(".result", "No policy matched.")

	u := ce.browser(t)
	u.signIn(ce, "eve", evePW, "")
	u.goTo("Policies")
	u.waitText("main", "Only admins see the policies")
	u.fill("Account", "ops")
	u.click("button", "Evaluate")
	u.waitText("#decision-h", "deny")
	u.waitText(`[data-matched="`+pol.ID+`"]`, "ops: 1 ETH at most")
	if u.has("link", "ops: 1 ETH at most") {
		t.Error("a user is offered a link to a policy she may not read")
	}
}

// flowPagination: 23 accounts show as a page of 20 and a page of 3, with the
// server's cursor.
func flowPagination(t *testing.T, ce *consoleEnv) {
	pw := ce.newUser(t, "pat")
	tok := ce.login(t, "pat", pw, "")
	for i := range 23 {
		ce.mustCall(t, 201, tok, "POST", "/v1/accounts", map[string]string{"name": fmt.Sprintf("acct-%02d", i)}, nil)
	}
	b := ce.browser(t)
	b.signIn(ce, "pat", pw, "")
	b.waitText("table", "acct-19")
	if n := evalJS[int](b, `document.querySelectorAll('tbody tr').length`); n != 20 {
		t.Fatalf("first page: %d rows", n)
	}
	b.click("button", "Next")
	b.waitText("table", "acct-22")
	b.waitText(".pager", "Page 2")
	if n := evalJS[int](b, `document.querySelectorAll('tbody tr').length`); n != 3 {
		t.Fatalf("second page: %d rows", n)
	}
	b.click("button", "Previous")
	b.waitText("table", "acct-00")
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
