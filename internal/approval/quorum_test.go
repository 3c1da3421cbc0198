package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/signpolicy"
)

const twoOfFour = `{"name": "2 of 4", "effect": "require_approval", "condition": "true",
	"approvals": {"threshold": 2, "approvers": ["bob", "carol", "dave", "erin"]}}`

// TestEligibleFrozenAtRequest: who may vote is decided when the approval
// is made (review H1). A named approver who then had no second factor,
// was disabled or did not exist never votes on it, whatever changes
// later; too few eligible approvers refuse the request at once.
func TestEligibleFrozenAtRequest(t *testing.T) {
	f := newFixture(t, newMemKV(), twoOfFour)
	ctx := context.Background()
	f.dir.set(func(d *fakeDir) { d.noMFA["carol"], d.disabled["dave"], d.missing["erin"] = true, true, true })
	res, err := f.engine.Authorize(ctx, ethTx("alice", "1"), signpolicy.AuthorizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.m.CreateSign(ctx, SignRequest{Requester: user("alice", f.clock.Now()), Account: "alice/hot", Operation: "sign-transaction",
		Request: []byte(`{}`), Intent: ethTx("alice", "1"), Matched: res.RequiredApprovals()})
	if !errors.Is(err, ErrUnsatisfiable) || !strings.Contains(err.Error(), "needs 2, has 1") {
		t.Fatalf("one eligible approver of two: %v", err)
	}
	f.dir.set(func(d *fakeDir) { d.disabled["dave"] = false })
	a := f.request(t, user("alice", f.clock.Now()), ethTx("alice", "1"))
	if fmt.Sprint(a.Requirements[0].Eligible) != "[bob dave]" {
		t.Fatalf("eligible %v", a.Requirements[0].Eligible)
	}
	f.dir.set(func(d *fakeDir) { d.noMFA["carol"], d.missing["erin"] = false, false })
	for _, late := range []string{"carol", "erin"} {
		if _, _, err := f.m.Approve(ctx, a.ID, user(late, f.clock.Now())); !errors.Is(err, ErrNotApprover) {
			t.Errorf("%s, eligible only after the request, approves: %v", late, err)
		}
		if a.VisibleTo(user(late, f.clock.Now())) {
			t.Errorf("%s sees it", late)
		}
	}
	if _, err := f.m.Reject(ctx, a.ID, user("carol", f.clock.Now())); !errors.Is(err, ErrNotApprover) {
		t.Errorf("carol rejects: %v", err)
	}
	if _, ready, err := f.m.Approve(ctx, a.ID, user("bob", f.clock.Now())); err != nil || ready {
		t.Fatal(ready, err)
	}
	if _, ready, err := f.m.Approve(ctx, a.ID, user("dave", f.clock.Now())); err != nil || !ready {
		t.Fatal(ready, err)
	}
}

// TestAdminQuorumFrozen: admin approvals (policy and user changes) count
// only admins that were admins, enabled and with a second factor when the
// change was asked for; never the requester; for a user change, never the
// user concerned.
func TestAdminQuorumFrozen(t *testing.T) {
	f := newFixture(t, newMemKV())
	ctx := context.Background()
	now := f.clock.Now()
	doc := &signpolicy.Document{Name: "x", Effect: signpolicy.EffectDeny, Condition: "true"}
	a, err := f.m.CreatePolicyChange(ctx, admin("ada", now), PolicyChange{Op: signpolicy.OpCreate, Document: doc}, 2)
	if err != nil || fmt.Sprint(a.Requirements[0].Eligible) != "[a grace mallory root-admin]" {
		t.Fatalf("%+v %v", a, err)
	}
	f.dir.set(func(d *fakeDir) { d.admins["sock"] = true })
	if _, _, err := f.m.Approve(ctx, a.ID, admin("sock", now)); !errors.Is(err, ErrNotApprover) {
		t.Fatalf("an admin newer than the change approves: %v", err)
	}
	if a.VisibleTo(admin("sock", now)) {
		t.Fatal("a newer admin sees the change")
	}
	f.dir.set(func(d *fakeDir) { d.noMFA["a"], d.disabled["mallory"], d.noMFA["root-admin"] = true, true, true })
	_, err = f.m.CreateUserChange(ctx, admin("ada", now), UserChange{Op: UserDisable, Username: "grace", Why: "the user is an admin"}, nil, 2)
	if !errors.Is(err, ErrApproversUnavailable) || errkind.Of(err) != errkind.Conflict || !strings.Contains(err.Error(), "2 needed, 1 available") {
		t.Fatalf("a change about grace that only sock could approve: %v", err)
	}
}

// TestUserChange: a user change keeps its password hash out of sight, is
// applied by the quorum, denied when it can no longer be made, retried
// after a passing failure, and drops the hash once decided.
func TestUserChange(t *testing.T) {
	kv := newMemKV()
	f := newFixture(t, kv)
	ctx := context.Background()
	now := f.clock.Now()
	const hash = "$argon2id$marker-4b1d"
	ch := UserChange{Op: UserCreate, Username: "dan", Role: "admin", Why: "the user would be an admin"}
	for _, bad := range []struct {
		ch     UserChange
		secret string
	}{
		{ch, ""},
		{UserChange{Op: UserDelete, Username: "dan"}, hash},
		{UserChange{Op: "promote", Username: "dan"}, ""},
		{UserChange{Op: UserDelete}, ""},
	} {
		if _, err := f.m.CreateUserChange(ctx, admin("ada", now), bad.ch, []byte(bad.secret), 2); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	a, err := f.m.CreateUserChange(ctx, admin("ada", now), ch, []byte(hash), 2)
	if err != nil || a.Kind != KindUserChange || a.Operation != "user.create" {
		t.Fatalf("%+v %v", a, err)
	}
	shown, _ := json.Marshal(a)
	if strings.Contains(string(shown), "marker-4b1d") || !strings.Contains(string(shown), `"user_change":{"op":"create","username":"dan","role":"admin"`) {
		t.Fatalf("approval JSON: %s", shown)
	}
	for _, u := range []string{"grace", "mallory"} {
		if _, _, err := f.m.Approve(ctx, a.ID, admin(u, now)); err != nil {
			t.Fatal(err)
		}
	}
	calls := 0
	apply := func(_ context.Context, got *UserChange, secret []byte) (json.RawMessage, error) {
		calls++
		if got.Username != "dan" || string(secret) != hash {
			t.Errorf("applied %+v with %q", got, secret)
		}
		if calls == 1 {
			return nil, errkind.New(errkind.Unavailable, "", "storage down")
		}
		return json.RawMessage(`{"username":"dan"}`), nil
	}
	if _, err := f.m.ApplyUserChange(ctx, a.ID, apply); errkind.Of(err) != errkind.Unavailable {
		t.Fatalf("a passing failure: %v", err)
	}
	done, err := f.m.ApplyUserChange(ctx, a.ID, apply)
	if err != nil || done.Status != StatusApplied || string(done.Result) != `{"username":"dan"}` {
		t.Fatalf("applied: %+v %v", done, err)
	}
	for k, v := range kv.all(t) {
		if strings.Contains(string(v), "marker") || strings.Contains(k, "marker") {
			t.Errorf("the hash stays in %s after the change was applied", k)
		}
	}

	// Denied when it can no longer be made.
	b, err := f.m.CreateUserChange(ctx, admin("ada", now), UserChange{Op: UserDelete, Username: "grace", Why: "the user is an admin"}, nil, 2)
	if err != nil || strings.Contains(fmt.Sprint(b.Requirements[0].Eligible), "grace") {
		t.Fatalf("%+v %v", b, err)
	}
	for _, u := range []string{"a", "mallory"} {
		if _, _, err := f.m.Approve(ctx, b.ID, admin(u, now)); err != nil {
			t.Fatal(err)
		}
	}
	gone := func(context.Context, *UserChange, []byte) (json.RawMessage, error) {
		return nil, errkind.New(errkind.NotFound, "user_not_found", "user not found")
	}
	if got, err := f.m.ApplyUserChange(ctx, b.ID, gone); err != nil || got.Status != StatusDenied || !strings.Contains(got.Reason, "user not found") {
		t.Fatalf("denied: %+v %v", got, err)
	}
}

// TestPendingCap: a requester (a user and their API keys together) has at
// most MaxPending open approvals; a decided one frees its place.
func TestPendingCap(t *testing.T) {
	f := newFixture(t, newMemKV(), largeTransfers)
	f.m = New(f.kv, Options{Now: f.clock.Now, Directory: f.dir, MaxPending: 2})
	ctx := context.Background()
	first := f.request(t, user("alice", f.clock.Now()), ethTx("alice", "20000000000000000000"))
	f.request(t, apiKey("alice"), ethTx("alice", "20000000000000000000"))
	res, _ := f.engine.Authorize(ctx, ethTx("alice", "20000000000000000000"), signpolicy.AuthorizeOptions{})
	req := SignRequest{Requester: user("alice", f.clock.Now()), Account: "alice/hot", Operation: "sign-transaction",
		Request: []byte(`{}`), Intent: ethTx("alice", "20000000000000000000"), Matched: res.RequiredApprovals()}
	if _, err := f.m.CreateSign(ctx, req); !errors.Is(err, ErrTooManyPending) || errkind.Of(err) != errkind.RateLimited {
		t.Fatalf("a third open approval: %v", err)
	}
	f.request(t, user("bob", f.clock.Now()), ethTx("bob", "20000000000000000000")) // others are not held up
	if _, err := f.m.Reject(ctx, first.ID, user("carol", f.clock.Now())); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.CreateSign(ctx, req); err != nil {
		t.Fatalf("after one was decided: %v", err)
	}
}

// TestPrune: decided approvals go Retention after they were decided,
// record and every index entry; open ones stay.
func TestPrune(t *testing.T) {
	kv := newMemKV()
	f := newFixture(t, kv, largeTransfers)
	f.m = New(kv, Options{Now: f.clock.Now, Directory: f.dir, Retention: time.Hour})
	ctx := context.Background()
	old := f.request(t, user("alice", f.clock.Now()), ethTx("alice", "20000000000000000000"))
	open := f.request(t, user("alice", f.clock.Now()), ethTx("alice", "30000000000000000000"))
	if _, err := f.m.Reject(ctx, old.ID, user("bob", f.clock.Now())); err != nil {
		t.Fatal(err)
	}
	if n, err := f.m.Prune(ctx); err != nil || n != 0 {
		t.Fatalf("pruned within the retention: %d %v", n, err)
	}
	f.clock.Advance(time.Hour + time.Second)
	if n, err := f.m.Prune(ctx); err != nil || n != 1 {
		t.Fatalf("prune: %d %v", n, err)
	}
	if _, err := f.m.Get(ctx, old.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("pruned approval: %v", err)
	}
	k, _ := newestFirst(old.ID)
	for key := range kv.all(t) {
		if strings.Contains(key, old.ID) || strings.Contains(key, k) {
			t.Errorf("left behind: %s", key)
		}
	}
	if l, _, _ := f.m.List(ctx, Filter{User: "alice"}); len(l) != 1 || l[0].ID != open.ID {
		t.Fatalf("after pruning: %+v", l)
	}
	// An expiry is decided too, and goes a retention later.
	f.clock.Advance(DefaultTTL)
	if exp, err := f.m.Expire(ctx); err != nil || len(exp) != 1 {
		t.Fatalf("expire: %+v %v", exp, err)
	}
	f.clock.Advance(time.Hour + time.Second)
	if n, err := f.m.Prune(ctx); err != nil || n != 1 {
		t.Fatalf("prune the expired one: %d %v", n, err)
	}
}

// TestMigrate: the indexes of earlier builds are rewritten once; an
// approval made before eligible voters were frozen lists as before but
// has no voter (it expires).
func TestMigrate(t *testing.T) {
	kv := newMemKV()
	f := newFixture(t, kv)
	ctx := context.Background()
	id := "apr_" + fmt.Sprintf("%012x", f.clock.Now().UnixMilli()) + "abcdefghijklmnop"
	rec := fmt.Sprintf(`{"id":%q,"kind":"sign","status":"pending","requester":"alice","account":"alice/hot","operation":"sign-message",
		"requirements":[{"policy":"pol_x","threshold":1,"approvers":["bob"]}],"approvals":[],"created_at":%q,"expires_at":%q,"updated_at":%q,
		"request":"eyJkYXRhIjoiaGkifQ=="}`, id, f.clock.Now().Format(time.RFC3339), f.clock.Now().Add(time.Hour).Format(time.RFC3339), f.clock.Now().Format(time.RFC3339))
	for k, v := range map[string]string{recordPrefix + id: rec, oldUserPrefix + "alice/" + id: "", oldUserPrefix + "bob/" + id: "",
		oldAdminPrefix + id: "", openPrefix + id: ""} {
		if err := kv.Put(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := f.m.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for k := range kv.all(t) {
		if strings.HasPrefix(k, oldUserPrefix) || strings.HasPrefix(k, oldAdminPrefix) {
			t.Errorf("old index left: %s", k)
		}
	}
	l, _, err := f.m.List(ctx, Filter{User: "alice"})
	if err != nil || len(l) != 1 || l[0].ID != id || string(l[0].Request) != `{"data":"hi"}` {
		t.Fatalf("alice's list after migration: %+v %v", l, err)
	}
	if _, _, err := f.m.Approve(ctx, id, user("bob", f.clock.Now())); !errors.Is(err, ErrNotApprover) {
		t.Fatalf("a vote on an approval without a frozen set: %v", err)
	}
}
