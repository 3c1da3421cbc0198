package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/moonvault/moonvault/internal/signpolicy"
)

// TestPolicyChangeNeedsOtherAdmins: with policy_change_approvals = 2, a
// new policy takes effect only once two admins other than its author
// approved it, and its version records who.
func TestPolicyChangeNeedsOtherAdmins(t *testing.T) {
	f := newFixture(t, newMemKV())
	ctx := context.Background()
	now := f.clock.Now()
	doc, err := signpolicy.Decode([]byte(`{"name": "no eth", "effect": "deny", "condition": "intent.chain == \"ethereum\""}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.engine.Compile(doc); err != nil {
		t.Fatal(err)
	}
	a, err := f.m.CreatePolicyChange(ctx, admin("root-admin", now), PolicyChange{Op: signpolicy.OpCreate, Document: doc}, 2)
	if err != nil || a.Kind != KindPolicyChange || a.Operation != "policy.create" || !signpolicy.ValidID(a.Change.Policy) {
		t.Fatalf("CreatePolicyChange: %+v %v", a, err)
	}
	if res, _ := f.engine.Evaluate(ctx, ethTx("alice", "1")); res.Decision != signpolicy.DecisionAllow {
		t.Fatal("a policy waiting for approval is in force")
	}
	if _, _, err := f.m.Approve(ctx, a.ID, admin("root-admin", now)); !errors.Is(err, ErrSelfApproval) {
		t.Fatalf("author approves: %v", err)
	}
	if _, _, err := f.m.Approve(ctx, a.ID, user("alice", now)); !errors.Is(err, ErrNotApprover) {
		t.Fatalf("non-admin approves: %v", err)
	}
	if l, _, _ := f.m.List(ctx, Filter{User: "ada", Status: StatusPending}); len(l) != 1 {
		t.Fatalf("an admin does not see the pending change: %+v", l)
	}
	if _, ready, err := f.m.Approve(ctx, a.ID, admin("ada", now)); err != nil || ready {
		t.Fatalf("first admin: %v ready=%v", err, ready)
	}
	_, ready, err := f.m.Approve(ctx, a.ID, admin("grace", now))
	if err != nil || !ready {
		t.Fatalf("second admin: %v ready=%v", err, ready)
	}
	applied, err := f.m.ApplyPolicyChange(ctx, a.ID, f.engine)
	if err != nil || applied.Status != StatusApplied {
		t.Fatalf("apply: %+v %v", applied, err)
	}
	var v signpolicy.Version
	if err := json.Unmarshal(applied.Result, &v); err != nil || v.ID != a.Change.Policy || v.Approval != a.ID ||
		v.By != "root-admin" || fmt.Sprint(v.ApprovedBy) != "[ada grace]" {
		t.Fatalf("result %s (%v)", applied.Result, err)
	}
	if res, _ := f.engine.Evaluate(ctx, ethTx("alice", "1")); res.Decision != signpolicy.DecisionDeny {
		t.Fatal("the approved policy is not in force")
	}
	if _, err := f.m.ApplyPolicyChange(ctx, a.ID, f.engine); !errors.Is(err, ErrWrongState) {
		t.Fatalf("apply twice: %v", err)
	}
	if ps, _ := f.engine.List(ctx); len(ps) != 1 {
		t.Fatalf("policies: %d", len(ps))
	}
}

// crashOnce applies the change, then fails as if the node died before the
// approval was marked applied.
type crashOnce struct {
	PolicyWriter
	crashed bool
}

var errCrash = errors.New("node died")

func (c *crashOnce) Update(ctx context.Context, id string, d *signpolicy.Document, by signpolicy.Actor, v int) (*signpolicy.Policy, error) {
	p, err := c.PolicyWriter.Update(ctx, id, d, by, v)
	if err == nil && !c.crashed {
		c.crashed = true
		return nil, errCrash
	}
	return p, err
}

// TestPolicyChangeApplyIsIdempotent: applying again after a crash records
// the version already written instead of writing another or failing.
func TestPolicyChangeApplyIsIdempotent(t *testing.T) {
	f := newFixture(t, newMemKV(), `{"name": "cap", "effect": "deny", "condition": "intent.value > ether(5)"}`)
	ctx := context.Background()
	ps, _ := f.engine.List(ctx)
	p := ps[0]
	d := p.Document
	d.Condition = "intent.value > ether(50)"
	a, err := f.m.CreatePolicyChange(ctx, admin("root-admin", f.clock.Now()),
		PolicyChange{Op: signpolicy.OpUpdate, Policy: p.ID, BaseVersion: p.Version, Document: &d}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, ready, err := f.m.Approve(ctx, a.ID, admin("ada", f.clock.Now())); err != nil || !ready {
		t.Fatal(ready, err)
	}
	w := &crashOnce{PolicyWriter: f.engine}
	if _, err := f.m.ApplyPolicyChange(ctx, a.ID, w); !errors.Is(err, errCrash) {
		t.Fatalf("first apply: %v", err)
	}
	got, err := f.m.ApplyPolicyChange(ctx, a.ID, w)
	if err != nil || got.Status != StatusApplied {
		t.Fatalf("second apply: %+v %v", got, err)
	}
	vs, _ := f.engine.Versions(ctx, p.ID)
	if len(vs) != 2 || vs[1].Approval != a.ID {
		t.Fatalf("versions %+v", vs)
	}
}

// TestPolicyChangeOnStaleVersion: a change approved after someone else
// changed the policy is denied, not applied over their change.
func TestPolicyChangeOnStaleVersion(t *testing.T) {
	f := newFixture(t, newMemKV(), `{"name": "cap", "effect": "deny", "condition": "intent.value > ether(5)"}`)
	ctx := context.Background()
	ps, _ := f.engine.List(ctx)
	p := ps[0]
	a, err := f.m.CreatePolicyChange(ctx, admin("mallory", f.clock.Now()),
		PolicyChange{Op: signpolicy.OpDelete, Policy: p.ID, BaseVersion: p.Version}, 1)
	if err != nil {
		t.Fatal(err)
	}
	d := p.Document
	d.Condition = "intent.value > ether(1)"
	if _, err := f.engine.Update(ctx, p.ID, &d, signpolicy.Actor{User: "ada"}, p.Version); err != nil {
		t.Fatal(err)
	}
	if _, ready, err := f.m.Approve(ctx, a.ID, admin("grace", f.clock.Now())); err != nil || !ready {
		t.Fatal(ready, err)
	}
	got, err := f.m.ApplyPolicyChange(ctx, a.ID, f.engine)
	if err != nil || got.Status != StatusDenied {
		t.Fatalf("apply: %+v %v", got, err)
	}
	if _, err := f.engine.Get(ctx, p.ID); err != nil {
		t.Fatalf("the policy was deleted: %v", err)
	}
}

func TestPolicyChangeValidation(t *testing.T) {
	m := New(newMemKV(), Options{})
	doc := &signpolicy.Document{Name: "x", Effect: signpolicy.EffectDeny, Condition: "true"}
	for _, ch := range []PolicyChange{
		{Op: "rename", Document: doc},
		{Op: signpolicy.OpCreate},
		{Op: signpolicy.OpCreate, Policy: "pol_x", Document: doc},
		{Op: signpolicy.OpUpdate, Document: doc},
		{Op: signpolicy.OpDelete, Policy: signpolicy.NewID(), Document: doc},
	} {
		if _, err := m.CreatePolicyChange(context.Background(), admin("a", m.now()), ch, 1); err == nil {
			t.Errorf("%+v accepted", ch)
		}
	}
	if _, err := m.CreatePolicyChange(context.Background(), admin("a", m.now()), PolicyChange{Op: signpolicy.OpCreate, Document: doc}, 0); err == nil {
		t.Error("n = 0 accepted")
	}
}
