package main

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
)

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
