package server

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/signpolicy"
)

// Who guards the guards (review H1): with policy_change_approvals = N, one
// admin cannot defeat the quorum by making users. Every test here runs
// over real HTTPS with real TOTP codes.

// quorumTest is a vault with policy_change_approvals = 2, three admins
// with TOTP (boss, ann, ben: created by the root token, which stands for
// the quorum of unseal shares) and a user treasury with an account.
type quorumTest struct {
	tn             *testNode
	root           string
	boss, ann, ben *mfaUser
	treasury       *mfaUser
}

func newQuorumTest(t *testing.T, n int64) *quorumTest {
	t.Helper()
	qt := &quorumTest{}
	qt.tn = startNode(t, t.TempDir(), nodeOpts{mutate: func(c *config.Server) { c.PolicyChangeApprovals = n }})
	qt.root = initShamir(t, qt.tn)
	qt.boss = enrolledUser(t, qt.tn, qt.root, "boss", "admin")
	qt.ann = enrolledUser(t, qt.tn, qt.root, "ann", "admin")
	qt.ben = enrolledUser(t, qt.tn, qt.root, "ben", "admin")
	qt.treasury = enrolledUser(t, qt.tn, qt.root, "treasury", "user")
	qt.tn.mustCallTok(qt.treasury.token, 201, "POST", "/v1/accounts", map[string]string{"name": "hot"}, nil)
	return qt
}

// fieldErr is an error answer with its field.
type fieldErr struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
}

// held expects a 202 and returns its approval.
func (qt *quorumTest) held(t *testing.T, tok, method, path string, body any) approvalAnswer {
	t.Helper()
	var out struct {
		Approval approvalAnswer `json:"approval"`
	}
	qt.tn.mustCallTok(tok, 202, method, path, body, &out)
	if out.Approval.ID == "" || out.Approval.Status != "pending" {
		t.Fatalf("%s %s: held as %+v", method, path, out.Approval)
	}
	return out.Approval
}

func (qt *quorumTest) approve(t *testing.T, u *mfaUser, id string, want int) (approvalAnswer, fieldErr) {
	t.Helper()
	var raw json.RawMessage
	c := qt.tn.callTok(u.token, "POST", "/v1/approvals/"+id+"/approve", nil, &raw)
	if c != want {
		t.Fatalf("approve %s by %s: %d %s, want %d", id, u.name, c, raw, want)
	}
	var ap approvalAnswer
	var e fieldErr
	if c == 200 {
		_ = json.Unmarshal(raw, &ap)
	} else {
		_ = json.Unmarshal(raw, &e)
	}
	return ap, e
}

// userNames lists the users as root sees them.
func (qt *quorumTest) userNames(t *testing.T) []string {
	t.Helper()
	var list struct {
		Users []struct {
			Username string `json:"username"`
			Role     string `json:"role"`
		} `json:"users"`
	}
	qt.tn.mustCallTok(qt.root, 200, "GET", "/v1/users", nil, &list)
	var out []string
	for _, u := range list.Users {
		out = append(out, u.Username+":"+u.Role)
	}
	return out
}

// enrolNamed logs in as an existing user with a password, enrols TOTP and
// logs in again with a code.
func enrolNamed(t *testing.T, tn *testNode, name, pw string) *mfaUser {
	t.Helper()
	tok := login(t, tn, name, pw)
	var enr struct {
		Secret string `json:"secret"`
	}
	tn.mustCallTok(tok, 200, "POST", "/v1/auth/mfa/totp/enroll", nil, &enr)
	now := time.Now()
	code, err := totpCode(enr.Secret, now)
	if err != nil {
		t.Fatal(err)
	}
	tn.mustCallTok(tok, 200, "POST", "/v1/auth/mfa/totp/confirm", map[string]string{"code": code}, nil)
	u := &mfaUser{name: name, secret: enr.Secret}
	u.token = u.login(t, tn, now.Add(30*time.Second))
	return u
}

// capPolicy creates a daily cap through the quorum (boss asks, ann and
// ben approve) and returns its id.
func (qt *quorumTest) capPolicy(t *testing.T) string {
	t.Helper()
	ap := qt.held(t, qt.boss.token, "POST", "/v1/policies", docPolicies(t)["daily-eth-cap"])
	qt.approve(t, qt.ann, ap.ID, 200)
	done, _ := qt.approve(t, qt.ben, ap.ID, 200)
	var ver struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(done.Result, &ver); err != nil || done.Status != "applied" {
		t.Fatalf("cap: %+v", done)
	}
	return ver.ID
}

// TestSockPuppetAdminsCannotLiftACap: the attack of review H1. With one
// stolen admin session (with a fresh second factor, the worst case) the
// attacker creates admins sock1–3 to approve the deletion of a cap. Each
// creation is itself an approval that two other admins must approve, so
// no sock puppet exists; the deletion the attacker asks for waits for
// admins that existed when it was asked. An admin created later (by the
// quorum, legitimately) cannot vote on an approval older than itself.
func TestSockPuppetAdminsCannotLiftACap(t *testing.T) {
	qt := newQuorumTest(t, 2)
	tn := qt.tn
	capID := qt.capPolicy(t)

	stolen := qt.boss.token
	for _, sock := range []string{"sock1", "sock2", "sock3"} {
		ap := qt.held(t, stolen, "POST", "/v1/users", map[string]string{"username": sock, "password": policyPW, "role": "admin"})
		if ap.Kind != "user_change" || ap.Operation != "user.create" {
			t.Fatalf("creating an admin under the quorum: %+v", ap)
		}
		var e fieldErr
		if c := tn.callTok("", "POST", "/v1/auth/login", map[string]string{"username": sock, "password": policyPW}, &e); c != 401 {
			t.Fatalf("sock puppet %s logs in before any approval: %d %+v", sock, c, e)
		}
	}
	if got := qt.userNames(t); slices.ContainsFunc(got, func(s string) bool { return len(s) > 4 && s[:4] == "sock" }) {
		t.Fatalf("sock puppets exist: %v", got)
	}
	del := qt.held(t, stolen, "DELETE", "/v1/policies/"+capID, nil)

	// A legitimate new admin, made by the quorum after the deletion was
	// asked for, cannot vote on it.
	mk := qt.held(t, qt.ann.token, "POST", "/v1/users", map[string]string{"username": "cid", "password": policyPW, "role": "admin"})
	qt.approve(t, qt.boss, mk.ID, 200)
	done, _ := qt.approve(t, qt.ben, mk.ID, 200)
	if done.Status != "applied" {
		t.Fatalf("creating cid through the quorum: %+v", done)
	}
	cid := enrolNamed(t, tn, "cid", policyPW)
	if _, e := qt.approve(t, cid, del.ID, 403); e.Error.Code != "not_an_approver" {
		t.Fatalf("an admin newer than the approval votes: %+v", e)
	}
	if got, _ := qt.approve(t, qt.ann, del.ID, 200); got.Status != "pending" {
		t.Fatalf("one of two: %+v", got)
	}
	tn.mustCallTok(qt.ann.token, 200, "GET", "/v1/policies/"+capID, nil, nil)
}

// TestApproverNamesMustExist: the pre-created-approver attack. A policy
// may only name approvers that exist when it is written (names are never
// reused: a deleted user leaves a tombstone), so an admin cannot write a
// policy for a name and create that user later. For a policy written
// before this rule (put here straight into the engine), creating a user
// it names is a quorum approval like creating an admin.
func TestApproverNamesMustExist(t *testing.T) {
	qt := newQuorumTest(t, 2)
	tn := qt.tn
	doc := map[string]any{"name": "two approvers", "effect": "require_approval", "condition": "true",
		"approvals": map[string]any{"threshold": 1, "approvers": []string{"ann", "dave"}}}
	var e fieldErr
	if c := tn.callTok(qt.boss.token, "POST", "/v1/policies", doc, &e); c != 400 || e.Error.Field != "approvals.approvers[1]" || e.Error.Code != "invalid_policy" {
		t.Fatalf("a policy naming a user who does not exist: %d %+v", c, e)
	}

	// A policy from before the rule names dave.
	d, err := signpolicy.Decode([]byte(`{"name": "legacy", "effect": "require_approval", "condition": "true",
		"approvals": {"threshold": 1, "approvers": ["dave"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tn.node.Policies.Create(t.Context(), d, signpolicy.Actor{User: "boss"}); err != nil {
		t.Fatal(err)
	}
	ap := qt.held(t, qt.boss.token, "POST", "/v1/users", map[string]string{"username": "dave", "password": policyPW, "role": "user"})
	if ap.Kind != "user_change" {
		t.Fatalf("creating a named approver: %+v", ap)
	}
	if c := tn.callTok("", "POST", "/v1/auth/login", map[string]string{"username": "dave", "password": policyPW}, nil); c != 401 {
		t.Fatalf("dave exists before the quorum approved: %d", c)
	}
	// A user no policy names is created at once (with step-up).
	tn.mustCallTok(qt.boss.token, 201, "POST", "/v1/users", map[string]string{"username": "erin", "password": policyPW, "role": "user"}, nil)
}

// TestResetApproverNeedsQuorum: the reset-approver attack. An admin with
// step-up resets the password of a named approver who has no second
// factor, to log in as them, enrol TOTP and approve. Under the quorum the
// reset is an approval of its own, so the password stays. And an approver
// who had no confirmed second factor when a request was made cannot vote
// on it, even after enrolling: the eligible set is frozen at request time.
func TestResetApproverNeedsQuorum(t *testing.T) {
	qt := newQuorumTest(t, 2)
	tn := qt.tn
	createUser(t, tn, qt.root, "alice", "user") // named, no TOTP
	bob := enrolledUser(t, tn, qt.root, "bob", "user")
	carol := enrolledUser(t, tn, qt.root, "carol", "user")
	ap := qt.held(t, qt.boss.token, "POST", "/v1/policies", map[string]any{"name": "2 of 3", "effect": "require_approval",
		"condition": `intent.kind == "message"`, "approvals": map[string]any{"threshold": 2, "approvers": []string{"alice", "bob", "carol"}}})
	qt.approve(t, qt.ann, ap.ID, 200)
	qt.approve(t, qt.ben, ap.ID, 200)

	enrolledUser(t, tn, qt.root, "cy", "admin") // so that a reset of ann has two admins to approve it
	const stolenPW = "the attacker's new password"
	for _, target := range []string{"alice", "ann"} { // a named approver; an admin
		reset := qt.held(t, qt.boss.token, "POST", "/v1/users/"+target+"/password", map[string]string{"password": stolenPW})
		if reset.Kind != "user_change" || reset.Operation != "user.password_reset" {
			t.Fatalf("reset of %s: %+v", target, reset)
		}
		if c := tn.callTok("", "POST", "/v1/auth/login", map[string]string{"username": target, "password": stolenPW}, nil); c != 401 {
			t.Fatalf("the reset of %s applied without the quorum: %d", target, c)
		}
	}

	// The eligible set is frozen: alice enrols after the request.
	msg := qt.held(t, qt.treasury.token, "POST", "/v1/accounts/hot/sign-message", map[string]string{"data": "pay"})
	alice := enrolNamed(t, tn, "alice", policyPW)
	if _, e := qt.approve(t, alice, msg.ID, 403); e.Error.Code != "not_an_approver" {
		t.Fatalf("an approver without a second factor at request time votes: %+v", e)
	}
	qt.approve(t, bob, msg.ID, 200)
	if done, _ := qt.approve(t, carol, msg.ID, 200); done.Status != "signed" {
		t.Fatalf("bob and carol: %+v", done)
	}
}

// TestUserQuorumLegitimateFlows: under the quorum the legitimate flows
// still work. A password reset of an approver and the creation of an admin
// are applied when two other admins approve; disabling an admin likewise;
// the root token (made from the unseal shares) acts at once; user writes
// need step-up; a user no policy names is managed as before.
func TestUserQuorumLegitimateFlows(t *testing.T) {
	qt := newQuorumTest(t, 2)
	tn := qt.tn
	createUser(t, tn, qt.root, "alice", "user")
	ap := qt.held(t, qt.boss.token, "POST", "/v1/policies", map[string]any{"name": "alice approves", "effect": "require_approval",
		"condition": "false", "approvals": map[string]any{"threshold": 1, "approvers": []string{"alice"}}})
	qt.approve(t, qt.ann, ap.ID, 200)
	qt.approve(t, qt.ben, ap.ID, 200)

	// A reset of the approver's password, approved.
	const newPW = "alice's brand new passphrase"
	reset := qt.held(t, qt.boss.token, "POST", "/v1/users/alice/password", map[string]string{"password": newPW})
	if _, e := qt.approve(t, qt.boss, reset.ID, 403); e.Error.Code != "self_approval" {
		t.Fatalf("the requester approves: %+v", e)
	}
	qt.approve(t, qt.ann, reset.ID, 200)
	if done, _ := qt.approve(t, qt.ben, reset.ID, 200); done.Status != "applied" {
		t.Fatalf("reset approved: %+v", done)
	}
	login(t, tn, "alice", newPW)

	// An admin, approved; the password is the one given when asked (it is
	// kept hashed, never shown).
	mk := qt.held(t, qt.ann.token, "POST", "/v1/users", map[string]string{"username": "dan", "password": policyPW, "role": "admin"})
	var raw json.RawMessage
	tn.mustCallTok(qt.boss.token, 200, "GET", "/v1/approvals/"+mk.ID, nil, &raw)
	if json.Valid(raw) && (strings.Contains(string(raw), policyPW) || strings.Contains(string(raw), "argon2")) {
		t.Fatalf("the approval shows the password: %s", raw)
	}
	qt.approve(t, qt.boss, mk.ID, 200)
	qt.approve(t, qt.ben, mk.ID, 200)
	if !slices.Contains(qt.userNames(t), "dan:admin") {
		t.Fatalf("dan after approval: %v", qt.userNames(t))
	}
	login(t, tn, "dan", policyPW)

	// Disabling an admin: approved by two admins other than the requester
	// and the admin concerned.
	dis := qt.held(t, qt.boss.token, "POST", "/v1/users/dan/disable", nil)
	qt.approve(t, qt.ann, dis.ID, 200)
	qt.approve(t, qt.ben, dis.ID, 200)
	if c := tn.callTok("", "POST", "/v1/auth/login", map[string]string{"username": "dan", "password": policyPW}, nil); c != 401 {
		t.Fatalf("disabled dan logs in: %d", c)
	}

	// The root token acts at once.
	tn.mustCallTok(qt.root, 201, "POST", "/v1/users", map[string]string{"username": "eve", "password": policyPW, "role": "admin"}, nil)
	// Step-up for user writes: an admin who logged in without a code.
	eve := login(t, tn, "eve", policyPW)
	var e fieldErr
	if c := tn.callTok(eve, "POST", "/v1/users", map[string]string{"username": "fay", "password": policyPW, "role": "user"}, &e); c != 403 || e.Error.Code != "mfa_required" {
		t.Fatalf("a user write without step-up: %d %+v", c, e)
	}
	tn.mustCallTok(eve, 200, "GET", "/v1/users", nil, nil) // reading needs none
	// A user nobody names: at once, with step-up; so is a password reset.
	tn.mustCallTok(qt.boss.token, 201, "POST", "/v1/users", map[string]string{"username": "fay", "password": policyPW, "role": "user"}, nil)
	tn.mustCallTok(qt.boss.token, 204, "POST", "/v1/users/fay/password", map[string]string{"password": newPW}, nil)
	tn.mustCallTok(qt.boss.token, 204, "DELETE", "/v1/users/fay", nil, nil)

	// Too few admins besides the requester (and the admin concerned): 409.
	tn.mustCallTok(qt.root, 204, "POST", "/v1/users/ben/disable", nil, nil)
	if c := tn.callTok(qt.boss.token, "DELETE", "/v1/users/ann", nil, &e); c != 409 || e.Error.Code != "approvers_unavailable" {
		t.Fatalf("a change nobody could approve: %d %+v", c, e)
	}
}

// TestUserManagementWithoutQuorum: with policy_change_approvals = 0
// nothing changes: an admin creates admins and resets an approver's
// password at once, without a second factor for the former.
func TestUserManagementWithoutQuorum(t *testing.T) {
	tn := startNode(t, t.TempDir(), nodeOpts{})
	root := initShamir(t, tn)
	boss := enrolledUser(t, tn, root, "boss", "admin")
	ops := createUser(t, tn, root, "ops", "admin")
	createUser(t, tn, root, "alice", "user")
	tn.mustCallTok(boss.token, 201, "POST", "/v1/policies", map[string]any{"name": "alice approves", "effect": "require_approval",
		"condition": "false", "approvals": map[string]any{"threshold": 1, "approvers": []string{"alice"}}}, nil)
	tn.mustCallTok(ops, 201, "POST", "/v1/users", map[string]string{"username": "sock1", "password": policyPW, "role": "admin"}, nil)
	tn.mustCallTok(ops, 204, "POST", "/v1/users/sock1/disable", nil, nil)
	tn.mustCallTok(ops, 204, "DELETE", "/v1/users/sock1", nil, nil)
	tn.mustCallTok(boss.token, 204, "POST", "/v1/users/alice/password", map[string]string{"password": "another passphrase"}, nil)
	login(t, tn, "alice", "another passphrase")
}

// TestRestoreNeedsTheQuorum (review M1): a restore rolls back policies and
// limit totals, so with policy_change_approvals set one admin's second
// factor is not enough: it takes a root token minutes old, which
// generate-root makes only from a quorum of unseal (or recovery) shares.
func TestRestoreNeedsTheQuorum(t *testing.T) {
	tn := startNode(t, t.TempDir(), nodeOpts{mutate: func(c *config.Server) { c.PolicyChangeApprovals = 1 }})
	ir := initShamirKeys(t, tn)
	boss := enrolledUser(t, tn, ir.RootToken, "boss", "admin")
	ann := enrolledUser(t, tn, ir.RootToken, "ann", "admin")
	before := tn.snapshot(ir.RootToken)
	ap := func() approvalAnswer {
		var out struct {
			Approval approvalAnswer `json:"approval"`
		}
		tn.mustCallTok(boss.token, 202, "POST", "/v1/policies", docPolicies(t)["daily-eth-cap"], &out)
		return out.Approval
	}()
	var done approvalAnswer
	tn.mustCallTok(ann.token, 200, "POST", "/v1/approvals/"+ap.ID+"/approve", nil, &done)
	if done.Status != "applied" {
		t.Fatalf("cap: %+v", done)
	}

	var e fieldErr
	code, body := tn.restore(boss.token, before, "?force=true")
	_ = json.Unmarshal([]byte(body), &e)
	if code != 403 || e.Error.Code != "quorum_required" || !strings.Contains(e.Error.Message, "generate-root") {
		t.Fatalf("a restore by one admin with a second factor: %d %s; want 403 quorum_required", code, body)
	}
	var list struct {
		Policies []policyAnswer `json:"policies"`
	}
	tn.mustCallTok(boss.token, 200, "GET", "/v1/policies", nil, &list)
	if len(list.Policies) != 1 {
		t.Fatalf("the refused restore changed the policies: %+v", list)
	}

	var gr struct {
		RootToken string `json:"root_token"`
	}
	tn.mustCall(200, "POST", "/v1/sys/generate-root", map[string]any{"keys": ir.Keys}, &gr)
	if code, body := tn.restore(gr.RootToken, before, "?force=true"); code != 200 || !strings.Contains(body, `"rollback":true`) {
		t.Fatalf("a restore with a root token from the shares: %d %s", code, body)
	}
	if tn.call("GET", "/v1/sys/health", nil, nil) != 200 {
		unsealAll(t, tn, ir.Keys)
	}
	list.Policies = nil
	tn.mustCallTok(ir.RootToken, 200, "GET", "/v1/policies", nil, &list)
	if len(list.Policies) != 0 {
		t.Fatalf("after the rollback: %+v", list)
	}
}
