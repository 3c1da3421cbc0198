package barrier

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/storage"
	"golang.org/x/sync/errgroup"
)

// TestConcurrentRotateTwoNodes: two nodes over one storage rotate the
// keyring at the same time and keep writing. Every record either wrote must
// still decrypt after a restart: no node may go on encrypting under a term
// that the stored keyring lost (issue 13, item 4).
func TestConcurrentRotateTwoNodes(t *testing.T) {
	mem := newMem()
	a, root := unsealed(t, mem, nil)
	b := join(t, mem, Options{Rand: rand.Reader}, root)

	const rounds = 20
	var g errgroup.Group
	for i, node := range []*Barrier{a, b} {
		g.Go(func() error {
			for r := range rounds {
				if _, err := node.Rotate(t.Context()); err != nil {
					return err
				}
				key := fmt.Sprintf("data/%d/%d", i, r)
				if err := node.Put(t.Context(), key, []byte(key)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	a.Seal()
	b.Seal()

	fresh := join(t, mem, Options{Rand: rand.Reader}, root)
	for i := range 2 {
		for r := range rounds {
			key := fmt.Sprintf("data/%d/%d", i, r)
			mustGet(t, fresh, key, key)
		}
	}
	if st := fresh.Status(); st.Terms != 2*rounds+1 {
		t.Fatalf("keyring has %d terms after %d rotations, want %d", st.Terms, 2*rounds, 2*rounds+1)
	}
}

// TestRollbackWrittenBack: storage replays an old keyring that lacks the
// term a node writes under; the node keeps the term and writes it back, so
// that a restart still reads what it wrote.
func TestRollbackWrittenBack(t *testing.T) {
	mem := newMem()
	b, root := unsealed(t, mem, nil)
	stale := mem.raw(t, keyringPath)
	if _, err := b.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	mustPut(t, b, "k", "under term 2")
	mem.setRaw(keyringPath, stale)
	if err := b.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	b.Seal()
	if err := b.Unseal(t.Context(), root, nil); err != nil {
		t.Fatal(err)
	}
	mustGet(t, b, "k", "under term 2")
	if st := b.Status(); st.Term != 2 || st.Terms != 2 {
		t.Fatalf("after restart: %+v", st)
	}
}

// TestMetaLivesInTheKeyring: the core's metadata is stored inside the
// root-key-encrypted keyring, survives rotation and rekey, and is changed
// with compare-and-swap.
func TestMetaLivesInTheKeyring(t *testing.T) {
	mem := newMem()
	b := New(mem, Options{Rand: rand.Reader})
	root := newRoot(t)
	extra := []storage.Op{{Key: "core/seal-config", Value: []byte("hint")}}
	if err := b.InitializeWith(t.Context(), root, nil, []byte(`{"v":1}`), extra); err != nil {
		t.Fatal(err)
	}
	if got := mem.raw(t, "core/seal-config"); string(got) != "hint" {
		t.Fatalf("extra record = %q", got)
	}
	if bytes.Contains(mem.raw(t, keyringPath), []byte(`"v"`)) {
		t.Fatal("meta stored in the clear")
	}
	if err := New(newMem(), Options{Rand: rand.Reader}).InitializeWith(t.Context(), root, nil, nil, []storage.Op{{Key: "wallet/x"}}); err == nil {
		t.Fatal("InitializeWith accepted an extra record outside core/")
	}
	if err := b.Unseal(t.Context(), root, nil); err != nil {
		t.Fatal(err)
	}
	defer b.Seal()
	if got := b.Meta(); string(got) != `{"v":1}` {
		t.Fatalf("Meta = %q", got)
	}
	if _, err := b.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	other := join(t, mem, Options{Rand: rand.Reader}, root)
	if err := other.UpdateMeta(t.Context(), func(cur []byte) ([]byte, error) {
		if string(cur) != `{"v":1}` {
			return nil, fmt.Errorf("UpdateMeta saw %q", cur)
		}
		return []byte(`{"v":2}`), nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(t.Context()); err != nil || string(b.Meta()) != `{"v":2}` {
		t.Fatalf("after reload: %q %v", b.Meta(), err)
	}
	newKey := newRoot(t)
	if err := b.RekeyMeta(t.Context(), newKey, []byte(`{"v":3}`)); err != nil {
		t.Fatal(err)
	}
	b.Seal()
	if err := b.CheckRoot(t.Context(), root, nil); !errors.Is(err, ErrWrongRootKey) {
		t.Fatalf("CheckRoot(old root) = %v", err)
	}
	if err := b.CheckRoot(t.Context(), newKey, nil); err != nil {
		t.Fatalf("CheckRoot(new root) = %v", err)
	}
	if err := b.Unseal(t.Context(), newKey, nil); err != nil || string(b.Meta()) != `{"v":3}` || b.Status().Term != 2 {
		t.Fatalf("after rekey: %q %+v %v", b.Meta(), b.Status(), err)
	}
}

// TestNonceBudget: encryptions are counted per term across nodes; at the
// threshold the keyring rotates by itself, and past the limit writes are
// refused rather than risk a repeated nonce (NIST SP 800-38D §8.3).
func TestNonceBudget(t *testing.T) {
	mem := newMem()
	budget := Budget{Block: 4, RotateAt: 40, Limit: 64}
	a, root := unsealedWith(t, mem, Options{Rand: rand.Reader, Budget: budget}, nil)
	b := join(t, mem, Options{Rand: rand.Reader, Budget: budget}, root)
	for i := range 5 {
		mustPut(t, a, fmt.Sprintf("a/%d", i), "x")
		mustPut(t, b, fmt.Sprintf("b/%d", i), "x")
	}
	// Each node used 5 and reserved 2 blocks of 4: 16 reserved in all.
	if u := b.Usage(); u.Term != 1 || u.Encryptions != 16 || u.RotateAt != 40 || u.Limit != 64 {
		t.Fatalf("usage = %+v, want 16 reserved under term 1", u)
	}
	// Keep writing on both nodes: the term rotates by itself, and writes
	// continue under the new one.
	for i := 5; i < 40; i++ {
		mustPut(t, a, fmt.Sprintf("a/%d", i), "x")
		mustPut(t, b, fmt.Sprintf("b/%d", i), "x")
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.Status().Term < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no automatic rotation: %+v %+v", a.Status(), a.Usage())
		}
		time.Sleep(5 * time.Millisecond)
	}
	mustPut(t, a, "after", "rotation")
	if a.Status().Terms > 3 {
		t.Fatalf("%d terms: both nodes rotated on their own", a.Status().Terms)
	}
	fresh := join(t, mem, Options{Rand: rand.Reader}, root)
	for i := range 40 {
		mustGet(t, fresh, fmt.Sprintf("a/%d", i), "x")
		mustGet(t, fresh, fmt.Sprintf("b/%d", i), "x")
	}
}

// TestNonceBudgetHardLimit: when rotation cannot happen (no entropy for the
// new key), writes past the limit fail closed.
func TestNonceBudgetHardLimit(t *testing.T) {
	mem := newMem()
	a, _ := unsealedWith(t, mem, Options{Rand: rand.Reader, Budget: Budget{Block: 2, RotateAt: 4, Limit: 8}}, nil)
	a.rand = failingRand{}
	var err error
	for i := 0; i < 20 && err == nil; i++ {
		err = a.Put(t.Context(), fmt.Sprintf("k/%d", i), []byte("x"))
	}
	if !errors.Is(err, ErrBudgetExhausted) {
		t.Fatalf("writes past the limit: %v, want ErrBudgetExhausted", err)
	}
	if u := a.Usage(); u.Encryptions > 8 {
		t.Fatalf("usage %+v exceeds the limit", u)
	}
}

// TestUsageRecordTampered: a usage record that fails its integrity check
// counts the term as spent (a rotation follows), never as fresh.
func TestUsageRecordTampered(t *testing.T) {
	mem := newMem()
	a, _ := unsealedWith(t, mem, Options{Rand: rand.Reader, Budget: Budget{Block: 2, RotateAt: 100, Limit: 1000}}, nil)
	mustPut(t, a, "k", "v")
	rec := mem.raw(t, usagePath)
	rec[len(rec)-1] ^= 1
	mem.setRaw(usagePath, rec)
	for i := range 4 {
		mustPut(t, a, fmt.Sprintf("k/%d", i), "v")
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.Status().Term < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("tampered usage record did not force a rotation: %+v", a.Usage())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
