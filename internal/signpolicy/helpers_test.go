package signpolicy

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/bolt"
	"github.com/moonvault/moonvault/internal/storage/postgres"
	"github.com/moonvault/moonvault/internal/storage/postgres/pgtest"
)

// memKV is an in-memory Storage: one mutex, so Update is trivially atomic.
// It counts calls, so tests can assert what touched storage.
type memKV struct {
	mu      sync.Mutex
	m       map[string][]byte
	updates int
	gets    int
	failing bool // every call fails (storage down)
}

func newMemKV() *memKV { return &memKV{m: map[string][]byte{}} }

var errDown = fmt.Errorf("memkv: %w", storage.ErrUnavailable)

func (k *memKV) Get(_ context.Context, key string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.gets++
	if k.failing {
		return nil, errDown
	}
	v, ok := k.m[key]
	if !ok {
		return nil, fmt.Errorf("memkv %q: %w", key, storage.ErrNotFound)
	}
	return bytes.Clone(v), nil
}

func (k *memKV) Put(_ context.Context, key string, v []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failing {
		return errDown
	}
	k.m[key] = bytes.Clone(v)
	return nil
}

func (k *memKV) Delete(_ context.Context, key string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failing {
		return errDown
	}
	delete(k.m, key)
	return nil
}

func (k *memKV) List(_ context.Context, prefix, after string, limit int) ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.failing {
		return nil, errDown
	}
	var out []string
	for key := range k.m {
		if strings.HasPrefix(key, prefix) && (after == "" || key > after) {
			out = append(out, key)
		}
	}
	slices.Sort(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (k *memKV) Update(_ context.Context, key string, fn func([]byte, bool) ([]byte, bool, error)) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.updates++
	if k.failing {
		return errDown
	}
	cur, found := k.m[key]
	next, del, err := fn(bytes.Clone(cur), found)
	if err != nil {
		return err
	}
	if del {
		delete(k.m, key)
		return nil
	}
	if next == nil {
		next = []byte{}
	}
	k.m[key] = bytes.Clone(next)
	return nil
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

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newEngine(t testing.TB, kv Storage, c *clock) *Engine {
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

// unsealedBarrier returns an initialised, unsealed barrier over b, and its
// root key for a second node.
func unsealedBarrier(t testing.TB, b storage.Backend) (*barrier.Barrier, secret.Bytes) {
	t.Helper()
	root := make(secret.Bytes, 32)
	if _, err := rand.Read(root); err != nil {
		t.Fatal(err)
	}
	br := barrier.New(b, barrier.Options{Rand: rand.Reader})
	if err := br.Initialize(context.Background(), root, nil); err != nil {
		t.Fatal(err)
	}
	if err := br.Unseal(context.Background(), root, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(br.Seal)
	return br, root
}

// twoNodes returns two barriers ("nodes") over one real storage backend.
func twoNodes(t testing.TB, backend string) (*barrier.Barrier, *barrier.Barrier) {
	t.Helper()
	var sa, sb storage.Backend
	switch backend {
	case "bolt":
		db, err := bolt.Open(filepath.Join(t.TempDir(), "vault.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		sa, sb = db, db
	case "postgres":
		url := pgtest.NewDatabase(t)
		for _, p := range []*storage.Backend{&sa, &sb} {
			pg, err := postgres.Open(context.Background(), url, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = pg.Close() })
			*p = pg
		}
	default:
		t.Fatalf("unknown backend %q", backend)
	}
	a, root := unsealedBarrier(t, sa)
	b := barrier.New(sb, barrier.Options{Rand: rand.Reader})
	if err := b.Unseal(context.Background(), root, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Seal)
	return a, b
}

func docJSON(d Document) string { return string(mustJSON(d)) }
