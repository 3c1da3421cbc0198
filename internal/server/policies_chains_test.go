package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/ethereum/go-ethereum/common/hexutil"
	sol "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/programs/system"
)

const (
	coldBTC = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
	elseBTC = "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"
)

// spendPSBT is a base64 PSBT spending an 80 000 sat P2WPKH coin of addr
// (with its previous transaction, as the vault requires) to each of outs.
func spendPSBT(t *testing.T, addr string, n int, outs map[string]int64) string {
	t.Helper()
	fund := wire.NewMsgTx(2)
	fund.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&chainhash.Hash{byte(n)}, 0), nil, nil))
	fund.AddTxOut(wire.NewTxOut(80_000, payTo(t, addr)))
	spend := wire.NewMsgTx(2)
	fh := fund.TxHash()
	spend.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&fh, 0), nil, nil))
	for a, v := range outs {
		spend.AddTxOut(wire.NewTxOut(v, payTo(t, a)))
	}
	p, err := psbt.NewFromUnsignedTx(spend)
	if err != nil {
		t.Fatal(err)
	}
	p.Inputs[0].NonWitnessUtxo = fund
	enc, err := p.B64Encode()
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// TestPolicyOtherChains: the policy step governs every chain through the
// one call in the sign pipeline: the Bitcoin example of docs/policies.md
// on sign-psbt (allowed, refused, dry run), a satoshi limit, and a Solana
// transfer held for approval and signed when an approver with TOTP
// approves it.
func TestPolicyOtherChains(t *testing.T) {
	tn := startNode(t, t.TempDir(), nodeOpts{})
	root := initShamir(t, tn)
	boss := enrolledUser(t, tn, root, "boss", "admin")
	bob := enrolledUser(t, tn, root, "bob", "user")
	alice := createUser(t, tn, root, "alice", "user")
	var btcAcc, solAcc chainAccount
	tn.mustCallTok(alice, 201, "POST", "/v1/accounts", map[string]string{"name": "btc", "chain": "bitcoin"}, &btcAcc)
	tn.mustCallTok(alice, 201, "POST", "/v1/accounts", map[string]string{"name": "sol", "chain": "solana"}, &solAcc)

	// Bitcoin outputs only to allowlisted addresses (docs/policies.md).
	var p policyAnswer
	tn.mustCallTok(boss.token, 201, "POST", "/v1/policies", docPolicies(t)["btc-outputs"], &p)
	var signed struct {
		PSBT         string `json:"psbt"`
		SignedInputs []int  `json:"signed_inputs"`
	}
	tn.mustCallTok(alice, 200, "POST", "/v1/accounts/btc/sign-psbt", map[string]any{"psbt": spendPSBT(t, btcAcc.Address, 1, map[string]int64{coldBTC: 70_000})}, &signed)
	if len(signed.SignedInputs) != 1 {
		t.Fatalf("signed %+v", signed)
	}
	var e deniedErr
	bad := spendPSBT(t, btcAcc.Address, 2, map[string]int64{coldBTC: 30_000, elseBTC: 40_000})
	if c := tn.callTok(alice, "POST", "/v1/accounts/btc/sign-psbt", map[string]any{"psbt": bad}, &e); c != 403 ||
		e.Error.Code != "policy_denied" || e.Error.Policy == nil || e.Error.Policy.ID != p.ID {
		t.Fatalf("output to an unknown address: %d %+v", c, e)
	}
	var ev struct {
		Decision string `json:"decision"`
		Intent   struct {
			Chain, Kind, Value string
			Outputs            []struct{ Address, Value string }
		} `json:"intent"`
	}
	tn.mustCallTok(alice, 200, "POST", "/v1/policies/evaluate", map[string]any{"account": "btc", "operation": "sign-psbt", "request": map[string]any{"psbt": bad}}, &ev)
	if ev.Decision != "deny" || ev.Intent.Chain != "bitcoin" || ev.Intent.Kind != "psbt" || ev.Intent.Value != "80000" || len(ev.Intent.Outputs) != 2 {
		t.Fatalf("PSBT dry run: %+v", ev)
	}
	tn.mustCallTok(boss.token, 204, "DELETE", "/v1/policies/"+p.ID, nil, nil)

	// A daily cap in satoshis: the PSBT's value (80 000: payment and fee)
	// counts; the second one would pass 100 000.
	tn.mustCallTok(boss.token, 201, "POST", "/v1/policies", map[string]any{"name": "0.001 BTC a day", "effect": "deny",
		"condition": `intent.chain == "bitcoin"`, "limit": map[string]string{"amount": "100000", "window": "24h"}}, &p)
	tn.mustCallTok(alice, 200, "POST", "/v1/accounts/btc/sign-psbt", map[string]any{"psbt": spendPSBT(t, btcAcc.Address, 3, map[string]int64{elseBTC: 70_000})}, nil)
	if c := tn.callTok(alice, "POST", "/v1/accounts/btc/sign-psbt", map[string]any{"psbt": spendPSBT(t, btcAcc.Address, 4, map[string]int64{elseBTC: 70_000})}, &e); c != 403 ||
		e.Error.Policy == nil || e.Error.Policy.Reason != "24 h native spend would reach 0.0016 BTC, limit 0.001 BTC" {
		t.Fatalf("over the satoshi cap: %d %+v", c, e)
	}

	// Solana: a transfer over 1 SOL waits for bob, then is signed.
	tn.mustCallTok(boss.token, 201, "POST", "/v1/policies", map[string]any{"name": "SOL over 1: bob", "effect": "require_approval",
		"condition": `intent.chain == "solana" && intent.value > sol("1")`,
		"approvals": map[string]any{"threshold": 1, "approvers": []string{"bob"}}}, nil)
	me := sol.MustPublicKeyFromBase58(solAcc.Address)
	dest := sol.PublicKeyFromBytes(bytes.Repeat([]byte{7}, 32))
	stx, err := sol.NewTransaction([]sol.Instruction{system.NewTransferInstruction(1_500_000_000, me, dest).Build()},
		sol.Hash(sha256.Sum256([]byte("recent"))), sol.TransactionPayer(me))
	if err != nil {
		t.Fatal(err)
	}
	wireTx, err := stx.ToBase64()
	if err != nil {
		t.Fatal(err)
	}
	var held struct {
		Approval approvalAnswer `json:"approval"`
	}
	tn.mustCallTok(alice, 202, "POST", "/v1/accounts/sol/sign-transaction", map[string]string{"transaction": wireTx}, &held)
	if held.Approval.Intent["chain"] != "solana" || held.Approval.Intent["value"] != "1500000000" {
		t.Fatalf("Solana approval: %+v", held.Approval)
	}
	// The approver is shown the request and the SHA-256 of the message
	// bytes the key signs (review M4).
	signedMsg, err := stx.Message.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(signedMsg); held.Approval.Digest.Algorithm != "sha256" || held.Approval.Digest.Of != "solana_transaction_message" ||
		held.Approval.Digest.Value != hexutil.Encode(sum[:]) || !strings.Contains(string(held.Approval.Request), wireTx) {
		t.Fatalf("Solana approval shows %s %+v", held.Approval.Request, held.Approval.Digest)
	}
	var done approvalAnswer
	tn.mustCallTok(bob.token, 200, "POST", "/v1/approvals/"+held.Approval.ID+"/approve", nil, &done)
	var res struct {
		Signature   string `json:"signature"`
		Transaction string `json:"transaction"`
	}
	if err := json.Unmarshal(done.Result, &res); err != nil || done.Status != "signed" || res.Signature == "" {
		t.Fatalf("Solana approval after bob: %+v %v", done, err)
	}
	back, err := sol.TransactionFromBase64(res.Transaction)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := back.Message.MarshalBinary()
	if !back.Signatures[0].Verify(me, msg) || back.Signatures[0].String() != res.Signature || !bytes.Equal(msg, signedMsg) {
		t.Fatal("the approved Solana signature does not verify for the account")
	}
	// A 1 SOL transfer needs nobody.
	small, _ := sol.NewTransaction([]sol.Instruction{system.NewTransferInstruction(1_000_000_000, me, dest).Build()},
		sol.Hash(sha256.Sum256([]byte("recent2"))), sol.TransactionPayer(me))
	smallTx, _ := small.ToBase64()
	var direct map[string]any
	tn.mustCallTok(alice, 200, "POST", "/v1/accounts/sol/sign-transaction", map[string]string{"transaction": smallTx}, &direct)
	if !strings.HasPrefix(done.Intent["account"].(string), "alice/") {
		t.Fatalf("intent account: %v", done.Intent["account"])
	}
}

// solIx is a raw Solana instruction.
func solIx(program sol.PublicKey, data []byte, metas ...*sol.AccountMeta) sol.Instruction {
	return sol.NewInstruction(program, sol.AccountMetaSlice(metas), data)
}

func solKey(seed string) sol.PublicKey {
	h := sha256.Sum256([]byte(seed))
	return sol.PublicKeyFromBytes(h[:])
}

func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// solWire is a base64 wire transaction paid by payer.
func solWire(t testing.TB, payer sol.PublicKey, ins ...sol.Instruction) string {
	t.Helper()
	tx, err := sol.NewTransaction(ins, sol.Hash(sha256.Sum256([]byte(t.Name()))), sol.TransactionPayer(payer))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := tx.ToBase64()
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// TestPolicySolanaDrainRefused (review H2) runs the reviewer's transaction
// against a real server over HTTPS: an attacker's program given the
// account as a writable signer, System Assign of the account to it, SPL
// Token SetAuthority of a token account to the attacker, CloseAccount
// sending another's lamports to the attacker, and a Token-2022
// TransferCheckedWithFee of 1 000 000 units. The intent used to be value
// 0, no recipient, no outputs, no tokens: the daily SOL cap of
// docs/policies.md let it through. Now it is not fully decoded and the cap
// refuses it; transfers it can count still sign, fees included; the SPL
// mint example refuses an unchecked transfer (review L2).
func TestPolicySolanaDrainRefused(t *testing.T) {
	tn := startNode(t, t.TempDir(), nodeOpts{})
	root := initShamir(t, tn)
	boss := enrolledUser(t, tn, root, "boss", "admin")
	alice := createUser(t, tn, root, "alice", "user")
	var acc chainAccount
	tn.mustCallTok(alice, 201, "POST", "/v1/accounts", map[string]string{"name": "sol", "chain": "solana"}, &acc)
	me := sol.MustPublicKeyFromBase58(acc.Address)
	attacker, mint, usdcMint := solKey("attacker"), solKey("mint"), sol.MustPublicKeyFromBase58("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v")
	w := func(k sol.PublicKey) *sol.AccountMeta { return sol.Meta(k).WRITE() }
	ws := func(k sol.PublicKey) *sol.AccountMeta { return sol.Meta(k).WRITE().SIGNER() }
	rs := func(k sol.PublicKey) *sol.AccountMeta { return sol.Meta(k).SIGNER() }
	drain := solWire(t, me,
		solIx(attacker, []byte{0}, ws(me)),
		solIx(sol.SystemProgramID, append([]byte{1, 0, 0, 0}, attacker[:]...), ws(me)),
		solIx(sol.TokenProgramID, append([]byte{6, 2, 1}, attacker[:]...), w(solKey("src")), rs(me)),
		solIx(sol.TokenProgramID, []byte{9}, w(solKey("src2")), w(attacker), rs(me)),
		solIx(sol.Token2022ProgramID, slices.Concat([]byte{26, 1}, le64(1_000_000), []byte{6}, le64(0)), w(solKey("src3")), sol.Meta(mint), w(solKey("dst")), rs(me)),
	)

	// Before any policy the dry run shows what the vault sees.
	var ev struct {
		Decision string `json:"decision"`
		Intent   struct {
			Decoded   bool     `json:"decoded"`
			Undecoded []string `json:"undecoded"`
			Programs  []string `json:"programs"`
			Value     string   `json:"value"`
			MaxFee    string   `json:"max_fee"`
			Tokens    []struct {
				Method, To, Amount string
				Unlimited          bool
			} `json:"tokens"`
		} `json:"intent"`
	}
	tn.mustCallTok(alice, 200, "POST", "/v1/policies/evaluate", map[string]any{"account": "sol", "operation": "sign-transaction",
		"request": map[string]string{"transaction": drain}}, &ev)
	in := ev.Intent
	if in.Decoded || len(in.Undecoded) != 3 || !strings.Contains(in.Undecoded[0], "program "+attacker.String()+" receives the account as a writable signer") ||
		len(in.Programs) != 4 || in.MaxFee != "5000" || len(in.Tokens) != 3 || in.Tokens[0].Method != "setAuthority" || !in.Tokens[0].Unlimited ||
		in.Tokens[2].Amount != "1000000" {
		t.Fatalf("drain intent: %+v", in)
	}

	var cap policyAnswer
	tn.mustCallTok(boss.token, 201, "POST", "/v1/policies", docPolicies(t)["daily-sol-cap"], &cap)
	var e deniedErr
	if c := tn.callTok(alice, "POST", "/v1/accounts/sol/sign-transaction", map[string]string{"transaction": drain}, &e); c != 403 ||
		e.Error.Code != "policy_denied" || e.Error.Policy == nil || e.Error.Policy.ID != cap.ID ||
		!strings.Contains(e.Error.Policy.Reason, "the request is not fully decoded (instructions[0]: program "+attacker.String()+" receives the account as a writable signer; and 2 more), and a limit cannot count what the request does not state") {
		t.Fatalf("the drain: %d %+v", c, e)
	}

	// What the cap can count signs, the fee counted: 0.5 SOL, then 1.5 SOL
	// would reach 2.00001 SOL.
	transfer := func(lamports uint64) string {
		return solWire(t, me, solIx(sol.SystemProgramID, append([]byte{2, 0, 0, 0}, le64(lamports)...), ws(me), w(solKey("dest"))))
	}
	var signed struct{ Signature, Transaction string }
	tn.mustCallTok(alice, 200, "POST", "/v1/accounts/sol/sign-transaction", map[string]string{"transaction": transfer(500_000_000)}, &signed)
	back, err := sol.TransactionFromBase64(signed.Transaction)
	if err != nil {
		t.Fatal(err)
	}
	if err := back.VerifySignatures(); err != nil {
		t.Fatalf("the signed transfer does not verify: %v", err)
	}
	if c := tn.callTok(alice, "POST", "/v1/accounts/sol/sign-transaction", map[string]string{"transaction": transfer(1_500_000_000)}, &e); c != 403 ||
		e.Error.Policy == nil || e.Error.Policy.Reason != "24 h native spend would reach 2.00001 SOL, limit 2 SOL" {
		t.Fatalf("1.5 SOL after 0.5: %d %+v", c, e)
	}
	tn.mustCallTok(boss.token, 204, "DELETE", "/v1/policies/"+cap.ID, nil, nil)

	// SPL tokens only of known mints: the checked transfer names USDC's
	// mint; the unchecked one names none and is refused.
	var mints policyAnswer
	tn.mustCallTok(boss.token, 201, "POST", "/v1/policies", docPolicies(t)["spl-mints"], &mints)
	checked := solWire(t, me, solIx(sol.TokenProgramID, slices.Concat([]byte{12}, le64(5), []byte{6}), w(solKey("src")), sol.Meta(usdcMint), w(solKey("dst")), rs(me)))
	tn.mustCallTok(alice, 200, "POST", "/v1/accounts/sol/sign-transaction", map[string]string{"transaction": checked}, nil)
	unchecked := solWire(t, me, solIx(sol.TokenProgramID, slices.Concat([]byte{3}, le64(5)), w(solKey("src")), w(solKey("dst")), rs(me)))
	if c := tn.callTok(alice, "POST", "/v1/accounts/sol/sign-transaction", map[string]string{"transaction": unchecked}, &e); c != 403 ||
		e.Error.Policy == nil || e.Error.Policy.ID != mints.ID {
		t.Fatalf("unchecked transfer: %d %+v", c, e)
	}
}
