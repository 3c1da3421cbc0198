package main

// The README's quick start goes on with two CLI blocks: "Your own
// credentials" and "HD wallets and the other chains". TestREADMEQuickStart
// runs them as written after the first block, in the same shell
// environment. Their placeholders are what a person fills in from their
// authenticator app, from what an earlier command printed, or from their
// own files; readmePlaceholders gives each its value when the command that
// needs it runs.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/base58"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/ethereum/go-ethereum/common"
	sol "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/programs/system"
)

// bip39TestMnemonic is the BIP-39 test vector (entropy 0x00...00, 12 words)
// and bip39TestFingerprint its BIP-32 master key fingerprint (no passphrase).
const (
	bip39TestMnemonic    = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
	bip39TestFingerprint = "73c5da0a"
)

// psbtFunding is the value of the coin the README's unsigned.psbt spends.
const psbtFunding = 70_000

// readmePlaceholders fills in the placeholders of the credentials and
// chains blocks.
type readmePlaceholders struct {
	t  *testing.T
	sh *shellEnv

	once  sync.Once
	codes totpCodes // from the secret `mfa enroll` printed
	psbt  []byte    // the locking script unsigned.psbt spends (for the check)
}

func (p *readmePlaceholders) printed(words ...string) string {
	p.t.Helper()
	r, ok := p.sh.output(words...)
	if !ok {
		p.t.Fatalf("the README has not run %q before needing its output", strings.Join(words, " "))
	}
	return r.stdout
}

func (p *readmePlaceholders) totp() totpCodes {
	p.once.Do(func() {
		m := regexp.MustCompile(`(?m)^secret:\s*(\S+)`).FindStringSubmatch(p.printed("mfa", "enroll"))
		if m == nil {
			p.t.Fatalf("mfa enroll printed no secret:\n%s", p.printed("mfa", "enroll"))
		}
		p.codes = codesFor(p.t, m[1])
	})
	return p.codes
}

// lookup: "123456", "654321" and "135790" are successive codes of the app
// (the server takes each 30 s step once, in order); "mvk_..." the key
// `api-key create` printed; the mnemonic's words; "AQAB..." a Solana
// transfer from the account `sol` (base64).
func (p *readmePlaceholders) lookup(v string) (string, bool) {
	switch v {
	case "123456":
		return p.totp().prev, true
	case "654321":
		return p.totp().cur, true
	case "135790":
		return p.totp().next, true
	case "mvk_...":
		m := regexp.MustCompile(`(?m)^key:\s+(mvk_\S+)`).FindStringSubmatch(p.printed("api-key", "create"))
		if m == nil {
			p.t.Fatalf("api-key create printed no key:\n%s", p.printed("api-key", "create"))
		}
		return m[1], true
	case "abandon ... about":
		return bip39TestMnemonic, true
	case "AQAB...":
		return p.solanaTransfer(), true
	}
	return "", false
}

// solanaTransfer is a transfer of 42 lamports from `sol`, base64.
func (p *readmePlaceholders) solanaTransfer() string {
	me := sol.MustPublicKeyFromBase58(p.address("-chain", "solana"))
	dest := sha256.Sum256([]byte("README destination"))
	tx, err := sol.NewTransaction([]sol.Instruction{system.NewTransferInstruction(42, me, sol.PublicKeyFromBytes(dest[:])).Build()},
		sol.Hash(sha256.Sum256([]byte("recent blockhash"))), sol.TransactionPayer(me))
	if err != nil {
		p.t.Fatal(err)
	}
	enc, err := tx.ToBase64()
	if err != nil {
		p.t.Fatal(err)
	}
	return enc
}

// address is the address the first `account create` with these words
// printed.
func (p *readmePlaceholders) address(words ...string) string {
	p.t.Helper()
	out := p.printed(append([]string{"account", "create"}, words...)...)
	m := tableLine("address").FindStringSubmatch(out)
	if m == nil {
		p.t.Fatalf("account create %v printed no address:\n%s", words, out)
	}
	return m[1]
}

// writePSBT writes dir/unsigned.psbt, as a person's wallet software would:
// one input spending a coin paid to `savings` (with the funding transaction,
// as P2WPKH signing needs since the BIP-143 fee attack), one output.
func (p *readmePlaceholders) writePSBT(dir string) {
	p.t.Helper()
	a, err := btcutil.DecodeAddress(p.address("-chain", "bitcoin", "-wallet", "main", "savings"), &chaincfg.MainNetParams)
	if err != nil {
		p.t.Fatal(err)
	}
	script, err := txscript.PayToAddrScript(a)
	if err != nil {
		p.t.Fatal(err)
	}
	fund := wire.NewMsgTx(2)
	fund.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&chainhash.Hash{7}, 0), nil, nil))
	fund.AddTxOut(wire.NewTxOut(psbtFunding, script))
	spend := wire.NewMsgTx(2)
	fh := fund.TxHash()
	spend.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&fh, 0), nil, nil))
	dest := sha256.Sum256([]byte("README destination"))
	spend.AddTxOut(wire.NewTxOut(psbtFunding-5_000, append([]byte{txscript.OP_0, 20}, dest[:20]...)))
	pk, err := psbt.NewFromUnsignedTx(spend)
	if err != nil {
		p.t.Fatal(err)
	}
	pk.Inputs[0].NonWitnessUtxo = fund
	var raw bytes.Buffer
	if err := pk.Serialize(&raw); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "unsigned.psbt"), raw.Bytes(), 0o600); err != nil {
		p.t.Fatal(err)
	}
	p.psbt = script
}

// runREADMECredentials runs the "Your own credentials" block (after the
// quick start: its session is logged out, its account treasury exists)
// and checks what it did: TOTP on, bob created and granted treasury, the
// API key signs as treasury, the admin's password changed, bob's reset.
func runREADMECredentials(t *testing.T, sh *shellEnv, block string, client *http.Client, base, adminPW string, treasury common.Address) {
	t.Helper()
	sh.run("README.md credentials block", block)

	out := sh.mustOutput("mfa", "confirm")
	if n := len(regexp.MustCompile(`(?mi)^[a-z2-7]{4}(-[a-z2-7]{4}){3}$`).FindAllString(out, -1)); n != 10 {
		t.Errorf("mfa confirm printed %d recovery codes, want 10:\n%s", n, out)
	}
	signed := sh.mustOutput("account", "sign-message", "treasury", "from CI")
	m := tableLine("signature").FindStringSubmatch(signed)
	if m == nil {
		t.Fatalf("sign-message with the API key printed no signature:\n%s", signed)
	}
	if got := recoverEIP191(t, []byte("from CI"), m[1]); got != treasury {
		t.Fatalf("the API key's signature recovers %s, want treasury %s", got.Hex(), treasury.Hex())
	}
	if out := sh.mustOutput("session", "list"); !strings.Contains(out, "otp") {
		t.Errorf("session list shows no session signed in with a code:\n%s", out)
	}

	login := func(user, pw string) (int, string) {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"username": user, "password": pw})
		resp, err := client.Post(base+"/v1/auth/login", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		raw, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(raw, &tok)
		return resp.StatusCode, tok.AccessToken
	}
	// The admin's old password is gone; bob's is the one set-password gave
	// him, and the grant lets him use treasury.
	if code, _ := login("admin", adminPW); code != 401 {
		t.Errorf("the admin's old password after `password change`: %d, want 401", code)
	}
	if code, _ := login("bob", "bob passphrase 1"); code != 401 {
		t.Errorf("bob's first password after `user set-password`: %d, want 401", code)
	}
	code, bob := login("bob", "bob passphrase 2")
	if code != 200 {
		t.Fatalf("bob's new password: %d", code)
	}
	req, _ := http.NewRequest("GET", base+"/v1/accounts/"+url.PathEscape("admin:treasury"), nil)
	req.Header.Set("Authorization", "Bearer "+bob)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(raw), treasury.Hex()) {
		t.Fatalf("bob reads admin:treasury: %d %s", resp.StatusCode, raw)
	}
}

// runREADMEChains runs the "HD wallets and the other chains" block and
// checks it: the imported wallet is the BIP-39 test vector's, the accounts
// sit on the README's paths, the PSBT is signed and finalized (btcd's
// script engine runs it), the Solana signatures verify, provenance is
// verified.
func runREADMEChains(t *testing.T, sh *shellEnv, block string, p *readmePlaceholders) {
	t.Helper()
	sh.run("README.md chains block", block)

	if out := sh.mustOutput("wallet", "create", "-import", "ref"); !strings.Contains(out, bip39TestFingerprint) {
		t.Errorf("the imported test mnemonic's fingerprint is not %s:\n%s", bip39TestFingerprint, out)
	}
	for _, c := range []struct {
		words        []string
		prefix, path string
	}{
		{[]string{"-chain", "bitcoin", "-wallet", "main", "savings"}, "bc1q", "m/84'/0'/0'/0/0"},
		{[]string{"-address-type", "p2tr", "tr"}, "tb1p", "m/86'/1'/0'/0/0"},
		{[]string{"-chain", "solana", "sol"}, "", "m/44'/501'/0'/0'"},
	} {
		out := sh.mustOutput(append([]string{"account", "create"}, c.words...)...)
		if !strings.HasPrefix(p.address(c.words...), c.prefix) || !strings.Contains(out, c.path) {
			t.Errorf("account create %v: want %s… on %s:\n%s", c.words, c.prefix, c.path, out)
		}
	}
	if out := sh.mustOutput("account", "list", "-chain", "bitcoin"); !strings.Contains(out, "savings") || !strings.Contains(out, "tr") || strings.Contains(out, "sol") {
		t.Errorf("account list -chain bitcoin:\n%s", out)
	}

	// The signed PSBT file: complete, and its input runs in btcd's engine.
	signed, err := os.ReadFile(filepath.Join(sh.dir, "signed.psbt"))
	if err != nil {
		t.Fatal(err)
	}
	final, err := psbt.NewFromRawBytes(bytes.NewReader(bytes.TrimSpace(signed)), true)
	if err != nil || !final.IsComplete() {
		t.Fatalf("signed.psbt: %v", err)
	}
	tx, err := psbt.Extract(final)
	if err != nil {
		t.Fatal(err)
	}
	fetcher := txscript.NewCannedPrevOutputFetcher(p.psbt, psbtFunding)
	vm, err := txscript.NewEngine(p.psbt, tx, 0, txscript.StandardVerifyFlags, nil, txscript.NewTxSigHashes(tx, fetcher), psbtFunding, fetcher)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Execute(); err != nil {
		t.Fatalf("the signed input does not verify: %v", err)
	}

	// Solana: the transaction's and the message's signatures.
	me := sol.MustPublicKeyFromBase58(p.address("-chain", "solana", "sol"))
	out := sh.mustOutput("account", "sign-transaction", "sol")
	sig, txb := tableLine("signature").FindStringSubmatch(out), tableLine("transaction").FindStringSubmatch(out)
	if sig == nil || txb == nil {
		t.Fatalf("sign-transaction sol printed:\n%s", out)
	}
	back, err := sol.TransactionFromBase64(txb[1])
	if err != nil {
		t.Fatal(err)
	}
	msg, err := back.Message.MarshalBinary()
	if err != nil || !ed25519.Verify(me[:], msg, base58.Decode(sig[1])) {
		t.Fatal("the Solana transaction signature does not verify")
	}
	out = sh.mustOutput("account", "sign-message", "sol", "hello")
	if sig = tableLine("signature").FindStringSubmatch(out); sig == nil || !ed25519.Verify(me[:], []byte("hello"), base58.Decode(sig[1])) {
		t.Fatalf("the Solana message signature does not verify:\n%s", out)
	}
	if out := sh.mustOutput("account", "provenance", "-verify", "savings"); !strings.Contains(out, "Verified") || !strings.Contains(out, "derived") {
		t.Fatalf("provenance -verify savings:\n%s", out)
	}
}

// mustOutput is output, or the test fails.
func (sh *shellEnv) mustOutput(words ...string) string {
	sh.t.Helper()
	r, ok := sh.output(words...)
	if !ok {
		sh.t.Fatalf("the README never ran a command with %q", words)
	}
	return r.stdout
}

// readmeFix extends the quick start's command fixes: before `account
// sign-psbt ... unsigned.psbt` the PSBT file is made, as the reader's
// wallet software would have.
func readmeFix(p *readmePlaceholders, next func([]string, string) ([]string, string)) func([]string, string) ([]string, string) {
	return func(args []string, dir string) ([]string, string) {
		if len(args) > 2 && args[1] == "account" && args[2] == "sign-psbt" && slices.Contains(args, "unsigned.psbt") {
			p.writePSBT(dir)
		}
		return next(args, dir)
	}
}
