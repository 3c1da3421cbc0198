package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/fakeclock"
	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/signpolicy"
)

const largeTransfers = `{"name": "over 10 ETH: 2 of 3", "effect": "require_approval",
	"condition": "intent.chain == \"ethereum\" && intent.value > ether(10)",
	"approvals": {"threshold": 2, "approvers": ["alice", "bob", "carol"]}}`

func ethTx(owner string, wei string) *intent.Intent {
	v, _ := new(big.Int).SetString(wei, 10)
	return &intent.Intent{Chain: intent.ChainEthereum, Network: "mainnet", Kind: intent.KindTransaction,
		Account: owner + "/hot", Owner: owner, Principal: owner, AMR: []string{"pwd"},
		ChainID: big.NewInt(1), To: "0x9999999999999999999999999999999999999999", Value: v, Decoded: true}
}

type fixture struct {
	clock  *fakeclock.Clock
	engine *signpolicy.Engine
	m      *Manager
	dir    *fakeDir
	kv     Storage
}

func newFixture(t *testing.T, kv Storage, policies ...string) *fixture {
	t.Helper()
	c := newClock()
	e, err := signpolicy.New(kv, signpolicy.Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range policies {
		d, err := signpolicy.Decode([]byte(p))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Create(context.Background(), d, signpolicy.Actor{User: "root"}); err != nil {
			t.Fatal(err)
		}
	}
	dir := newFakeDir()
	return &fixture{clock: c, engine: e, m: New(kv, Options{Now: c.Now, Directory: dir}), dir: dir, kv: kv}
}

// request runs the policy decision for in and, as the sign path will,
// turns a require_approval into a pending approval.
func (f *fixture) request(t *testing.T, requester *identity.Principal, in *intent.Intent) *Approval {
	t.Helper()
	res, err := f.engine.Authorize(context.Background(), in, signpolicy.AuthorizeOptions{})
	if err != nil || res.Decision != signpolicy.DecisionRequireApproval {
		t.Fatalf("decision %+v, %v; want require_approval", res, err)
	}
	a, err := f.m.CreateSign(context.Background(), SignRequest{Requester: requester, Account: in.Account,
		Operation: "sign-transaction", Request: []byte(`{"transaction": {"to": "marker-7f3a"}}`), Intent: in,
		Matched: res.RequiredApprovals()})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestSignApprovalFlow walks one request through every rule of approving,
// then re-authorizes it at the threshold and records the signature.
func TestSignApprovalFlow(t *testing.T) {
	f := newFixture(t, newMemKV(), largeTransfers)
	ctx := context.Background()
	in := ethTx("alice", "20000000000000000000")
	a := f.request(t, user("alice", f.clock.Now()), in)
	if a.Status != StatusPending || a.Requester != "alice" || len(a.Requirements) != 1 ||
		a.Requirements[0].Threshold != 2 || a.ExpiresAt.Sub(a.CreatedAt) != 24*time.Hour || a.Intent.Value != "20000000000000000000" {
		t.Fatalf("new approval %+v", a)
	}
	f.clock.Advance(time.Minute)
	now := f.clock.Now()
	stale := user("carol", now.Add(-11*time.Minute))
	noOTP := user("carol", now)
	noOTP.AMR = []string{"pwd"}
	for _, tc := range []struct {
		name string
		p    *identity.Principal
		want error
	}{
		{"requester", user("alice", now), ErrSelfApproval},
		{"not listed", user("dave", now), ErrNotApprover},
		{"an admin, not listed", admin("ada", now), ErrNotApprover},
		{"listed, no otp", noOTP, ErrMFARequired},
		{"listed, otp 11 minutes ago", stale, ErrMFARequired},
		{"api key of an approver", apiKey("bob"), ErrNotApprover},
		{"root token", &identity.Principal{Subject: "root", Role: identity.RoleAdmin, AMR: []string{"root"}, AuthTime: now}, ErrMFARequired},
	} {
		if _, ready, err := f.m.Approve(ctx, a.ID, tc.p); !errors.Is(err, tc.want) || ready {
			t.Errorf("%s: Approve = %v (ready %v), want %v", tc.name, err, ready, tc.want)
		}
		if errkind.Of(tc.want) != errkind.Denied {
			t.Fatalf("%v is not of kind denied", tc.want)
		}
	}
	got, ready, err := f.m.Approve(ctx, a.ID, user("bob", now.Add(-9*time.Minute)))
	if err != nil || ready || got.Status != StatusPending || len(got.Approvals) != 1 {
		t.Fatalf("bob: %+v ready=%v %v", got, ready, err)
	}
	if _, _, err := f.m.Approve(ctx, a.ID, user("bob", now)); !errors.Is(err, ErrAlreadyVoted) {
		t.Fatalf("bob twice: %v", err)
	}
	got, ready, err = f.m.Approve(ctx, a.ID, user("carol", now))
	if err != nil || !ready || got.Status != StatusApproved {
		t.Fatalf("carol: %+v ready=%v %v", got, ready, err)
	}
	if _, _, err := f.m.Approve(ctx, a.ID, user("alice", now)); !errors.Is(err, ErrSelfApproval) {
		t.Fatalf("requester after approval: %v", err)
	}
	if _, err := f.m.Reject(ctx, a.ID, user("bob", now)); !errors.Is(err, ErrNotPending) {
		t.Fatalf("reject after approval: %v", err)
	}

	// At the threshold: re-check deny policies and limits, then sign.
	back, err := got.Intent.Intent()
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.engine.Authorize(ctx, back, signpolicy.AuthorizeOptions{Approved: got.PolicyIDs()})
	if err != nil || res.Decision != signpolicy.DecisionAllow || len(res.Matched) != 1 || !res.Matched[0].Approved {
		t.Fatalf("re-authorize: %+v %v", res, err)
	}
	if string(got.Request) != `{"transaction": {"to": "marker-7f3a"}}` {
		t.Fatalf("request body not kept: %q", []byte(got.Request))
	}
	result := json.RawMessage(`{"signature":"0xabc","transaction":"0x02f8"}`)
	signed, err := f.m.MarkSigned(ctx, a.ID, result)
	if err != nil || signed.Status != StatusSigned || string(signed.Result) != string(result) {
		t.Fatalf("MarkSigned: %+v %v", signed, err)
	}
	if _, err := f.m.MarkSigned(ctx, a.ID, result); !errors.Is(err, ErrWrongState) {
		t.Fatalf("MarkSigned twice: %v", err)
	}
	if _, err := f.m.MarkDenied(ctx, a.ID, "x"); !errors.Is(err, ErrWrongState) {
		t.Fatalf("MarkDenied after signed: %v", err)
	}
	final, err := f.m.Get(ctx, a.ID)
	if err != nil || final.Status != StatusSigned || len(final.Approvals) != 2 {
		t.Fatalf("Get: %+v %v", final, err)
	}
	if expired, _ := f.m.Expire(ctx); len(expired) != 0 {
		t.Fatalf("Expire touched a signed approval: %+v", expired)
	}
}

// TestRequestBodyShown: the body is in the approval's JSON as the JSON it
// is (approvers see what they approve, review M4), never in its String
// or its log value; records of earlier builds (base64) still read.
func TestRequestBodyShown(t *testing.T) {
	f := newFixture(t, newMemKV(), largeTransfers)
	a := f.request(t, user("alice", f.clock.Now()), ethTx("alice", "20000000000000000000"))
	raw, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"request":{"transaction":{"to":"marker-7f3a"}}`) {
		t.Errorf("approval JSON lacks the request: %s", raw)
	}
	var sb strings.Builder
	slog.New(slog.NewTextHandler(&sb, nil)).Info("approval", "body", a.Request)
	for _, s := range []string{fmt.Sprint(a.Request), fmt.Sprintf("%#v", a.Request), sb.String()} {
		if strings.Contains(s, "marker-7f3a") {
			t.Errorf("request body printed: %s", s)
		}
	}
	if !strings.Contains(string(raw), `"status":"pending"`) || !strings.Contains(string(raw), `"value":"20000000000000000000"`) {
		t.Errorf("approval JSON: %s", raw)
	}
	var old Approval
	if err := json.Unmarshal([]byte(`{"id":"x","request":"eyJhIjoxfQ=="}`), &old); err != nil || string(old.Request) != `{"a":1}` {
		t.Errorf("a base64 body of an earlier build: %q %v", []byte(old.Request), err)
	}
}

func TestReject(t *testing.T) {
	f := newFixture(t, newMemKV(), largeTransfers)
	ctx := context.Background()
	a := f.request(t, user("alice", f.clock.Now()), ethTx("alice", "20000000000000000000"))
	if _, _, err := f.m.Approve(ctx, a.ID, user("bob", f.clock.Now())); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Reject(ctx, a.ID, user("alice", f.clock.Now())); !errors.Is(err, ErrSelfApproval) {
		t.Fatalf("requester rejects: %v", err)
	}
	got, err := f.m.Reject(ctx, a.ID, user("carol", f.clock.Now()))
	if err != nil || got.Status != StatusRejected || got.Rejection.User != "carol" {
		t.Fatalf("reject: %+v %v", got, err)
	}
	if _, _, err := f.m.Approve(ctx, a.ID, user("carol", f.clock.Now())); !errors.Is(err, ErrNotPending) {
		t.Fatalf("approve after reject: %v", err)
	}
	if l, _, _ := f.m.List(ctx, Filter{User: "alice", Status: StatusPending}); len(l) != 0 {
		t.Fatalf("rejected approval listed as pending: %+v", l)
	}
}

func TestExpiry(t *testing.T) {
	f := newFixture(t, newMemKV(), largeTransfers)
	ctx := context.Background()
	a1 := f.request(t, user("alice", f.clock.Now()), ethTx("alice", "20000000000000000000"))
	a2 := f.request(t, user("alice", f.clock.Now()), ethTx("alice", "30000000000000000000"))
	f.clock.Advance(24 * time.Hour)
	if got, _ := f.m.Get(ctx, a1.ID); got.Status != StatusExpired {
		t.Fatalf("Get after 24 h: %s", got.Status)
	}
	_, ready, err := f.m.Approve(ctx, a1.ID, user("bob", f.clock.Now()))
	if !errors.Is(err, ErrExpired) || ready {
		t.Fatalf("approve expired: %v", err)
	}
	expired, err := f.m.Expire(ctx)
	if err != nil || len(expired) != 1 || expired[0].ID != a2.ID || expired[0].Status != StatusExpired {
		t.Fatalf("Expire = %+v, %v; want only a2 (a1 was persisted by the vote)", expired, err)
	}
	if again, _ := f.m.Expire(ctx); len(again) != 0 {
		t.Fatalf("second sweep: %+v", again)
	}
}

// TestApprovedButNeverSigned: a node that died while signing leaves the
// approval approved; past expiry and a grace period the sweep expires it.
func TestApprovedButNeverSigned(t *testing.T) {
	f := newFixture(t, newMemKV(), largeTransfers)
	ctx := context.Background()
	a := f.request(t, user("alice", f.clock.Now()), ethTx("alice", "20000000000000000000"))
	for _, u := range []string{"bob", "carol"} {
		if _, _, err := f.m.Approve(ctx, a.ID, user(u, f.clock.Now())); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.Advance(24 * time.Hour)
	if exp, _ := f.m.Expire(ctx); len(exp) != 0 {
		t.Fatalf("expired within the grace period: %+v", exp)
	}
	f.clock.Advance(approvedGrace)
	exp, err := f.m.Expire(ctx)
	if err != nil || len(exp) != 1 || exp[0].Status != StatusExpired || exp[0].Reason == "" {
		t.Fatalf("Expire = %+v, %v", exp, err)
	}
	if _, err := f.m.MarkSigned(ctx, a.ID, json.RawMessage(`{}`)); !errors.Is(err, ErrWrongState) {
		t.Fatalf("MarkSigned after expiry: %v", err)
	}
}

func TestDeniedAtThreshold(t *testing.T) {
	f := newFixture(t, newMemKV(), largeTransfers,
		`{"name": "1 a day", "effect": "deny", "condition": "true", "limit": {"count": 1, "window": "24h"}}`)
	ctx := context.Background()
	a := f.request(t, user("alice", f.clock.Now()), ethTx("alice", "20000000000000000000"))
	for _, u := range []string{"bob", "carol"} {
		if _, _, err := f.m.Approve(ctx, a.ID, user(u, f.clock.Now())); err != nil {
			t.Fatal(err)
		}
	}
	// Meanwhile another request used the day's only signature.
	if r, _ := f.engine.Authorize(ctx, ethTx("alice", "1"), signpolicy.AuthorizeOptions{}); r.Decision != signpolicy.DecisionAllow {
		t.Fatalf("%+v", r)
	}
	in, _ := a.Intent.Intent()
	res, err := f.engine.Authorize(ctx, in, signpolicy.AuthorizeOptions{Approved: a.PolicyIDs()})
	if err != nil || res.Decision != signpolicy.DecisionDeny {
		t.Fatalf("re-authorize: %+v %v", res, err)
	}
	got, err := f.m.MarkDenied(ctx, a.ID, res.Denial().Reason)
	if err != nil || got.Status != StatusDenied || got.Reason != "24 h count would reach 2 signed requests, limit 1" {
		t.Fatalf("MarkDenied: %+v %v", got, err)
	}
}

// TestAPIKeyRequester: the owner of the requesting API key cannot approve
// it, and sees it.
func TestAPIKeyRequester(t *testing.T) {
	f := newFixture(t, newMemKV(), largeTransfers)
	ctx := context.Background()
	a := f.request(t, apiKey("bob"), ethTx("bob", "20000000000000000000"))
	if a.Requester != "apikey:0123456789abcdef0123456789abcdef" || a.RequesterOwner != "bob" {
		t.Fatalf("requester %q owner %q", a.Requester, a.RequesterOwner)
	}
	if _, _, err := f.m.Approve(ctx, a.ID, user("bob", f.clock.Now())); !errors.Is(err, ErrSelfApproval) {
		t.Fatalf("owner approves own key's request: %v", err)
	}
	if !a.VisibleTo(user("bob", time.Time{})) || !a.VisibleTo(apiKey("bob")) || a.VisibleTo(user("dave", time.Time{})) || !a.VisibleTo(user("carol", time.Time{})) {
		t.Fatal("visibility")
	}
	if l, _, err := f.m.List(ctx, Filter{User: "bob"}); err != nil || len(l) != 1 {
		t.Fatalf("bob's list: %+v %v", l, err)
	}
}

// TestUnsatisfiable: a requester who is one of too few approvers gets a
// clear refusal instead of an approval that can never complete.
func TestUnsatisfiable(t *testing.T) {
	f := newFixture(t, newMemKV(), `{"name": "2 of 2", "effect": "require_approval", "condition": "true",
		"approvals": {"threshold": 2, "approvers": ["alice", "bob"]}}`)
	res, err := f.engine.Evaluate(context.Background(), ethTx("alice", "1"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.m.CreateSign(context.Background(), SignRequest{Requester: user("alice", time.Time{}), Operation: "sign-transaction",
		Intent: ethTx("alice", "1"), Matched: res.RequiredApprovals()})
	if !errors.Is(err, ErrUnsatisfiable) || errkind.Of(err) != errkind.Denied || errkind.CodeOf(err) != "policy_denied" {
		t.Fatalf("CreateSign = %v", err)
	}
}

// TestEveryRequirementMustBeMet: a request matching two require_approval
// policies needs each threshold from each policy's approvers.
func TestEveryRequirementMustBeMet(t *testing.T) {
	f := newFixture(t, newMemKV(), largeTransfers, `{"name": "security", "effect": "require_approval",
		"condition": "intent.value > ether(15)", "approvals": {"threshold": 1, "approvers": ["sec1", "sec2"]}}`)
	ctx := context.Background()
	a := f.request(t, user("alice", f.clock.Now()), ethTx("alice", "20000000000000000000"))
	if len(a.Requirements) != 2 || len(a.PolicyIDs()) != 2 {
		t.Fatalf("requirements %+v", a.Requirements)
	}
	for _, u := range []string{"bob", "carol"} {
		if _, ready, err := f.m.Approve(ctx, a.ID, user(u, f.clock.Now())); err != nil || ready {
			t.Fatalf("%s: ready=%v %v", u, ready, err)
		}
	}
	if _, ready, err := f.m.Approve(ctx, a.ID, user("sec2", f.clock.Now())); err != nil || !ready {
		t.Fatalf("sec2: ready=%v %v", ready, err)
	}
}

func TestList(t *testing.T) {
	f := newFixture(t, newMemKV(), largeTransfers)
	ctx := context.Background()
	var ids []string
	for i := range 3 {
		a := f.request(t, user("alice", f.clock.Now()), ethTx("alice", fmt.Sprint(11+i, "000000000000000000")))
		ids = append(ids, a.ID)
		f.clock.Advance(time.Second)
	}
	b := f.request(t, user("bob", f.clock.Now()), ethTx("bob", "50000000000000000000"))
	if _, err := f.m.Reject(ctx, ids[0], user("bob", f.clock.Now())); err != nil {
		t.Fatal(err)
	}
	list := func(fl Filter) ([]string, string) {
		t.Helper()
		l, next, err := f.m.List(ctx, fl)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range l {
			out = append(out, a.ID)
		}
		return out, next
	}
	for _, tc := range []struct {
		name string
		f    Filter
		want []string
		next string
	}{
		{"alice's, newest first", Filter{User: "alice"}, []string{b.ID, ids[2], ids[1], ids[0]}, ""},
		{"alice's pending", Filter{User: "alice", Status: StatusPending}, []string{b.ID, ids[2], ids[1]}, ""},
		{"carol may approve", Filter{User: "carol"}, []string{b.ID, ids[2], ids[1], ids[0]}, ""},
		{"carol's rejected", Filter{User: "carol", Status: StatusRejected}, []string{ids[0]}, ""},
		{"dave sees none", Filter{User: "dave"}, nil, ""},
		{"a page", Filter{User: "alice", Limit: 2}, []string{b.ID, ids[2]}, ids[2]},
		{"the next page", Filter{User: "alice", Limit: 2, After: ids[2]}, []string{ids[1], ids[0]}, ""},
		{"a page of pending", Filter{User: "alice", Limit: 1, After: ids[2], Status: StatusPending}, []string{ids[1]}, ids[1]},
		{"past the end", Filter{User: "alice", Limit: 1, After: ids[1], Status: StatusPending}, nil, ""},
	} {
		got, next := list(tc.f)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) || next != tc.next {
			t.Errorf("%s: %v next %q, want %v next %q", tc.name, got, next, tc.want, tc.next)
		}
	}
	if _, _, err := f.m.List(ctx, Filter{User: "alice", After: "apr_x"}); !errors.Is(err, ErrBadCursor) || errkind.Of(err) != errkind.Invalid {
		t.Errorf("a bad cursor: %v", err)
	}
	if _, err := f.m.Get(ctx, "apr_../../x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("malformed id: %v", err)
	}
}

// TestConcurrentApprovals: five approvers approve a 3-of-5 request at once
// on two nodes sharing real storage: exactly three votes count and exactly
// one caller is told to sign.
func TestConcurrentApprovals(t *testing.T) {
	for _, backend := range []string{"bolt", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			na, nb := twoNodes(t, backend)
			f := newFixture(t, na, `{"name": "3 of 5", "effect": "require_approval", "condition": "true",
				"approvals": {"threshold": 3, "approvers": ["u1", "u2", "u3", "u4", "u5"]}}`)
			ms := []*Manager{f.m, New(nb, Options{Now: f.clock.Now})}
			a := f.request(t, user("alice", f.clock.Now()), ethTx("alice", "1"))
			var ready, ok, late atomic.Int32
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range 5 {
				wg.Go(func() {
					<-start
					_, r, err := ms[i%2].Approve(context.Background(), a.ID, user(fmt.Sprint("u", i+1), f.clock.Now()))
					switch {
					case err == nil:
						ok.Add(1)
						if r {
							ready.Add(1)
						}
					case errors.Is(err, ErrNotPending):
						late.Add(1)
					default:
						t.Error(err)
					}
				})
			}
			close(start)
			wg.Wait()
			got, err := ms[1].Get(context.Background(), a.ID)
			if err != nil {
				t.Fatal(err)
			}
			if ready.Load() != 1 || ok.Load() != 3 || late.Load() != 2 || len(got.Approvals) != 3 || got.Status != StatusApproved {
				t.Fatalf("ready=%d ok=%d late=%d votes=%d status=%s", ready.Load(), ok.Load(), late.Load(), len(got.Approvals), got.Status)
			}
		})
	}
}
