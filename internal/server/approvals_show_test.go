package server

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/moonvault/moonvault/internal/approval"
	"github.com/moonvault/moonvault/internal/config"
)

// TestApproversSeeWhatTheySign (review M4): an approval shows its
// eligible approvers and its requester the request as sent (the intent
// has no calldata, gas or message text) and a digest of exactly what the
// key will sign, which they can compute with their own tools: here the
// signed transaction's signing hash and the message's EIP-191 hash are
// the digest, and the signature recovers the account over it. The digest
// is compared again when the approved request runs: a stored body that
// no longer gives the digest the approvers saw is denied, not signed.
func TestApproversSeeWhatTheySign(t *testing.T) {
	at := newApprovalTest(t)
	tn := at.tn
	body := txBody(strangerAddr, wei(t, "11"), 5, 1, "0xdeadbeef")
	ap := at.request(t, body)
	var shown approvalAnswer
	tn.mustCallTok(at.alice.token, 200, "GET", "/v1/approvals/"+ap.ID, nil, &shown)
	sent, _ := json.Marshal(body)
	if !jsonEqualBytes(shown.Request, sent) || shown.Digest.Algorithm != "keccak256" || shown.Digest.Of != "evm_transaction_signing_hash" ||
		len(shown.Digest.Value) != 66 || len(shown.Requirements) != 1 || strings.Join(shown.Requirements[0].Eligible, ",") != "alice,bob,carol" {
		t.Fatalf("an approver is shown %s / %+v / %+v", shown.Request, shown.Digest, shown.Requirements)
	}
	var mine approvalAnswer
	tn.mustCallTok(at.treasury.token, 200, "GET", "/v1/approvals/"+ap.ID, nil, &mine)
	if !jsonEqualBytes(mine.Request, sent) || mine.Digest != shown.Digest {
		t.Fatalf("the requester is shown %s %+v", mine.Request, mine.Digest)
	}
	at.vote(t, at.alice, "approve", ap.ID, 200)
	done, _ := at.vote(t, at.bob, "approve", ap.ID, 200)
	var res struct {
		Raw string `json:"raw_transaction"`
	}
	if err := json.Unmarshal(done.Result, &res); err != nil || done.Status != "signed" {
		t.Fatalf("signed: %+v %v", done, err)
	}
	var tx types.Transaction
	if err := tx.UnmarshalBinary(hexutil.MustDecode(res.Raw)); err != nil {
		t.Fatal(err)
	}
	signer := types.LatestSignerForChainID(big.NewInt(1))
	if h := signer.Hash(&tx); h.Hex() != shown.Digest.Value {
		t.Fatalf("the transaction signed has signing hash %s, the approvers were shown %s", h.Hex(), shown.Digest.Value)
	}
	if from, err := types.Sender(signer, &tx); err != nil || !strings.EqualFold(from.Hex(), at.addr) || hexutil.Encode(tx.Data()) != "0xdeadbeef" {
		t.Fatalf("sender %s %v, data %x", from.Hex(), err, tx.Data())
	}

	// A held message shows its text and its EIP-191 hash.
	tn.mustCallTok(at.boss.token, 201, "POST", "/v1/policies", map[string]any{"name": "messages: one approver", "effect": "require_approval",
		"condition": `intent.kind == "message"`, "approvals": map[string]any{"threshold": 1, "approvers": []string{"carol"}}}, nil)
	var held struct {
		Approval approvalAnswer `json:"approval"`
	}
	tn.mustCallTok(at.treasury.token, 202, "POST", "/v1/accounts/hot/sign-message", map[string]string{"data": "pay 1000 USDC to mallory"}, &held)
	msgAp := held.Approval
	if !strings.Contains(string(msgAp.Request), "pay 1000 USDC to mallory") || msgAp.Digest.Of != "eip191_message" ||
		msgAp.Digest.Value != hexutil.Encode(accounts.TextHash([]byte("pay 1000 USDC to mallory"))) {
		t.Fatalf("a held message shows %s %+v", msgAp.Request, msgAp.Digest)
	}
	msgDone, _ := at.vote(t, at.carol, "approve", msgAp.ID, 200)
	var sm struct {
		Signature   string `json:"signature"`
		MessageHash string `json:"message_hash"`
	}
	if err := json.Unmarshal(msgDone.Result, &sm); err != nil || sm.MessageHash != msgAp.Digest.Value {
		t.Fatalf("message signed: %+v %v", msgDone, err)
	}
	sig := hexutil.MustDecode(sm.Signature)
	sig[64] -= 27
	pub, err := crypto.SigToPub(hexutil.MustDecode(msgAp.Digest.Value), sig)
	if err != nil || !strings.EqualFold(crypto.PubkeyToAddress(*pub).Hex(), at.addr) {
		t.Fatalf("the signature over the digest recovers %v %v", pub, err)
	}

	// The body kept no longer gives the digest shown (the gas changed,
	// which the intent does not show): denied at the threshold.
	other := at.request(t, txBody(strangerAddr, wei(t, "12"), 6, 1, ""))
	key := "approval/records/" + other.ID
	err = tn.node.barrier.Update(t.Context(), key, func(cur []byte, found bool) ([]byte, bool, error) {
		var rec map[string]any
		if err := json.Unmarshal(cur, &rec); err != nil {
			return nil, false, err
		}
		raw, err := base64.StdEncoding.DecodeString(rec["request"].(string))
		if err != nil {
			return nil, false, err
		}
		rec["request"] = []byte(strings.Replace(string(raw), `"gas":"0x186a0"`, `"gas":"0x186a1"`, 1))
		next, err := json.Marshal(rec)
		return next, false, err
	})
	if err != nil {
		t.Fatal(err)
	}
	at.vote(t, at.alice, "approve", other.ID, 200)
	denied, _ := at.vote(t, at.bob, "approve", other.ID, 200)
	if denied.Status != "denied" || !strings.Contains(denied.Reason, "request_changed") || !strings.Contains(denied.Reason, "digest") {
		t.Fatalf("a changed body at the threshold: %+v", denied)
	}
}

// TestApprovalStoreBounds (review L1): a requester has at most
// approval_max_pending approvals waiting (429 past it, with a message that
// says what to do); lists come a page at a time; a decided approval is
// removed approval_retention after it was decided (the sweep every node
// runs; here with a clock 31 days ahead).
func TestApprovalStoreBounds(t *testing.T) {
	tn := startNode(t, t.TempDir(), nodeOpts{mutate: func(c *config.Server) { c.ApprovalMaxPending = 2 }})
	root := initShamir(t, tn)
	boss := enrolledUser(t, tn, root, "boss", "admin")
	treasury := enrolledUser(t, tn, root, "treasury", "user")
	alice := enrolledUser(t, tn, root, "alice", "user")
	tn.mustCallTok(treasury.token, 201, "POST", "/v1/accounts", map[string]string{"name": "hot"}, nil)
	tn.mustCallTok(boss.token, 201, "POST", "/v1/policies", map[string]any{"name": "messages: alice", "effect": "require_approval",
		"condition": `intent.kind == "message"`, "approvals": map[string]any{"threshold": 1, "approvers": []string{"alice"}}}, nil)
	var ids []string
	for i := range 2 {
		var held struct {
			Approval approvalAnswer `json:"approval"`
		}
		tn.mustCallTok(treasury.token, 202, "POST", "/v1/accounts/hot/sign-message", map[string]string{"data": fmt.Sprint("message ", i)}, &held)
		ids = append(ids, held.Approval.ID)
	}
	var e fieldErr
	if c := tn.callTok(treasury.token, "POST", "/v1/accounts/hot/sign-message", map[string]string{"data": "one too many"}, &e); c != 429 ||
		e.Error.Code != "too_many_pending_approvals" || !strings.Contains(e.Error.Message, "approval_max_pending is 2") {
		t.Fatalf("a third waiting approval: %d %+v", c, e)
	}

	type page struct {
		Approvals []approvalAnswer `json:"approvals"`
		Next      string           `json:"next"`
	}
	var p1, p2 page
	tn.mustCallTok(alice.token, 200, "GET", "/v1/approvals?limit=1", nil, &p1)
	if len(p1.Approvals) != 1 || p1.Approvals[0].ID != ids[1] || p1.Next != ids[1] {
		t.Fatalf("first page: %+v", p1)
	}
	tn.mustCallTok(alice.token, 200, "GET", "/v1/approvals?limit=1&after="+p1.Next, nil, &p2)
	if len(p2.Approvals) != 1 || p2.Approvals[0].ID != ids[0] || p2.Next != "" {
		t.Fatalf("second page: %+v", p2)
	}
	if c := tn.callTok(alice.token, "GET", "/v1/approvals?after=nonsense", nil, &e); c != 400 || e.Error.Field != "after" {
		t.Fatalf("a bad cursor: %d %+v", c, e)
	}

	tn.mustCallTok(alice.token, 200, "POST", "/v1/approvals/"+ids[0]+"/reject", nil, nil)
	tn.mustCallTok(treasury.token, 202, "POST", "/v1/accounts/hot/sign-message", map[string]string{"data": "room again"}, nil)

	later := approval.New(tn.node.barrier, approval.Options{Now: func() time.Time { return time.Now().Add(31 * 24 * time.Hour) }})
	tn.node.sweepApprovals(t.Context(), later)
	if c := tn.callTok(treasury.token, "GET", "/v1/approvals/"+ids[0], nil, nil); c != 404 {
		t.Fatalf("a rejection 31 days old is still kept: %d", c)
	}
	tn.mustCallTok(treasury.token, 200, "GET", "/v1/approvals/"+ids[1], nil, nil) // expired by the same sweep, kept
}
