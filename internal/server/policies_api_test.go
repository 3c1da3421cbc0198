package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/moonvault/moonvault/internal/audit"
	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/signpolicy"
)

// TestPolicyAPI: the policy documents' routes over HTTPS: who may write
// (admins with step-up), strict documents with errors that name the field
// or the condition's line and column, versions and If-Match, the dry run's
// rules, the JSON-RPC denial, and a request that fails after its limit
// spend was reserved gives the spend back.
func TestPolicyAPI(t *testing.T) {
	tn := startNode(t, t.TempDir(), nodeOpts{})
	root := initShamir(t, tn)
	boss := enrolledUser(t, tn, root, "boss", "admin")
	alice := createUser(t, tn, root, "alice", "user")
	bob := createUser(t, tn, root, "bob", "user")
	var hot account
	tn.mustCallTok(alice, 201, "POST", "/v1/accounts", map[string]string{"name": "hot"}, &hot)
	doc := map[string]any{"name": "cap", "effect": "deny", "condition": `intent.chain == "ethereum"`,
		"limit": map[string]string{"amount": "1000000000000000000", "window": "24h"}}

	// Who may write: not a user, not an admin without step-up, not the
	// root token (no second factor).
	var e deniedErr
	if c := tn.callTok(alice, "POST", "/v1/policies", doc, &e); c != 403 {
		t.Fatalf("user creates a policy: %d", c)
	}
	if c := tn.callTok(root, "POST", "/v1/policies", doc, &e); c != 403 || e.Error.Code != "mfa_required" {
		t.Fatalf("root token creates a policy: %d %+v", c, e)
	}
	if c := tn.callTok(alice, "GET", "/v1/policies", nil, nil); c != 403 {
		t.Fatalf("user lists policies: %d", c)
	}

	// Bad documents: 400 naming the field, or the condition's position.
	for _, tc := range []struct {
		body           string
		field, message string
	}{
		{`{"name": "x", "effect": "deny", "condition": "intent.valu > 1"}`, "condition", "line 1, column 7"},
		{`{"name": "x", "effect": "deny", "condition": "intent.value >"}`, "condition", "line 1, column"},
		{`{"name": "x", "effect": "deny", "condition": "intent.to"}`, "condition", "must be a bool"},
		{`{"name": "x", "effect": "maybe", "condition": "true"}`, "effect", ""},
		{`{"name": "x", "effect": "deny", "condition": "true", "extra": 1}`, "extra", "unknown field"},
		{`{"name": "x", "name": "y", "effect": "deny", "condition": "true"}`, "name", "duplicate"},
		{`{"name": "x", "effect": "deny", "condition": "true", "limit": {"amount": "1", "window": "1y"}}`, "limit.window", ""},
		{`{"name": "x", "effect": "require_approval", "condition": "true", "approvals": {"threshold": 3, "approvers": ["a", "b"]}}`, "approvals.threshold", ""},
	} {
		var e deniedErr
		if c := tn.callTok(boss.token, "POST", "/v1/policies", tc.body, &e); c != 400 || e.Error.Field != tc.field || !strings.Contains(e.Error.Message, tc.message) {
			t.Errorf("%s: %d %+v, want 400 on %s with %q", tc.body, c, e.Error, tc.field, tc.message)
		}
	}
	big := fmt.Sprintf(`{"name": "x", "effect": "deny", "condition": "%s"}`, strings.Repeat("true && ", 9000)+"true")
	if c := tn.callTok(boss.token, "POST", "/v1/policies", big, &e); c != 413 && c != 400 {
		t.Errorf("oversized document: %d", c)
	}

	// Create, read, list, update with If-Match, versions, delete.
	var p policyAnswer
	tn.mustCallTok(boss.token, 201, "POST", "/v1/policies", doc, &p)
	tn.mustCallTok(boss.token, 200, "GET", "/v1/policies/"+p.ID, nil, nil)
	var list struct {
		Policies []policyAnswer `json:"policies"`
	}
	tn.mustCallTok(boss.token, 200, "GET", "/v1/policies", nil, &list)
	if len(list.Policies) != 1 || list.Policies[0].ID != p.ID {
		t.Fatalf("list: %+v", list)
	}
	doc["name"] = "cap, renamed"
	req := func(method, path, ifMatch string, body any, out any) int {
		raw, _ := json.Marshal(body)
		code, resp := tn.rawHdr(method, path, boss.token, raw, map[string]string{"If-Match": ifMatch})
		if out != nil {
			_ = json.Unmarshal(resp, out)
		}
		return code
	}
	if c := req("PUT", "/v1/policies/"+p.ID, `"1"`, doc, &p); c != 200 || p.Version != 2 || p.Name != "cap, renamed" {
		t.Fatalf("update: %d %+v", c, p)
	}
	if c := req("PUT", "/v1/policies/"+p.ID, `"1"`, doc, &e); c != 409 || e.Error.Code != "policy_version_conflict" {
		t.Fatalf("stale If-Match: %d %+v", c, e)
	}
	var vs struct {
		Versions []struct {
			Version int    `json:"version"`
			Op      string `json:"op"`
			By      string `json:"by"`
		} `json:"versions"`
	}
	tn.mustCallTok(boss.token, 200, "GET", "/v1/policies/"+p.ID+"/versions", nil, &vs)
	if len(vs.Versions) != 2 || vs.Versions[1].Op != "update" || vs.Versions[1].By != "boss" {
		t.Fatalf("versions: %+v", vs)
	}
	if c := tn.callTok(boss.token, "GET", "/v1/policies/pol_nope", nil, &e); c != 404 || e.Error.Code != "policy_not_found" {
		t.Fatalf("unknown policy: %d %+v", c, e)
	}

	// The dry run: a user for the accounts it may sign with, as itself; an
	// admin for any account, as anyone. It reserves nothing.
	dry := func(tok string, body map[string]any) (int, map[string]any) {
		var out map[string]any
		c := tn.callTok(tok, "POST", "/v1/policies/evaluate", body, &out)
		return c, out
	}
	tx := txBody(strangerAddr, wei(t, "0.6"), 0, 1, "")
	c, out := dry(alice, map[string]any{"account": "hot", "operation": "sign-transaction", "request": tx})
	if c != 200 || out["decision"] != "allow" || out["intent"].(map[string]any)["value"] != "600000000000000000" ||
		out["intent"].(map[string]any)["account"] != "alice/hot" || out["intent"].(map[string]any)["principal"] != "alice" {
		t.Fatalf("dry run: %d %v", c, out)
	}
	if c, _ := dry(bob, map[string]any{"account": "alice/hot", "operation": "sign-transaction", "request": tx}); c != 404 {
		t.Fatalf("dry run on another user's account: %d", c)
	}
	if c, _ := dry(alice, map[string]any{"account": "hot", "operation": "sign-transaction", "request": tx, "principal": "apikey:x"}); c != 403 {
		t.Fatalf("user evaluates as someone else: %d", c)
	}
	if c, out := dry(boss.token, map[string]any{"account": "alice/hot", "operation": "sign-transaction",
		"request": txBody(strangerAddr, wei(t, "1.1"), 0, 1, ""), "principal": "apikey:0123", "amr": []string{"apikey"}}); c != 200 ||
		out["decision"] != "deny" || out["intent"].(map[string]any)["principal"] != "apikey:0123" || len(out["matched"].([]any)) != 1 {
		t.Fatalf("admin dry run: %d %v", c, out)
	}
	for _, bad := range []map[string]any{
		{"account": "hot", "operation": "sign-everything", "request": tx},
		{"account": "hot", "operation": "sign-transaction"},
		{"operation": "sign-transaction", "request": tx},
		{"account": "hot", "operation": "sign-transaction", "request": map[string]any{"transaction": map[string]string{"value": "0xzz"}}},
	} {
		if c, out := dry(alice, bad); c != 400 {
			t.Errorf("dry run %v: %d %v", bad, c, out)
		}
	}

	// Signing consumes the limit; JSON-RPC refusals carry the policy.
	tn.mustCallTok(alice, 200, "POST", "/v1/accounts/hot/sign-transaction", tx, nil)
	rpc := map[string]any{"jsonrpc": "2.0", "id": 1, "method": "eth_signTransaction", "params": []any{map[string]any{
		"from": hot.Address, "to": strangerAddr, "value": "0x853a0d2313c0000", "nonce": "0x1", "chainId": "0x1",
		"gas": "0x5208", "maxFeePerGas": "0x3b9aca00", "maxPriorityFeePerGas": "0x1"}}} // 0.6 ETH
	var rpcOut struct {
		Error struct {
			Code    int               `json:"code"`
			Message string            `json:"message"`
			Data    map[string]string `json:"data"`
		} `json:"error"`
	}
	tn.mustCallTok(alice, 200, "POST", "/v1/rpc", rpc, &rpcOut)
	if rpcOut.Error.Code != -32003 || rpcOut.Error.Data["code"] != "policy_denied" || rpcOut.Error.Data["policy"] != p.ID ||
		rpcOut.Error.Data["reason"] != "24 h native spend would reach 1.2 ETH, limit 1 ETH" {
		t.Fatalf("JSON-RPC denial: %+v", rpcOut)
	}

	// A request whose signing fails after the reservation gives the spend
	// back: delete the key of a fresh account behind the wallet's back.
	var cold account
	tn.mustCallTok(alice, 201, "POST", "/v1/accounts", map[string]string{"name": "cold"}, &cold)
	if err := tn.node.barrier.Delete(t.Context(), "wallet/keys/alice/cold"); err != nil {
		t.Fatal(err)
	}
	if c := tn.callTok(alice, "POST", "/v1/accounts/cold/sign-transaction", tx, nil); c < 400 {
		t.Fatalf("signing without a key: %d", c)
	}
	if c, out := dry(alice, map[string]any{"account": "cold", "operation": "sign-transaction", "request": tx}); c != 200 || out["decision"] != "allow" {
		t.Fatalf("after a failed signature the spend stays counted: %d %v", c, out)
	}

	tn.mustCallTok(boss.token, 204, "DELETE", "/v1/policies/"+p.ID, nil, nil)
	if c := tn.callTok(boss.token, "GET", "/v1/policies/"+p.ID, nil, nil); c != 404 {
		t.Fatalf("deleted policy: %d", c)
	}
	tn.mustCallTok(boss.token, 200, "GET", "/v1/policies/"+p.ID+"/versions", nil, &vs)
	if len(vs.Versions) != 3 || vs.Versions[2].Op != "delete" {
		t.Fatalf("history after delete: %+v", vs)
	}
	tn.mustCallTok(alice, 200, "POST", "/v1/accounts/hot/sign-transaction", txBody(strangerAddr, wei(t, "5"), 2, 1, ""), nil)
}

// TestPolicyCostLimitHTTP: a condition that tries to loop a million times
// is accepted (it type-checks) but stops at the cost limit on every
// request, and the deny policy then applies: it fails closed.
func TestPolicyCostLimitHTTP(t *testing.T) {
	tn := startNode(t, t.TempDir(), nodeOpts{})
	root := initShamir(t, tn)
	boss := enrolledUser(t, tn, root, "boss", "admin")
	alice := createUser(t, tn, root, "alice", "user")
	tn.mustCallTok(alice, 201, "POST", "/v1/accounts", map[string]string{"name": "hot"}, nil)
	nums := make([]string, 1000)
	for i := range nums {
		nums[i] = fmt.Sprint(i)
	}
	l := "[" + strings.Join(nums, ",") + "]"
	var p policyAnswer
	tn.mustCallTok(boss.token, 201, "POST", "/v1/policies", map[string]string{"name": "loop", "effect": "deny",
		"condition": l + ".exists(x, " + l + ".exists(y, x * y == -1))"}, &p)
	var e deniedErr
	if c := tn.callTok(alice, "POST", "/v1/accounts/hot/sign-message", map[string]string{"data": "hi"}, &e); c != 403 ||
		e.Error.Policy == nil || e.Error.Policy.ID != p.ID || !strings.Contains(e.Error.Policy.Reason, "cost limit") {
		t.Fatalf("looping condition: %d %+v", c, e)
	}
	if want := fmt.Sprint(signpolicy.MaxCost); !strings.Contains(e.Error.Policy.Reason, "could not be evaluated") {
		t.Fatalf("reason %q (limit %s)", e.Error.Policy.Reason, want)
	}
}

// TestPolicyChangeApprovals: with policy_change_approvals = 2, a policy
// change is an approval that two other admins approve with fresh MFA; the
// requester cannot; the version records the approval and its approvers.
func TestPolicyChangeApprovals(t *testing.T) {
	tn := startNode(t, t.TempDir(), nodeOpts{mutate: func(c *config.Server) { c.PolicyChangeApprovals = 2 }})
	root := initShamir(t, tn)
	boss := enrolledUser(t, tn, root, "boss", "admin")
	var e apiErr
	doc := docPolicies(t)["daily-eth-cap"]
	// Too few admins to ever approve: refused at once.
	if c := tn.callTok(boss.token, "POST", "/v1/policies", doc, &e); c != 409 || e.Error.Code != "approvers_unavailable" {
		t.Fatalf("with no other admins: %d %+v", c, e)
	}
	ann := enrolledUser(t, tn, root, "ann", "admin")
	ben := enrolledUser(t, tn, root, "ben", "admin")
	var held struct {
		Approval approvalAnswer `json:"approval"`
	}
	tn.mustCallTok(boss.token, 202, "POST", "/v1/policies", doc, &held)
	ap := held.Approval
	if ap.Kind != "policy_change" || ap.Status != "pending" || ap.Operation != "policy.create" {
		t.Fatalf("change approval: %+v", ap)
	}
	var list struct {
		Policies []policyAnswer `json:"policies"`
	}
	tn.mustCallTok(boss.token, 200, "GET", "/v1/policies", nil, &list)
	if len(list.Policies) != 0 {
		t.Fatalf("the change applied before approval: %+v", list)
	}
	vote := func(tok, id string, want int) approvalAnswer {
		var out approvalAnswer
		tn.mustCallTok(tok, want, "POST", "/v1/approvals/"+id+"/approve", nil, &out)
		return out
	}
	if c := tn.callTok(boss.token, "POST", "/v1/approvals/"+ap.ID+"/approve", nil, &e); c != 403 || e.Error.Code != "self_approval" {
		t.Fatalf("requester approves own change: %d %+v", c, e)
	}
	if got := vote(ann.token, ap.ID, 200); got.Status != "pending" {
		t.Fatalf("after one: %+v", got)
	}
	done := vote(ben.token, ap.ID, 200)
	var ver struct {
		ID         string   `json:"id"`
		Version    int      `json:"version"`
		By         string   `json:"by"`
		Approval   string   `json:"approval"`
		ApprovedBy []string `json:"approved_by"`
	}
	if err := json.Unmarshal(done.Result, &ver); err != nil || done.Status != "applied" || ver.By != "boss" || ver.Approval != ap.ID || len(ver.ApprovedBy) != 2 {
		t.Fatalf("applied: %+v %s", done, done.Result)
	}
	tn.mustCallTok(boss.token, 200, "GET", "/v1/policies", nil, &list)
	if len(list.Policies) != 1 || list.Policies[0].ID != ver.ID {
		t.Fatalf("after approval: %+v", list)
	}
	// A delete waits too; a rejection keeps the policy.
	tn.mustCallTok(ann.token, 202, "DELETE", "/v1/policies/"+ver.ID, nil, &held)
	var rej approvalAnswer
	tn.mustCallTok(ben.token, 200, "POST", "/v1/approvals/"+held.Approval.ID+"/reject", nil, &rej)
	if rej.Status != "rejected" {
		t.Fatalf("rejected delete: %+v", rej)
	}
	tn.mustCallTok(boss.token, 200, "GET", "/v1/policies/"+ver.ID, nil, nil)
}

// TestPolicyLimitReleasedWhenUnaudited: a signature whose audit line
// cannot be written is never answered, so its limit spend is given back.
func TestPolicyLimitReleasedWhenUnaudited(t *testing.T) {
	sink := &flakySink{}
	tn := startNode(t, t.TempDir(), nodeOpts{auditSinks: []audit.Sink{sink}})
	root := initShamir(t, tn)
	boss := enrolledUser(t, tn, root, "boss", "admin")
	alice := createUser(t, tn, root, "alice", "user")
	tn.mustCallTok(alice, 201, "POST", "/v1/accounts", map[string]string{"name": "hot"}, nil)
	tn.mustCallTok(boss.token, 201, "POST", "/v1/policies", map[string]any{"name": "1 ETH a day", "effect": "deny",
		"condition": "true", "limit": map[string]string{"amount": "1000000000000000000", "window": "24h"}}, nil)
	tx := txBody(strangerAddr, wei(t, "0.6"), 0, 1, "")
	sink.broken.Store(true)
	var e apiErr
	if c := tn.callTok(alice, "POST", "/v1/accounts/hot/sign-transaction", tx, &e); c != 503 || e.Error.Code != "audit_unavailable" {
		t.Fatalf("unaudited signature: %d %+v", c, e)
	}
	sink.broken.Store(false)
	var ev struct {
		Decision string `json:"decision"`
	}
	tn.mustCallTok(alice, 200, "POST", "/v1/policies/evaluate", map[string]any{"account": "hot", "operation": "sign-transaction", "request": tx}, &ev)
	if ev.Decision != "allow" {
		t.Fatalf("the unanswered signature's spend stays counted: %s", ev.Decision)
	}
	tn.mustCallTok(alice, 200, "POST", "/v1/accounts/hot/sign-transaction", tx, nil)
	tn.mustCallTok(alice, 200, "POST", "/v1/policies/evaluate", map[string]any{"account": "hot", "operation": "sign-transaction", "request": tx}, &ev)
	if ev.Decision != "deny" {
		t.Fatalf("a delivered signature's spend is counted: %s", ev.Decision)
	}
}
