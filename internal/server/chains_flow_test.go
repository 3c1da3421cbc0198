package server

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
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
	sol "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/programs/system"

	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/hd"
	"github.com/moonvault/moonvault/internal/hsm/hsmtest"
	"github.com/moonvault/moonvault/internal/provenance"
	"github.com/moonvault/moonvault/internal/secret"
)

const abandonMnemonic = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"

// chainAccount is an account as the API shows it.
type chainAccount struct {
	Name              string `json:"name"`
	Chain             string `json:"chain"`
	Network           string `json:"network"`
	AddressType       string `json:"address_type"`
	KeyType           string `json:"key_type"`
	Address           string `json:"address"`
	PublicKey         string `json:"public_key"`
	Wallet            string `json:"wallet"`
	MasterFingerprint string `json:"master_fingerprint"`
	DerivationPath    string `json:"derivation_path"`
	XPub              string `json:"xpub"`
}

// recorder is a testNode whose answers are all kept, to look for secrets.
type recorder struct {
	tn     *testNode
	mu     sync.Mutex
	bodies [][]byte
}

func (r *recorder) do(tok, method, path string, body any) (int, []byte) {
	r.tn.t.Helper()
	var raw json.RawMessage
	got := r.tn.callTok(tok, method, path, body, &raw)
	r.mu.Lock()
	r.bodies = append(r.bodies, raw)
	r.mu.Unlock()
	return got, raw
}

func (r *recorder) call(tok string, want int, method, path string, body, out any) {
	r.tn.t.Helper()
	got, raw := r.do(tok, method, path, body)
	if got != want {
		r.tn.t.Fatalf("%s %s: status %d, want %d: %s", method, path, got, want, raw)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			r.tn.t.Fatal(err)
		}
	}
}

// fails expects an error answer with status and, when set, a message or
// code containing want.
func (r *recorder) fails(tok string, status int, method, path string, body any, want string) {
	r.tn.t.Helper()
	got, raw := r.do(tok, method, path, body)
	var e apiErr
	_ = json.Unmarshal(raw, &e)
	if got != status || e.Error.Code == "" || (want != "" && !strings.Contains(e.Error.Message+" "+e.Error.Code, want)) {
		r.tn.t.Fatalf("%s %s = %d %s, want %d naming %q", method, path, got, raw, status, want)
	}
}

// TestChainsEndToEnd drives the HD wallet and chain API over real HTTPS
// with SoftHSM2 (seal wrap and entropy augmentation): the standard
// mnemonic reproduces the standard addresses on all three chains; a PSBT
// built here and signed by the vault passes btcd's script engine; a
// Solana transfer signed by the vault verifies with Ed25519 and decodes
// with solana-go; provenance records verify against the published key and
// a tampered one does not; and no seed or mnemonic appears in any answer,
// audit line or log line.
func TestChainsEndToEnd(t *testing.T) {
	hc := hsmtest.NewToken(t)
	auditPath := t.TempDir() + "/audit.log"
	logs := &lockedBuf{}
	tn := startNode(t, t.TempDir(), nodeOpts{logTo: logs, mutate: func(c *config.Server) {
		withHSM(hc)(c)
		c.AuditFile = auditPath
	}})
	rec := &recorder{tn: tn}
	var ir initResp
	tn.mustCall(200, "POST", "/v1/sys/init", map[string]int{"recovery_shares": 1, "recovery_threshold": 1}, &ir)
	waitUnsealed(t, tn)
	root := ir.RootToken
	const pw = "correct horse battery staple"
	rec.call(root, 201, "POST", "/v1/users", map[string]string{"username": "alice", "password": pw}, nil)
	alice := login(t, tn, "alice", pw)
	aliceMFA := stepUp(t, tn, "alice", pw)

	// Import the reference mnemonic: step-up, like a key import.
	rec.fails(alice, 403, "POST", "/v1/wallets", map[string]string{"name": "ref", "mnemonic": abandonMnemonic}, "mfa_required")
	var w struct {
		Name, Fingerprint, Origin string
		Accounts                  *int
	}
	rec.call(aliceMFA, 201, "POST", "/v1/wallets", map[string]string{"name": "ref", "mnemonic": abandonMnemonic}, &w)
	if w.Fingerprint != "73c5da0a" || w.Origin != "imported" {
		t.Fatalf("wallet %+v", w)
	}
	rec.fails(aliceMFA, 400, "POST", "/v1/wallets", map[string]string{"name": "bad", "mnemonic": strings.Replace(abandonMnemonic, "about", "abandon", 1)}, "checksum")
	rec.fails(alice, 409, "POST", "/v1/wallets", map[string]string{"name": "ref"}, "exists")

	// The standard addresses, on the default paths.
	derive := func(name, chain string, extra map[string]any) chainAccount {
		body := map[string]any{"name": name, "chain": chain, "wallet": "ref", "index": 0}
		for k, v := range extra {
			body[k] = v
		}
		var a chainAccount
		rec.call(alice, 201, "POST", "/v1/accounts", body, &a)
		return a
	}
	eth := derive("eth0", "ethereum", nil)
	wpkh := derive("btc0", "bitcoin", nil)
	tr := derive("tr0", "bitcoin", map[string]any{"address_type": "p2tr"})
	sola := derive("sol0", "solana", nil)
	for _, c := range []struct {
		a          chainAccount
		addr, path string
	}{
		{eth, "0x9858EfFD232B4033E47d90003D41EC34EcaEda94", "m/44'/60'/0'/0/0"},
		{wpkh, "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu", "m/84'/0'/0'/0/0"},
		{tr, "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr", "m/86'/0'/0'/0/0"},
		{sola, "HAgk14JpMQLgt6rVgv7cBQFJWFto5Dqxi472uT3DKpqk", "m/44'/501'/0'/0'"},
	} {
		if c.a.Address != c.addr || c.a.DerivationPath != c.path || c.a.MasterFingerprint != "73c5da0a" || c.a.Wallet != "ref" {
			t.Errorf("%s: %+v", c.a.Name, c.a)
		}
	}
	if tr.XPub != "xpub6BgBgsespWvERF3LHQu6CnqdvfEvtMcQjYrcRzx53QJjSxarj2afYWcLteoGVky7D3UKDP9QyrLprQ3VCECoY49yfdDEHGCtMMj92pReUsQ" ||
		!strings.HasPrefix(eth.XPub, "xpub") || sola.XPub != "" || wpkh.Network != "mainnet" || wpkh.AddressType != "p2wpkh" || sola.KeyType != "ed25519" {
		t.Fatalf("account details: %+v %+v %+v", tr, eth, sola)
	}
	// The next unused index, and a bad request.
	var next chainAccount
	rec.call(alice, 201, "POST", "/v1/accounts", map[string]any{"name": "btc1", "chain": "bitcoin", "wallet": "ref"}, &next)
	if next.DerivationPath != "m/84'/0'/0'/0/1" || next.Address != "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g" {
		t.Fatalf("next index: %+v", next)
	}
	rec.fails(alice, 400, "POST", "/v1/accounts", map[string]any{"name": "x", "chain": "bitcoin", "network": "moonnet"}, "network")
	rec.fails(alice, 400, "POST", "/v1/accounts", map[string]any{"name": "x", "chain": "dogecoin"}, "chain")
	rec.fails(alice, 404, "POST", "/v1/accounts", map[string]any{"name": "x", "chain": "solana", "wallet": "nope"}, "wallet")
	rec.fails(alice, 409, "POST", "/v1/accounts", map[string]any{"name": "x", "wallet": "ref", "index": 0}, "eth0")

	// Filters, and JSON-RPC stays Ethereum.
	var list struct {
		Accounts []chainAccount `json:"accounts"`
	}
	rec.call(alice, 200, "GET", "/v1/accounts?chain=bitcoin", nil, &list)
	if len(list.Accounts) != 3 || list.Accounts[0].Chain != "bitcoin" {
		t.Fatalf("bitcoin accounts: %+v", list.Accounts)
	}
	rec.fails(alice, 400, "GET", "/v1/accounts?chain=dogecoin", nil, "chain")
	var rpc struct {
		Result []string `json:"result"`
	}
	rec.call(alice, 200, "POST", "/v1/rpc", map[string]any{"jsonrpc": "2.0", "id": 1, "method": "eth_accounts", "params": []any{}}, &rpc)
	if len(rpc.Result) != 1 || rpc.Result[0] != eth.Address {
		t.Fatalf("eth_accounts: %v", rpc.Result)
	}

	// Bitcoin: a PSBT spending one P2WPKH and one P2TR coin of the vault,
	// signed over HTTPS, finalized, checked by btcd's script engine.
	wpkhScript, trScript := payTo(t, wpkh.Address), payTo(t, tr.Address)
	fund := wire.NewMsgTx(2)
	fund.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&chainhash.Hash{1}, 0), nil, nil))
	fund.AddTxOut(wire.NewTxOut(80_000, wpkhScript))
	fund.AddTxOut(wire.NewTxOut(50_000, trScript))
	spend := wire.NewMsgTx(2)
	fh := fund.TxHash()
	spend.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&fh, 0), nil, nil))
	spend.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&fh, 1), nil, nil))
	spend.AddTxOut(wire.NewTxOut(120_000, payTo(t, "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g")))
	pk, err := psbt.NewFromUnsignedTx(spend)
	if err != nil {
		t.Fatal(err)
	}
	pk.Inputs[0].NonWitnessUtxo = fund
	pk.Inputs[1].WitnessUtxo = fund.TxOut[1]
	enc, _ := pk.B64Encode()
	// Without the previous transaction a P2WPKH input is refused, named.
	noPrev, _ := psbt.NewFromUnsignedTx(spend.Copy())
	noPrev.Inputs[0].WitnessUtxo = fund.TxOut[0]
	noPrev.Inputs[1].WitnessUtxo = fund.TxOut[1]
	noPrevEnc, _ := noPrev.B64Encode()
	rec.fails(alice, 400, "POST", "/v1/accounts/btc0/sign-psbt", map[string]any{"psbt": noPrevEnc}, "inputs[0]")
	var signed struct {
		PSBT         string `json:"psbt"`
		SignedInputs []int  `json:"signed_inputs"`
	}
	rec.call(alice, 200, "POST", "/v1/accounts/btc0/sign-psbt", map[string]any{"psbt": enc, "finalize": true}, &signed)
	if len(signed.SignedInputs) != 1 || signed.SignedInputs[0] != 0 {
		t.Fatalf("btc0 signed %v", signed.SignedInputs)
	}
	rec.call(alice, 200, "POST", "/v1/accounts/tr0/sign-psbt", map[string]any{"psbt": signed.PSBT, "finalize": true}, &signed)
	if len(signed.SignedInputs) != 1 || signed.SignedInputs[0] != 1 {
		t.Fatalf("tr0 signed %v", signed.SignedInputs)
	}
	final, err := psbt.NewFromRawBytes(strings.NewReader(signed.PSBT), true)
	if err != nil || !final.IsComplete() {
		t.Fatalf("final PSBT: %v", err)
	}
	tx, err := psbt.Extract(final)
	if err != nil {
		t.Fatal(err)
	}
	runScripts(t, tx, fund.TxOut[0], fund.TxOut[1])

	// Operations a chain does not have: 400 naming the chain.
	rec.fails(alice, 400, "POST", "/v1/accounts/btc0/sign-message", map[string]string{"data": "x"}, "Bitcoin")
	rec.fails(alice, 400, "POST", "/v1/accounts/eth0/sign-psbt", map[string]any{"psbt": enc}, "Ethereum")
	rec.fails(alice, 400, "POST", "/v1/accounts/sol0/sign-typed-data", `{"typed_data":{}}`, "Solana")
	rec.fails(alice, 400, "POST", "/v1/accounts/sol0/sign-transaction", `{"transaction":{"nonce":"0x0"}}`, "base64")

	// Solana: a System transfer signed by the vault.
	me := sol.MustPublicKeyFromBase58(sola.Address)
	dest := sol.PublicKeyFromBytes(bytes.Repeat([]byte{7}, 32))
	wireTx := solWire(t, me, system.NewTransferInstruction(1_500_000, me, dest).Build())
	var ss struct {
		Signature   string `json:"signature"`
		Transaction string `json:"transaction"`
	}
	rec.call(alice, 200, "POST", "/v1/accounts/sol0/sign-transaction", map[string]string{"transaction": wireTx}, &ss)
	back, err := sol.TransactionFromBase64(ss.Transaction)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := back.Message.MarshalBinary()
	if !ed25519.Verify(me[:], msg, base58.Decode(ss.Signature)) || back.Signatures[0].String() != ss.Signature {
		t.Fatal("the Solana signature does not verify with crypto/ed25519")
	}
	if err := back.VerifySignatures(); err != nil {
		t.Fatalf("solana-go: %v", err)
	}
	accts, err := back.Message.Instructions[0].ResolveInstructionAccounts(&back.Message)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := system.DecodeInstruction(accts, back.Message.Instructions[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	if tr, ok := ix.Impl.(*system.Transfer); !ok || *tr.Lamports != 1_500_000 || !tr.GetRecipientAccount().PublicKey.Equals(dest) {
		t.Fatalf("decoded %+v", ix.Impl)
	}
	var sm struct {
		Signature string `json:"signature"`
	}
	rec.call(alice, 200, "POST", "/v1/accounts/sol0/sign-message", map[string]string{"data": "hello solana"}, &sm)
	if !ed25519.Verify(me[:], []byte("hello solana"), base58.Decode(sm.Signature)) {
		t.Fatal("Solana message signature does not verify")
	}

	// A wallet made in the vault: origin generated, 24 words never shown.
	rec.call(alice, 201, "POST", "/v1/wallets", map[string]string{"name": "fresh"}, &w)
	if w.Origin != "generated" || len(w.Fingerprint) != 8 {
		t.Fatalf("generated wallet %+v", w)
	}
	var gen1, gen2, plain chainAccount
	rec.call(alice, 201, "POST", "/v1/accounts", map[string]any{"name": "g1", "chain": "solana", "wallet": "fresh"}, &gen1)
	rec.call(alice, 201, "POST", "/v1/accounts", map[string]any{"name": "g2", "chain": "solana", "wallet": "fresh"}, &gen2)
	if gen1.DerivationPath != "m/44'/501'/0'/0'" || gen2.DerivationPath != "m/44'/501'/1'/0'" {
		t.Fatalf("next unused: %s %s", gen1.DerivationPath, gen2.DerivationPath)
	}
	rec.call(alice, 201, "POST", "/v1/accounts", map[string]any{"name": "plain", "chain": "bitcoin", "network": "regtest", "address_type": "p2tr"}, &plain)
	var wl struct {
		Wallets []struct{ Name string } `json:"wallets"`
	}
	rec.call(alice, 200, "GET", "/v1/wallets", nil, &wl)
	rec.call(alice, 200, "GET", "/v1/wallets/fresh", nil, &w)
	if len(wl.Wallets) != 2 || w.Accounts == nil || *w.Accounts != 2 {
		t.Fatalf("wallets %+v, fresh %+v", wl, w)
	}
	rec.fails(root, 404, "GET", "/v1/wallets/fresh", nil, "") // another owner's wallet does not exist for the caller

	// Provenance: signed by the published key, as it happened.
	var pub struct {
		KeyID     string `json:"key_id"`
		PublicKey string `json:"public_key"`
		Algorithm string `json:"algorithm"`
	}
	rec.call("", 200, "GET", "/v1/sys/provenance/public-key", nil, &pub)
	pubKey, _ := hex.DecodeString(pub.PublicKey)
	verify := func(name string) (*provenance.Record, *provenance.Signed) {
		var p struct {
			Record    json.RawMessage `json:"record"`
			Payload   []byte          `json:"payload"`
			Signature []byte          `json:"signature"`
			KeyID     string          `json:"key_id"`
		}
		rec.call(alice, 200, "GET", "/v1/accounts/"+name+"/provenance", nil, &p)
		s := &provenance.Signed{Payload: p.Payload, Signature: p.Signature, KeyID: p.KeyID}
		r, err := provenance.Verify(pubKey, s)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !json.Valid(p.Record) || !bytes.Equal(compact(t, p.Record), p.Payload) {
			t.Fatalf("%s: record and payload differ", name)
		}
		return r, s
	}
	r, s := verify("btc0")
	if r.Origin != "derived" || r.Wallet.Fingerprint != "73c5da0a" || r.Wallet.DerivationPath != "m/84'/0'/0'/0/0" ||
		r.Address != wpkh.Address || r.Entropy.Mode != "external" || !r.SealWrap.Wrapped || !strings.HasPrefix(r.SealWrap.Mechanism, "pkcs11:aes_gcm:") {
		t.Fatalf("btc0 provenance %+v", r)
	}
	r, _ = verify("plain")
	if r.Origin != "generated" || r.Entropy.Mode != "augmentation" || r.Entropy.Source != "pkcs11" || r.Entropy.HSMBytes < 64 ||
		r.Entropy.Health != "passed" || r.Entropy.DrawnFor != "key" || !r.SealWrap.Wrapped {
		t.Fatalf("generated provenance %+v", r)
	}
	r, _ = verify("g2")
	if r.Origin != "derived" || r.Wallet.Origin != "generated" || r.Entropy.HSMBytes < 64 || r.Entropy.DrawnFor != "wallet" {
		t.Fatalf("derived-from-generated provenance %+v", r)
	}
	tampered := *s
	tampered.Payload = bytes.Replace(s.Payload, []byte(`"derived"`), []byte(`"generated"`), 1)
	if _, err := provenance.Verify(pubKey, &tampered); err == nil {
		t.Fatal("a tampered provenance record verifies")
	}

	// Deleting a wallet: step-up, and refused while accounts derive from it.
	rec.fails(alice, 403, "DELETE", "/v1/wallets/fresh", nil, "mfa_required")
	rec.fails(aliceMFA, 409, "DELETE", "/v1/wallets/fresh", nil, "wallet_in_use")
	rec.call(aliceMFA, 204, "DELETE", "/v1/accounts/g1", nil, nil)
	rec.call(aliceMFA, 204, "DELETE", "/v1/accounts/g2", nil, nil)
	rec.call(aliceMFA, 204, "DELETE", "/v1/wallets/fresh", nil, nil)
	rec.fails(alice, 404, "GET", "/v1/wallets/fresh", nil, "wallet")
	tn.stop()

	// No seed, mnemonic or private key anywhere.
	seed, err := hd.Seed(secret.String(abandonMnemonic), "")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := hd.NewMaster(seed)
	defer m.Destroy()
	k, _ := m.Secp256k1(hd.Path{hd.H(84), hd.H(0), hd.H(0), 0, 0})
	secrets := map[string]string{
		"mnemonic":          abandonMnemonic,
		"mnemonic words":    "abandon abandon",
		"seed (hex)":        hex.EncodeToString(seed),
		"seed (base64)":     base64.StdEncoding.EncodeToString(seed),
		"private key (hex)": hex.EncodeToString(k.Private),
	}
	audit, err := os.ReadFile(auditPath)
	if err != nil || len(audit) == 0 {
		t.Fatalf("audit log: %v", err)
	}
	rec.mu.Lock()
	answers := bytes.Join(rec.bodies, []byte("\n"))
	rec.mu.Unlock()
	for where, text := range map[string][]byte{"an answer": answers, "the audit log": audit, "the server log": []byte(logs.String())} {
		for what, s := range secrets {
			if bytes.Contains(text, []byte(s)) {
				t.Errorf("the %s appears in %s", what, where)
			}
		}
		if where == "an answer" && (bytes.Contains(text, []byte(`"mnemonic":`)) || bytes.Contains(text, []byte(`"seed":`))) {
			t.Errorf("an answer has a mnemonic or seed field")
		}
	}
	for _, want := range []string{`"operation":"wallets.create"`, `"operation":"accounts.sign_psbt"`, `"account":"alice/sol0"`} {
		if !bytes.Contains(audit, []byte(want)) {
			t.Errorf("audit log lacks %s", want)
		}
	}
}

// payTo is the output script of a Bitcoin address.
func payTo(t testing.TB, addr string) []byte {
	t.Helper()
	a, err := btcutil.DecodeAddress(addr, &chaincfg.MainNetParams)
	if err != nil {
		t.Fatal(err)
	}
	s, err := txscript.PayToAddrScript(a)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runScripts runs btcd's script engine on every input of tx, spending prev.
func runScripts(t *testing.T, tx *wire.MsgTx, prev ...*wire.TxOut) {
	t.Helper()
	outs := map[wire.OutPoint]*wire.TxOut{}
	for i, o := range prev {
		outs[tx.TxIn[i].PreviousOutPoint] = o
	}
	fetcher := txscript.NewMultiPrevOutFetcher(outs)
	hashes := txscript.NewTxSigHashes(tx, fetcher)
	for i, o := range prev {
		vm, err := txscript.NewEngine(o.PkScript, tx, i, txscript.StandardVerifyFlags, nil, hashes, o.Value, fetcher)
		if err != nil {
			t.Fatalf("input %d: %v", i, err)
		}
		if err := vm.Execute(); err != nil {
			t.Fatalf("input %d does not verify: %v", i, err)
		}
	}
}

func compact(t *testing.T, raw []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
