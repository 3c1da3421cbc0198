package barrier

import (
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/storage"
)

// holdingBackend holds the first write of one key until released, and
// logs every write that lands (and, from the test, when Seal returned).
type holdingBackend struct {
	*memBackend
	key     string
	entered chan struct{}
	release chan struct{}
	once    sync.Once

	mu  sync.Mutex
	log []string
}

func newHolding(key string) *holdingBackend {
	return &holdingBackend{memBackend: newMem(), key: key, entered: make(chan struct{}), release: make(chan struct{})}
}

func (h *holdingBackend) hold(key string) {
	if key == h.key {
		h.once.Do(func() {
			close(h.entered)
			<-h.release
		})
	}
}

func (h *holdingBackend) event(e string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.log = append(h.log, e)
}

func (h *holdingBackend) events() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.log)
}

func (h *holdingBackend) Put(ctx context.Context, k string, v []byte) error {
	h.hold(k)
	err := h.memBackend.Put(ctx, k, v)
	h.event("write " + k)
	return err
}

func (h *holdingBackend) Delete(ctx context.Context, k string) error {
	h.hold(k)
	err := h.memBackend.Delete(ctx, k)
	h.event("write " + k)
	return err
}

func (h *holdingBackend) Batch(ctx context.Context, ops []storage.Op) error {
	for _, op := range ops {
		h.hold(op.Key)
	}
	err := h.memBackend.Batch(ctx, ops)
	for _, op := range ops {
		h.event("write " + op.Key)
	}
	return err
}

func (h *holdingBackend) CompareAndSwap(ctx context.Context, k string, old, next []byte) error {
	h.hold(k)
	err := h.memBackend.CompareAndSwap(ctx, k, old, next)
	h.event("write " + k)
	return err
}

func (h *holdingBackend) Update(ctx context.Context, k string, fn storage.UpdateFunc) error {
	return storage.Update(ctx, h, k, fn)
}

// TestSealWaitsForWritesInFlight: a write in flight when Seal is called
// (a record, or the encryption count it reserves first) lands before Seal
// returns; once Seal has returned the barrier writes nothing, so that the
// storage can be copied, restored or handed over without a late write
// landing under a keyring that is gone.
func TestSealWaitsForWritesInFlight(t *testing.T) {
	for _, tc := range []struct {
		name, hold string
		write      func(ctx context.Context, b *Barrier) error
	}{
		{"put", "k", func(ctx context.Context, b *Barrier) error { return b.Put(ctx, "k", []byte("v")) }},
		{"delete", "old", func(ctx context.Context, b *Barrier) error { return b.Delete(ctx, "old") }},
		{"batch", "k", func(ctx context.Context, b *Barrier) error {
			return b.Batch(ctx, []storage.Op{{Key: "k", Value: []byte("v")}, {Key: "j", Value: []byte("w")}})
		}},
		{"update", "old", func(ctx context.Context, b *Barrier) error {
			return b.Update(ctx, "old", func([]byte, bool) ([]byte, bool, error) { return []byte("new"), false, nil })
		}},
		// Every write reserves its encryption first (Block 1): held there,
		// the reservation and then the record land before Seal returns.
		{"reservation", usagePath, func(ctx context.Context, b *Barrier) error { return b.Put(ctx, "k", []byte("v")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			hb := newHolding("")
			b := New(hb, Options{Rand: rand.Reader, Budget: Budget{Block: 1, RotateAt: 1 << 20, Limit: 1 << 21}})
			root := newRoot(t)
			if err := b.Initialize(ctx, root, nil); err != nil {
				t.Fatal(err)
			}
			if err := b.Unseal(ctx, root, nil); err != nil {
				t.Fatal(err)
			}
			defer b.Seal()
			mustPut(t, b, "old", "v")
			hb.key = tc.hold
			hb.mu.Lock()
			hb.log = nil
			hb.mu.Unlock()

			done := make(chan error, 1)
			go func() { done <- tc.write(ctx, b) }()
			<-hb.entered
			sealed := make(chan struct{})
			go func() {
				b.Seal()
				hb.event("sealed")
				close(sealed)
			}()
			// Give a Seal that does not wait the chance to return first. The
			// wait only decides when the write goes on; nothing is
			// asserted on time.
			select {
			case <-sealed:
			case <-time.After(200 * time.Millisecond):
			}
			close(hb.release)
			if err := <-done; err != nil {
				t.Fatalf("the write in flight: %v", err)
			}
			<-sealed
			got := hb.events()
			if !slices.Contains(got, "write "+tc.hold) || slices.Index(got, "sealed") != len(got)-1 {
				t.Fatalf("events %q: the barrier wrote after Seal returned", got)
			}
			// Sealed, it writes nothing.
			if err := b.Put(ctx, "later", []byte("x")); !errors.Is(err, ErrSealed) {
				t.Fatalf("Put after Seal: %v", err)
			}
			if after := hb.events(); len(after) != len(got) {
				t.Fatalf("events after Seal: %q", after[len(got):])
			}
		})
	}
}

// TestLostTermWrittenBackBySubscription: the cause of TestUnknownTerm's
// old flake, made deterministic. A node that watches storage (a
// storage.Subscriber backend) and sees the keyring replaced by one lacking
// a term it holds writes the term back by itself, from its watcher: that
// is the design (what it encrypted stays readable), so a test that wants
// storage to lose a term must seal the node first.
func TestLostTermWrittenBackBySubscription(t *testing.T) {
	mem := newSubMem()
	b, root := unsealed(t, mem, nil)
	mustPut(t, b, "old", "v1")
	if _, err := b.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	kr := b.ring.Load()
	only2 := &keyring{active: 2, terms: map[uint32]*term{2: kr.terms[2]}}
	blob, err := encodeKeyring(t.Context(), root, nil, only2)
	if err != nil {
		t.Fatal(err)
	}
	mem.setRaw(keyringPath, blob)
	deadline := time.Now().Add(10 * time.Second) // bounds a hang; nothing is asserted on time
	for {
		stored, err := openKeyring(t.Context(), root, nil, mem.raw(t, keyringPath))
		if err != nil {
			t.Fatal(err)
		}
		if stored.terms[1] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watching node never wrote back term 1")
		}
		time.Sleep(2 * time.Millisecond)
	}
	b.Seal()
	if err := b.Unseal(t.Context(), root, nil); err != nil {
		t.Fatal(err)
	}
	mustGet(t, b, "old", "v1")
}
