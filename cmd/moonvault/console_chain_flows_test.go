package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/mr-tron/base58"
)

// Console flows of signing on each chain.

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
