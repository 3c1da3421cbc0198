package signpolicy

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moonvault/moonvault/internal/barrier/barriertest"
	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/storage/bolt"
)

// Review M2: under untrusted storage (threat T4) a policy or limit record
// can be deleted, or an older copy put back under its path (the barrier's
// path-bound AEAD accepts it: it is genuine). Evaluation must then fail
// closed, never skip a policy or forget spend.

const ethCapDoc = `{"name": "daily ETH cap", "effect": "deny", "condition": "intent.chain == \"ethereum\"", "limit": {"amount": "1000000000000000000", "window": "24h"}}`

func wantInconsistent(t *testing.T, err error, detail string) {
	t.Helper()
	var ke *errkind.Error
	if !errors.Is(err, ErrStoreInconsistent) || errkind.Of(err) != errkind.Unavailable || !errors.As(err, &ke) || ke.Code != "policy_store_inconsistent" {
		t.Fatalf("error %v, want policy_store_inconsistent (503)", err)
	}
	if !strings.Contains(err.Error(), detail) {
		t.Fatalf("error %q does not say %q", err, detail)
	}
}

// evalBoth evaluates in on a running engine and on a fresh one (a node
// that starts on the tampered storage).
func evalBoth(t *testing.T, running *Engine, kv Storage, detail string) {
	t.Helper()
	ctx := context.Background()
	err := running.Reload(ctx)
	wantInconsistent(t, err, detail)
	if _, err := running.Evaluate(ctx, ethTx(treasury, eth("5"))); err == nil {
		t.Fatal("the running engine evaluated on an inconsistent policy store")
	} else {
		wantInconsistent(t, err, detail)
	}
	if _, err := running.Authorize(ctx, ethTx(treasury, eth("5")), AuthorizeOptions{}); err == nil {
		t.Fatal("the running engine authorized on an inconsistent policy store")
	}
	fresh, err := New(kv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantInconsistent(t, fresh.Reload(ctx), detail)
	if _, err := fresh.Evaluate(ctx, ethTx(treasury, eth("5"))); err == nil {
		t.Fatal("a fresh engine evaluated on an inconsistent policy store")
	}
}

func TestPolicyHeadDeletedFailsClosed(t *testing.T) {
	kv := newMemKV()
	e := newEngine(t, kv, nil)
	p := mustCreate(t, e, ethCapDoc)
	if err := kv.Delete(context.Background(), headKey(p.ID)); err != nil {
		t.Fatal(err)
	}
	evalBoth(t, e, kv, "policy "+p.ID+" is in the policy index at version 1 but its record is missing")
	// An admin's update rolls the record forward from its history (every
	// version is kept), and evaluation resumes.
	if _, err := e.Update(context.Background(), p.ID, &p.Document, Actor{User: "admin"}, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, err := e.Evaluate(context.Background(), ethTx(treasury, eth("5")))
	if err != nil || res.Decision != DecisionDeny {
		t.Fatalf("after repair: %+v %v", res, err)
	}
}

func TestPolicyHeadReplayedFailsClosed(t *testing.T) {
	kv := newMemKV()
	e := newEngine(t, kv, nil)
	p := mustCreate(t, e, ethCapDoc)
	old, _ := kv.Get(context.Background(), headKey(p.ID))
	if err := e.Delete(context.Background(), p.ID, Actor{User: "admin"}, 0); err != nil {
		t.Fatal(err)
	}
	// The first version, put back, would bring a deleted policy back; an
	// older version of an updated one would bring back a looser rule.
	if err := kv.Put(context.Background(), headKey(p.ID), old); err != nil {
		t.Fatal(err)
	}
	evalBoth(t, e, kv, "policy "+p.ID+" is at version 1 in storage but at version 2 in the policy index")
}

func TestPolicyIndexDeletedFailsClosed(t *testing.T) {
	kv := newMemKV()
	e := newEngine(t, kv, nil)
	mustCreate(t, e, ethCapDoc)
	if err := kv.Delete(context.Background(), indexKey); err != nil {
		t.Fatal(err)
	}
	evalBoth(t, e, kv, "the policy index is missing but 1 policy records are stored")
}

// TestPolicyIndexRolledBack: the index and the heads put back together to
// an older, consistent state. A running engine has seen the newer index
// and refuses; a node that starts on it cannot tell (docs/threat-model.md,
// residual risk).
func TestPolicyIndexRolledBack(t *testing.T) {
	kv := newMemKV()
	e := newEngine(t, kv, nil)
	ctx := context.Background()
	mustCreate(t, e, `{"name": "no bitcoin", "effect": "deny", "condition": "intent.chain == \"bitcoin\""}`)
	oldIndex, _ := kv.Get(ctx, indexKey) // before the cap
	p := mustCreate(t, e, ethCapDoc)
	if err := kv.Put(ctx, indexKey, oldIndex); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, headKey(p.ID)); err != nil {
		t.Fatal(err)
	}
	wantInconsistent(t, e.Reload(ctx), "the policy index went back from change 3 to change 2")
	if _, err := e.Evaluate(ctx, ethTx(treasury, eth("5"))); err == nil {
		t.Fatal("evaluated on a rolled-back policy store")
	}
	fresh := newEngine(t, kv, nil)
	if res, err := fresh.Evaluate(ctx, ethTx(treasury, eth("5"))); err != nil || res.Decision != DecisionAllow {
		t.Fatalf("a fresh node on a consistent rollback: %+v %v (the residual risk changed: update the threat model)", res, err)
	}
	// Sealing forgets what was seen (a restore is a legitimate rollback).
	e.Forget()
	if err := e.Reload(ctx); err != nil {
		t.Fatalf("after Forget: %v", err)
	}
}

// TestInterruptedWriteBeforeIndex: a change whose head moved but whose
// index update did not happen (a crash between the two) is not an
// inconsistency: the head is newer than the index, and the next change
// brings the index up to date.
func TestInterruptedWriteBeforeIndex(t *testing.T) {
	kv := &failIndexKV{memKV: newMemKV()}
	e := newEngine(t, kv, nil)
	ctx := context.Background()
	p := mustCreate(t, e, ethCapDoc)
	kv.fail = true
	if _, err := e.Update(ctx, p.ID, &Document{Name: "tighter", Effect: EffectDeny, Condition: "true"}, Actor{User: "admin"}, 0); err == nil {
		t.Fatal("the update reported success without its index")
	}
	kv.fail = false
	if err := e.Reload(ctx); err != nil {
		t.Fatalf("head ahead of the index: %v", err)
	}
	if res, _ := e.Evaluate(ctx, solTx(0)); res.Decision != DecisionDeny || res.Matched[0].Name != "tighter" {
		t.Fatalf("the head's version is enforced: %+v", res)
	}
	if _, err := e.Update(ctx, p.ID, &Document{Name: "again", Effect: EffectDeny, Condition: "true"}, Actor{User: "admin"}, 0); err != nil {
		t.Fatal(err)
	}
	raw, _ := kv.Get(ctx, indexKey)
	if !strings.Contains(string(raw), `"`+p.ID+`":3`) {
		t.Fatalf("index after the next change: %s", raw)
	}
}

// failIndexKV fails every write of the policy index when fail is set (a
// node that dies after moving a head, before the index).
type failIndexKV struct {
	*memKV
	fail bool
}

func (k *failIndexKV) Update(ctx context.Context, key string, fn func([]byte, bool) ([]byte, bool, error)) error {
	if key != indexKey || !k.fail {
		return k.memKV.Update(ctx, key, fn)
	}
	return k.memKV.Update(ctx, key, func(cur []byte, found bool) ([]byte, bool, error) {
		next, del, err := fn(cur, found)
		if err == nil {
			return nil, false, errDown
		}
		return next, del, err
	})
}

// TestLimitRecordTampered: a limit record deleted or put back older while
// the engine runs is refused (the engine remembers the last change it
// saw of each record); spend is never silently forgotten.
func TestLimitRecordTampered(t *testing.T) {
	for _, how := range []string{"deleted", "replayed"} {
		t.Run(how, func(t *testing.T) {
			kv := newMemKV()
			e := newEngine(t, kv, nil)
			ctx := context.Background()
			p := mustCreate(t, e, ethCapDoc)
			key := limitKey(p.ID, "treasury/hot")
			if res, err := e.Authorize(ctx, ethTx(treasury, eth("0.4")), AuthorizeOptions{}); err != nil || res.Decision != DecisionAllow {
				t.Fatalf("%+v %v", res, err)
			}
			before, _ := kv.Get(ctx, key)
			if res, err := e.Authorize(ctx, ethTx(treasury, eth("0.4")), AuthorizeOptions{}); err != nil || res.Decision != DecisionAllow {
				t.Fatalf("%+v %v", res, err)
			}
			if how == "deleted" {
				_ = kv.Delete(ctx, key)
			} else {
				_ = kv.Put(ctx, key, before)
			}
			for _, consume := range []bool{true, false} {
				var err error
				if consume {
					_, err = e.Authorize(ctx, ethTx(treasury, eth("0.4")), AuthorizeOptions{})
				} else {
					_, err = e.Evaluate(ctx, ethTx(treasury, eth("0.4")))
				}
				wantInconsistent(t, err, "limit record "+key)
			}
		})
	}
}

// TestReplayThroughTheBarrier: the same attacks on a real barrier over a
// bolt file: an older ciphertext of the policy's record, copied back
// under its path, decrypts (it is genuine), and the engine refuses it.
func TestReplayThroughTheBarrier(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	br, _ := barriertest.Unsealed(t, db)
	ctx := context.Background()
	e := newEngine(t, br, nil)
	p := mustCreate(t, e, ethCapDoc)
	// The barrier stores a record at its own key: the raw ciphertext.
	old, err := db.Get(ctx, headKey(p.ID))
	if err != nil {
		t.Fatal(err)
	}
	looser := p.Document
	looser.Limit = &Limit{Amount: "100000000000000000000", Window: "24h"}
	if _, err := e.Update(ctx, p.ID, &looser, Actor{User: "admin"}, 0); err != nil {
		t.Fatal(err)
	}
	tighter := p.Document
	if _, err := e.Update(ctx, p.ID, &tighter, Actor{User: "admin"}, 0); err != nil {
		t.Fatal(err)
	}
	// Version 1's ciphertext, put back under its path: the barrier opens it.
	if err := db.Put(ctx, headKey(p.ID), old); err != nil {
		t.Fatal(err)
	}
	if _, err := br.Get(ctx, headKey(p.ID)); err != nil {
		t.Fatalf("the barrier refuses the replayed record (%v): this test no longer shows a replay", err)
	}
	evalBoth(t, e, br, "is at version 1 in storage but at version 3 in the policy index")
}
