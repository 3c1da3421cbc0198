package server

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/moonvault/moonvault/internal/signpolicy"
)

// TestPolicyStoreTampered (review M2): a storage attacker (threat T4)
// deletes a policy's record, or puts an older genuine copy of it back,
// while the node runs on a real bolt file behind the barrier. The policy
// used to vanish from evaluation; now, at the node's next resync, every
// signing request (and the dry run) answers 503 policy_store_inconsistent
// until an admin's update rolls the record forward from its history.
func TestPolicyStoreTampered(t *testing.T) {
	tn := startNode(t, t.TempDir(), nodeOpts{})
	root := initShamir(t, tn)
	boss := enrolledUser(t, tn, root, "boss", "admin")
	alice := createUser(t, tn, root, "alice", "user")
	tn.mustCallTok(alice, 201, "POST", "/v1/accounts", map[string]string{"name": "hot"}, nil)
	var p policyAnswer
	doc := docPolicies(t)["daily-eth-cap"]
	tn.mustCallTok(boss.token, 201, "POST", "/v1/policies", doc, &p)
	tn.mustCallTok(alice, 200, "POST", "/v1/accounts/hot/sign-transaction", txBody(strangerAddr, wei(t, "0.5"), 0, 1, ""), nil)

	ctx := context.Background()
	head := signpolicy.PolicyPrefix + p.ID
	resync := func() { _ = tn.node.Policies.Changed(ctx, "") } // what the 30 s resync does
	refused := func(what string) {
		t.Helper()
		var e apiErr
		if c := tn.callTok(alice, "POST", "/v1/accounts/hot/sign-transaction", txBody(strangerAddr, wei(t, "5"), 1, 1, ""), &e); c != 503 ||
			e.Error.Code != "policy_store_inconsistent" || e.Error.Message != "the stored transaction policies are inconsistent, so signing is refused" {
			t.Fatalf("%s: sign answered %d %+v", what, c, e)
		}
		if c := tn.callTok(alice, "POST", "/v1/policies/evaluate", map[string]any{"account": "hot", "operation": "sign-message",
			"request": map[string]string{"data": "hi"}}, &e); c != 503 || e.Error.Code != "policy_store_inconsistent" {
			t.Fatalf("%s: dry run answered %d %+v", what, c, e)
		}
	}

	// Deleted.
	old, err := tn.node.store.Get(ctx, head)
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.node.store.Delete(ctx, head); err != nil {
		t.Fatal(err)
	}
	resync()
	refused("policy record deleted")
	// An admin's update rolls the record forward from its version history.
	var upd policyAnswer
	var raw json.RawMessage
	if c := tn.callTok(boss.token, "PUT", "/v1/policies/"+p.ID, doc, &raw); c != 200 {
		t.Fatalf("repair by update: %d %s", c, raw)
	}
	_ = json.Unmarshal(raw, &upd)
	if upd.Version != 2 {
		t.Fatalf("repaired policy: %s", raw)
	}
	var e deniedErr
	if c := tn.callTok(alice, "POST", "/v1/accounts/hot/sign-transaction", txBody(strangerAddr, wei(t, "5"), 1, 1, ""), &e); c != 403 || e.Error.Policy == nil || e.Error.Policy.ID != p.ID {
		t.Fatalf("after the repair the cap applies again: %d %+v", c, e)
	}

	// Replayed: version 1's ciphertext put back under its path (the barrier
	// opens it: it is genuine, only old).
	if err := tn.node.store.Put(ctx, head, old); err != nil {
		t.Fatal(err)
	}
	if _, err := tn.node.barrier.Get(ctx, head); err != nil {
		t.Fatalf("the barrier refuses the replayed record (%v): this test no longer shows a replay", err)
	}
	resync()
	refused("older policy record put back")
}
