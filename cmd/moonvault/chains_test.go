package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/base58"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	sol "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/programs/system"
)

// TestCLIChains runs the HD wallet and chain flow as a user would, with
// the real binary against a dev server: a wallet made in the vault,
// Bitcoin (regtest) and Solana accounts derived from it, a PSBT file
// signed and finalized (checked with btcd's script engine), a Solana
// transfer and message signed (checked with ed25519), provenance verified
// against the published and a pinned key, and the list filter.
func TestCLIChains(t *testing.T) {
	sp, base := devServer(t, "correct horse battery staple")
	addr := sp.addr
	defer sp.stop(syscall.SIGTERM)
	env := append(base, "MOONVAULT_CONFIG_DIR="+t.TempDir())
	dir := t.TempDir()
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		return run(t, env, args...)
	}
	mustJSON := func(out any, args ...string) {
		t.Helper()
		stdout, stderr, code := cli(append(args, "-format", "json")...)
		if code != 0 {
			t.Fatalf("moonvault %s: exit %d: %s %s", strings.Join(args, " "), code, stdout, stderr)
		}
		if err := json.Unmarshal([]byte(stdout), out); err != nil {
			t.Fatalf("moonvault %s: %v: %s", strings.Join(args, " "), err, stdout)
		}
	}
	if out, errOut, code := run(t, append(env, "MOONVAULT_PASSWORD=correct horse battery staple"), "login", "-username", "admin"); code != 0 {
		t.Fatalf("login: %s %s", out, errOut)
	}

	var w struct{ Name, Fingerprint, Origin string }
	mustJSON(&w, "wallet", "create", "main")
	if w.Name != "main" || len(w.Fingerprint) != 8 || w.Origin != "generated" {
		t.Fatalf("wallet create: %+v", w)
	}
	type account struct {
		Name, Chain, Network, Address string
		DerivationPath                string `json:"derivation_path"`
		XPub                          string `json:"xpub"`
	}
	var btc, sola account
	mustJSON(&btc, "account", "create", "-chain", "bitcoin", "-network", "regtest", "-wallet", "main", "-index", "0", "btc0")
	mustJSON(&sola, "account", "create", "-chain", "solana", "-wallet", "main", "sol0")
	if !strings.HasPrefix(btc.Address, "bcrt1q") || btc.DerivationPath != "m/84'/1'/0'/0/0" || !strings.HasPrefix(btc.XPub, "tpub") ||
		sola.DerivationPath != "m/44'/501'/0'/0'" {
		t.Fatalf("accounts: %+v %+v", btc, sola)
	}
	if _, errOut, code := cli("account", "create", "-index", "3", "x"); code != 2 || !strings.Contains(errOut, "-wallet") {
		t.Fatalf("-index without -wallet: %d %s", code, errOut)
	}
	out, _, code := cli("account", "list", "-chain", "bitcoin")
	if code != 0 || !strings.Contains(out, "btc0") || strings.Contains(out, "sol0") {
		t.Fatalf("account list -chain bitcoin: %d\n%s", code, out)
	}
	out, _, code = cli("wallet", "list")
	if code != 0 || !strings.Contains(out, "main") || !strings.Contains(out, w.Fingerprint) {
		t.Fatalf("wallet list: %d\n%s", code, out)
	}

	// A binary PSBT file, signed and finalized into another file.
	a, err := btcutil.DecodeAddress(btc.Address, &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	script, _ := txscript.PayToAddrScript(a)
	fund := wire.NewMsgTx(2)
	fund.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&chainhash.Hash{3}, 0), nil, nil))
	fund.AddTxOut(wire.NewTxOut(70_000, script))
	spend := wire.NewMsgTx(2)
	fh := fund.TxHash()
	spend.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&fh, 0), nil, nil))
	dest := sha256.Sum256([]byte("dest"))
	spend.AddTxOut(wire.NewTxOut(65_000, append([]byte{txscript.OP_0, 20}, dest[:20]...)))
	p, _ := psbt.NewFromUnsignedTx(spend)
	p.Inputs[0].NonWitnessUtxo = fund
	var raw bytes.Buffer
	if err := p.Serialize(&raw); err != nil {
		t.Fatal(err)
	}
	in, signedFile := filepath.Join(dir, "unsigned.psbt"), filepath.Join(dir, "signed.psbt")
	if err := os.WriteFile(in, raw.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var res struct {
		PSBT         string `json:"psbt"`
		SignedInputs []int  `json:"signed_inputs"`
	}
	mustJSON(&res, "account", "sign-psbt", "-finalize", "-out", signedFile, "btc0", in)
	if len(res.SignedInputs) != 1 || strings.TrimSpace(readFile(t, signedFile)) != res.PSBT {
		t.Fatalf("sign-psbt: %+v", res)
	}
	final, err := psbt.NewFromRawBytes(strings.NewReader(res.PSBT), true)
	if err != nil || !final.IsComplete() {
		t.Fatalf("signed PSBT: %v", err)
	}
	tx, err := psbt.Extract(final)
	if err != nil {
		t.Fatal(err)
	}
	fetcher := txscript.NewCannedPrevOutputFetcher(script, 70_000)
	vm, err := txscript.NewEngine(script, tx, 0, txscript.StandardVerifyFlags, nil, txscript.NewTxSigHashes(tx, fetcher), 70_000, fetcher)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Execute(); err != nil {
		t.Fatalf("the signed input does not verify: %v", err)
	}
	// The chain names itself when asked for what it does not do.
	if _, errOut, code := cli("account", "sign-message", "btc0", "hi"); code != 1 || !strings.Contains(errOut, "Bitcoin") {
		t.Fatalf("sign-message on bitcoin: %d %s", code, errOut)
	}

	// Solana: a transfer in base64 on the command line, and a message.
	me := sol.MustPublicKeyFromBase58(sola.Address)
	stx, err := sol.NewTransaction([]sol.Instruction{system.NewTransferInstruction(42, me, sol.PublicKeyFromBytes(dest[:])).Build()},
		sol.Hash(sha256.Sum256([]byte("recent"))), sol.TransactionPayer(me))
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := stx.ToBase64()
	var st struct{ Signature, Transaction string }
	mustJSON(&st, "account", "sign-transaction", "sol0", enc)
	back, err := sol.TransactionFromBase64(st.Transaction)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := back.Message.MarshalBinary()
	if !ed25519.Verify(me[:], msg, base58.Decode(st.Signature)) {
		t.Fatal("the Solana transaction signature does not verify")
	}
	var sm struct{ Signature string }
	mustJSON(&sm, "account", "sign-message", "sol0", "hello")
	if !ed25519.Verify(me[:], []byte("hello"), base58.Decode(sm.Signature)) {
		t.Fatal("the Solana message signature does not verify")
	}

	// Provenance, verified against the published key, then a pinned one.
	out, errOut, code := cli("account", "provenance", "-verify", "btc0")
	if code != 0 || !strings.Contains(out, "Verified") || !strings.Contains(out, "derived") {
		t.Fatalf("provenance -verify: %d %s %s", code, out, errOut)
	}
	resp, err := sp.client.Get("https://" + addr + "/v1/sys/provenance/public-key")
	if err != nil {
		t.Fatal(err)
	}
	keyJSON, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	pin := filepath.Join(dir, "provenance-key.json")
	if err := os.WriteFile(pin, keyJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := cli("account", "provenance", "-verify", "-pin", pin, "sol0"); code != 0 || !strings.Contains(out, "Verified") {
		t.Fatalf("provenance -pin: %d %s %s", code, out, errOut)
	}
	wrong := filepath.Join(dir, "wrong-key.hex")
	if err := os.WriteFile(wrong, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := cli("account", "provenance", "-verify", "-pin", wrong, "sol0"); code != 1 || !strings.Contains(errOut, "NOT verify") {
		t.Fatalf("provenance with a wrong pin: %d %s", code, errOut)
	}

	// The wallet cannot go while accounts derive from it (and needs step-up).
	if _, errOut, code := cli("wallet", "delete", "main"); code != 1 || !strings.Contains(errOut, "mfa_required") {
		t.Fatalf("wallet delete: %d %s", code, errOut)
	}
	var got struct{ Accounts int }
	mustJSON(&got, "wallet", "get", "main")
	if got.Accounts != 2 {
		t.Fatalf("wallet get: %+v", got)
	}
}
