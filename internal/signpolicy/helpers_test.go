package signpolicy

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/barrier/barriertest"
	"github.com/moonvault/moonvault/internal/fakeclock"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/inmem"
)

// memKV is the in-memory storage backend that counts reads and updates,
// so tests can assert what touched storage, and can be taken down.
type memKV struct {
	*inmem.Backend
	mu      sync.Mutex
	updates int
	gets    int
	failing bool // every call fails (storage down)
}

func newMemKV() *memKV { return &memKV{Backend: inmem.New()} }

var errDown = fmt.Errorf("memkv: %w", storage.ErrUnavailable)

// call counts a call (into n, when not nil) and says whether it fails.
func (k *memKV) call(n *int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if n != nil {
		*n++
	}
	if k.failing {
		return errDown
	}
	return nil
}

func (k *memKV) Get(ctx context.Context, key string) ([]byte, error) {
	if err := k.call(&k.gets); err != nil {
		return nil, err
	}
	return k.Backend.Get(ctx, key)
}

func (k *memKV) Put(ctx context.Context, key string, v []byte) error {
	if err := k.call(nil); err != nil {
		return err
	}
	return k.Backend.Put(ctx, key, v)
}

func (k *memKV) Delete(ctx context.Context, key string) error {
	if err := k.call(nil); err != nil {
		return err
	}
	return k.Backend.Delete(ctx, key)
}

func (k *memKV) List(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	if err := k.call(nil); err != nil {
		return nil, err
	}
	return k.Backend.List(ctx, prefix, after, limit)
}

func (k *memKV) Update(ctx context.Context, key string, fn storage.UpdateFunc) error {
	if err := k.call(&k.updates); err != nil {
		return err
	}
	return k.Backend.Update(ctx, key, fn)
}

func (k *memKV) setFailing(v bool) {
	k.mu.Lock()
	k.failing = v
	k.mu.Unlock()
}

func (k *memKV) counts() (gets, updates int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.gets, k.updates
}

func newClock() *fakeclock.Clock { return fakeclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)) }

func newEngine(t testing.TB, kv Storage, c *fakeclock.Clock) *Engine {
	t.Helper()
	opts := Options{}
	if c != nil {
		opts.Now = c.Now
	}
	e, err := New(kv, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

func mustCreate(t testing.TB, e *Engine, doc string) *Policy {
	t.Helper()
	d, err := Decode([]byte(doc))
	if err != nil {
		t.Fatalf("Decode(%s): %v", doc, err)
	}
	p, err := e.Create(context.Background(), d, Actor{User: "admin"})
	if err != nil {
		t.Fatalf("Create(%s): %v", doc, err)
	}
	return p
}

// twoNodes returns two barriers ("nodes") over one real storage backend.
func twoNodes(t testing.TB, backend string) (*barrier.Barrier, *barrier.Barrier) {
	n := barriertest.Nodes(t, backend, 2)
	return n[0], n[1]
}

func docJSON(d Document) string { return string(mustJSON(d)) }
