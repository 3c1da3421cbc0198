package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
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
