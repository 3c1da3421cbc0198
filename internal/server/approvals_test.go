package server

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/moonvault/moonvault/internal/approval"
	"github.com/moonvault/moonvault/internal/audit"
	"github.com/moonvault/moonvault/internal/ethersverify"
)

// approvalTest is a vault with the "over 10 ETH: 2 of 3" policy of
// docs/policies.md, a requester and three approvers, each of whom
// enrolled TOTP and logged in with a real code.
type approvalTest struct {
	tn                                *testNode
	sink                              *recordingSink
	root                              string
	boss, treasury, alice, bob, carol *mfaUser
	policy                            policyAnswer
	addr                              string
}

func newApprovalTest(t *testing.T) *approvalTest {
	t.Helper()
	at := &approvalTest{sink: &recordingSink{}}
	at.tn = startNode(t, t.TempDir(), nodeOpts{auditSinks: []audit.Sink{at.sink}})
	tn := at.tn
	at.root = initShamir(t, tn)
	at.boss = enrolledUser(t, tn, at.root, "boss", "admin")
	at.treasury = enrolledUser(t, tn, at.root, "treasury", "user")
	at.alice = enrolledUser(t, tn, at.root, "alice", "user")
	at.bob = enrolledUser(t, tn, at.root, "bob", "user")
	at.carol = enrolledUser(t, tn, at.root, "carol", "user")
	doc := docPolicies(t)["large-transfers"]
	if c := tn.callTok(at.boss.token, "POST", "/v1/policies", doc, &at.policy); c != 201 {
		t.Fatalf("create policy: %d", c)
	}
	var acc account
	if c := tn.callTok(at.treasury.token, "POST", "/v1/accounts", map[string]string{"name": "hot"}, &acc); c != 201 {
		t.Fatalf("create account: %d", c)
	}
	at.addr = acc.Address
	return at
}

// request asks treasury/hot to sign body and expects it held (202).
func (at *approvalTest) request(t *testing.T, body any) approvalAnswer {
	t.Helper()
	var held struct {
		Approval approvalAnswer `json:"approval"`
	}
	var raw json.RawMessage
	if c := at.tn.callTok(at.treasury.token, "POST", "/v1/accounts/hot/sign-transaction", body, &raw); c != 202 {
		t.Fatalf("sign: %d %s, want 202", c, raw)
	}
	if err := json.Unmarshal(raw, &held); err != nil {
		t.Fatal(err)
	}
	return held.Approval
}

// vote approves or rejects as u and expects status want.
func (at *approvalTest) vote(t *testing.T, u *mfaUser, verb, id string, want int) (approvalAnswer, apiErr) {
	t.Helper()
	var raw json.RawMessage
	c := at.tn.callTok(u.token, "POST", "/v1/approvals/"+id+"/"+verb, nil, &raw)
	if c != want {
		t.Fatalf("%s %s by %s: %d %s, want %d", verb, id, u.name, c, raw, want)
	}
	var ap approvalAnswer
	var e apiErr
	if c == 200 {
		_ = json.Unmarshal(raw, &ap)
	} else {
		_ = json.Unmarshal(raw, &e)
	}
	return ap, e
}

// TestApprovalFlow: a transfer over 10 ETH is held; three users with TOTP
// (the requester cannot approve, a password-only session cannot, each
// approver counts once) bring it to its threshold; the vault signs it as
// the requester's account, and ethers recovers the account from the
// signed transaction. The approval's result is exactly the sign endpoint's
// answer. A rejection ends another request; a deny policy added while a
// request waits denies it at the threshold; JSON-RPC gets the approval id
// in its error and the signature through the approval. Every transition is
// in the audit log.
func TestApprovalFlow(t *testing.T) {
	ev := ethersverify.New(t)
	at := newApprovalTest(t)
	tn := at.tn
	body := txBody(strangerAddr, wei(t, "11"), 5, 1, "")
	ap := at.request(t, body)
	if ap.Status != "pending" || ap.Kind != "sign" || ap.Operation != "sign-transaction" || ap.Intent["value"] != "11000000000000000000" ||
		time.Until(ap.ExpiresAt) < 23*time.Hour || len(ap.Requirements) != 1 || ap.Requirements[0].Threshold != 2 {
		t.Fatalf("approval: %+v", ap)
	}

	// Who sees it: the requester and the approvers, nobody else.
	dave := createUser(t, tn, at.root, "dave", "user")
	for tok, want := range map[string]bool{at.alice.token: true, at.treasury.token: true, dave: false} {
		var list struct {
			Approvals []approvalAnswer `json:"approvals"`
		}
		tn.mustCallTok(tok, 200, "GET", "/v1/approvals?status=pending", nil, &list)
		if got := len(list.Approvals) == 1 && list.Approvals[0].ID == ap.ID; got != want {
			t.Fatalf("list: %+v, want visible=%v", list, want)
		}
	}
	if c := tn.callTok(dave, "GET", "/v1/approvals/"+ap.ID, nil, nil); c != 404 {
		t.Fatalf("stranger reads an approval: %d", c)
	}

	// The rules for an approver.
	if _, e := at.vote(t, at.treasury, "approve", ap.ID, 403); e.Error.Code != "self_approval" {
		t.Fatalf("requester approves: %+v", e)
	}
	// A password-only session cannot approve (an enrolled user cannot log in
	// without a code, so dave, who never enrolled, shows it), nor can an
	// API key, nor a user the policy does not name.
	if _, e := at.vote(t, &mfaUser{name: "dave", token: dave}, "approve", ap.ID, 403); e.Error.Code != "mfa_required" {
		t.Fatalf("password-only approves: %+v", e)
	}
	if _, e := at.vote(t, at.boss, "approve", ap.ID, 403); e.Error.Code != "not_an_approver" {
		t.Fatalf("an admin not listed approves: %+v", e)
	}
	var key struct {
		Key string `json:"key"`
	}
	tn.mustCallTok(at.alice.token, 201, "POST", "/v1/auth/api-keys", map[string]any{"name": "alice-bot", "actions": []string{"account.read"}, "accounts": []string{"*"}}, &key)
	var e apiErr
	if c := tn.callKey(key.Key, "POST", "/v1/approvals/"+ap.ID+"/approve", nil, &e); c != 403 || e.Error.Code != "not_an_approver" {
		t.Fatalf("an approver's API key approves: %d %+v", c, e)
	}
	one, _ := at.vote(t, at.alice, "approve", ap.ID, 200)
	if one.Status != "pending" || len(one.Approvals) != 1 || one.Approvals[0].User != "alice" {
		t.Fatalf("after alice: %+v", one)
	}
	if _, e := at.vote(t, at.alice, "approve", ap.ID, 409); e.Error.Code != "already_voted" {
		t.Fatalf("alice twice: %+v", e)
	}
	signed, _ := at.vote(t, at.bob, "approve", ap.ID, 200)
	if signed.Status != "signed" || len(signed.Result) == 0 {
		t.Fatalf("after bob: %+v", signed)
	}
	var res struct {
		Raw  string `json:"raw_transaction"`
		Hash string `json:"transaction_hash"`
	}
	if err := json.Unmarshal(signed.Result, &res); err != nil {
		t.Fatal(err)
	}
	etx := ev.Transaction(t, res.Raw)
	if etx.From != at.addr || etx.Value != "11000000000000000000" || !strings.EqualFold(etx.To, strangerAddr) || etx.Hash != res.Hash || etx.ChainID != "1" || etx.Nonce != 5 {
		t.Fatalf("ethers decodes %+v, want from %s", etx, at.addr)
	}
	var again approvalAnswer
	tn.mustCallTok(at.treasury.token, 200, "GET", "/v1/approvals/"+ap.ID, nil, &again)
	if again.Status != "signed" || !bytes.Equal(again.Result, signed.Result) {
		t.Fatalf("requester reads %+v", again)
	}
	if _, e := at.vote(t, at.carol, "approve", ap.ID, 409); e.Error.Code != "approval_not_pending" {
		t.Fatalf("vote after signing: %+v", e)
	}

	// One rejection ends a request.
	rej := at.request(t, txBody(strangerAddr, wei(t, "12"), 6, 1, ""))
	if r, _ := at.vote(t, at.carol, "reject", rej.ID, 200); r.Status != "rejected" {
		t.Fatalf("rejected: %+v", r)
	}
	if _, e := at.vote(t, at.bob, "approve", rej.ID, 409); e.Error.Code != "approval_not_pending" {
		t.Fatalf("approve after rejection: %+v", e)
	}

	// JSON-RPC: the error carries the approval; the approval the signature.
	rpcBody := map[string]any{"jsonrpc": "2.0", "id": 7, "method": "eth_signTransaction", "params": []any{map[string]any{
		"from": at.addr, "to": strangerAddr, "value": hexutil.EncodeBig(wei(t, "20")), "nonce": "0x9", "chainId": "0x1",
		"gas": "0x5208", "maxFeePerGas": "0x3b9aca00", "maxPriorityFeePerGas": "0x1"}}}
	var rpcOut struct {
		Error struct {
			Code int `json:"code"`
			Data struct {
				Code     string         `json:"code"`
				Approval approvalAnswer `json:"approval"`
			} `json:"data"`
		} `json:"error"`
	}
	tn.mustCallTok(at.treasury.token, 200, "POST", "/v1/rpc", rpcBody, &rpcOut)
	rpcAp := rpcOut.Error.Data.Approval
	if rpcOut.Error.Code != -32010 || rpcOut.Error.Data.Code != "approval_required" || rpcAp.ID == "" || rpcAp.Operation != "eth_signTransaction" {
		t.Fatalf("JSON-RPC answer: %+v", rpcOut)
	}
	at.vote(t, at.carol, "approve", rpcAp.ID, 200)
	rpcSigned, _ := at.vote(t, at.alice, "approve", rpcAp.ID, 200)
	var rawHex string
	if err := json.Unmarshal(rpcSigned.Result, &rawHex); err != nil || rpcSigned.Status != "signed" {
		t.Fatalf("JSON-RPC approval: %+v %v", rpcSigned, err)
	}
	if etx := ev.Transaction(t, rawHex); etx.From != at.addr || etx.Value != "20000000000000000000" {
		t.Fatalf("ethers decodes the JSON-RPC result as %+v", etx)
	}

	// A deny policy written while a request waits denies it at the
	// threshold; nothing is signed.
	late := at.request(t, txBody(strangerAddr, wei(t, "15"), 10, 1, ""))
	var deny policyAnswer
	tn.mustCallTok(at.boss.token, 201, "POST", "/v1/policies", map[string]string{"name": "nothing over 14 ETH", "effect": "deny",
		"condition": `intent.value > ether(14)`}, &deny)
	at.vote(t, at.alice, "approve", late.ID, 200)
	denied, _ := at.vote(t, at.bob, "approve", late.ID, 200)
	if denied.Status != "denied" || !strings.Contains(denied.Reason, "nothing over 14 ETH") || len(denied.Result) != 0 {
		t.Fatalf("late deny: %+v", denied)
	}
	tn.mustCallTok(at.boss.token, 204, "DELETE", "/v1/policies/"+deny.ID, nil, nil)

	// The result is exactly what the sign endpoint answers for the same
	// body (RFC 6979 signatures are deterministic).
	tn.mustCallTok(at.boss.token, 204, "DELETE", "/v1/policies/"+at.policy.ID, nil, nil)
	var direct json.RawMessage
	tn.mustCallTok(at.treasury.token, 200, "POST", "/v1/accounts/hot/sign-transaction", body, &direct)
	if !jsonEqualBytes(direct, signed.Result) {
		t.Fatalf("approval result differs from the sign endpoint's answer:\n%s\n%s", signed.Result, direct)
	}

	// Nobody decides in time: the sweep expires it (run here with a clock
	// 25 h ahead; nodes run it every minute) and audits the expiry.
	tn.mustCallTok(at.boss.token, 201, "POST", "/v1/policies", docPolicies(t)["large-transfers"], &at.policy)
	stale := at.request(t, txBody(strangerAddr, wei(t, "13"), 11, 1, ""))
	later := approval.New(tn.node.barrier, approval.Options{Now: func() time.Time { return time.Now().Add(25 * time.Hour) }})
	tn.node.expireApprovals(t.Context(), later)
	var exp approvalAnswer
	tn.mustCallTok(at.treasury.token, 200, "GET", "/v1/approvals/"+stale.ID, nil, &exp)
	if exp.Status != "expired" {
		t.Fatalf("after the sweep: %+v", exp)
	}
	if lines := at.sink.find(func(m map[string]any) bool {
		return field(m, "operation") == "approvals.expire" && field(m, "approval") == stale.ID && field(m, "approval_status") == "expired"
	}); len(lines) != 1 {
		t.Fatalf("expiry audit lines: %v", lines)
	}
	if _, e := at.vote(t, at.alice, "approve", stale.ID, 409); e.Error.Code != "approval_not_pending" {
		t.Fatalf("approve after expiry: %+v", e)
	}

	// Every transition is audited, naming the approval.
	for id, want := range map[string][]string{
		ap.ID:    {"pending", "approved", "signed"},
		rej.ID:   {"pending", "rejected"},
		rpcAp.ID: {"pending", "approved", "signed"},
		late.ID:  {"pending", "approved", "denied"},
	} {
		lines := at.sink.find(func(m map[string]any) bool { return field(m, "approval") == id })
		seen := map[string]bool{}
		for _, m := range lines {
			for _, st := range strings.Split(field(m, "approval_status"), ",") {
				seen[st] = true
			}
		}
		for _, s := range want {
			if !seen[s] {
				t.Errorf("approval %s: no audit line with status %s (%v)", id, s, seen)
			}
		}
	}
	// Metrics count the decisions.
	var metrics string
	if c, body := tn.raw("GET", "/v1/sys/metrics", at.root, nil); c != 200 {
		t.Fatalf("metrics: %d", c)
	} else {
		metrics = string(body)
	}
	for _, want := range []string{`moonvault_policy_decisions_total{decision="require_approval"}`, `moonvault_policy_decisions_total{decision="allow"}`, `moonvault_policy_decisions_total{decision="deny"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func jsonEqualBytes(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// mustCallTok is mustCall with a token.
func (tn *testNode) mustCallTok(tok string, want int, method, path string, body any, out any) {
	tn.t.Helper()
	var raw json.RawMessage
	if got := tn.callTok(tok, method, path, body, &raw); got != want {
		tn.t.Fatalf("%s %s: status %d, want %d: %s", method, path, got, want, raw)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			tn.t.Fatal(err)
		}
	}
}
