package barrier

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/moonvault/moonvault/internal/seal/sealtest"
	"github.com/moonvault/moonvault/internal/sealwrap"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/inmem"
)

// memBackend is the in-memory storage backend, with raw access below the
// barrier for tamper tests.
type memBackend struct{ *inmem.Backend }

func newMem() *memBackend { return &memBackend{inmem.New()} }

// newSubMem is a backend that reports changes (storage.Subscriber).
func newSubMem() *memBackend { return newMem() }

func (m *memBackend) raw(t *testing.T, key string) []byte {
	t.Helper()
	v, err := m.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("raw get %q: %v", key, err)
	}
	return v
}

func (m *memBackend) setRaw(key string, v []byte) {
	if err := m.Put(context.Background(), key, v); err != nil {
		panic(err)
	}
}

// downBackend fails every call with storage.ErrUnavailable.
type downBackend struct{}

var errDown = fmt.Errorf("fake: connection refused: %w", storage.ErrUnavailable)

func (downBackend) Get(context.Context, string) ([]byte, error) { return nil, errDown }
func (downBackend) Put(context.Context, string, []byte) error   { return errDown }
func (downBackend) Delete(context.Context, string) error        { return errDown }
func (downBackend) Batch(context.Context, []storage.Op) error   { return errDown }
func (downBackend) Close() error                                { return nil }
func (downBackend) Update(context.Context, string, storage.UpdateFunc) error {
	return errDown
}
func (downBackend) CompareAndSwap(context.Context, string, []byte, []byte) error {
	return errDown
}
func (downBackend) List(context.Context, string, string, int) ([]string, error) {
	return nil, errDown
}

// switchable delegates to a backend until down is set.
type switchable struct {
	storage.Backend
	mu   sync.Mutex
	down bool
}

func (s *switchable) target() storage.Backend {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return downBackend{}
	}
	return s.Backend
}
func (s *switchable) Get(ctx context.Context, k string) ([]byte, error) {
	return s.target().Get(ctx, k)
}
func (s *switchable) Put(ctx context.Context, k string, v []byte) error {
	return s.target().Put(ctx, k, v)
}
func (s *switchable) Delete(ctx context.Context, k string) error { return s.target().Delete(ctx, k) }
func (s *switchable) Batch(ctx context.Context, o []storage.Op) error {
	return s.target().Batch(ctx, o)
}
func (s *switchable) List(ctx context.Context, p, a string, l int) ([]string, error) {
	return s.target().List(ctx, p, a, l)
}
func (s *switchable) CompareAndSwap(ctx context.Context, k string, o, n []byte) error {
	return s.target().CompareAndSwap(ctx, k, o, n)
}
func (s *switchable) Update(ctx context.Context, k string, fn storage.UpdateFunc) error {
	return s.target().Update(ctx, k, fn)
}

var errEntropy = errors.New("entropy unavailable: hsm down")

type failingRand struct{}

func (failingRand) Read([]byte) (int, error) { return 0, errEntropy }

// newWrapper seal-wraps under a software seal (the HSM's stand-in), with
// a key that the barrier and the storage never see.
func newWrapper(t testing.TB) Wrapper {
	return sealwrap.New(sealtest.New(t.Name()))
}

func newRoot(t testing.TB) secret.Bytes {
	k := make(secret.Bytes, 32)
	if _, err := io.ReadFull(rand.Reader, k); err != nil {
		t.Fatal(err)
	}
	return k
}

// unsealed returns an initialized, unsealed barrier over b and its root key.
func unsealed(t testing.TB, b storage.Backend, w Wrapper) (*Barrier, secret.Bytes) {
	t.Helper()
	return unsealedWith(t, b, Options{Rand: rand.Reader}, w)
}

// unsealedWith is unsealed with options (a budget, say); it seals the
// barrier when the test ends.
func unsealedWith(t testing.TB, b storage.Backend, opts Options, w Wrapper) (*Barrier, secret.Bytes) {
	t.Helper()
	br := New(b, opts)
	root := newRoot(t)
	ctx := context.Background()
	if err := br.Initialize(ctx, root, w); err != nil {
		t.Fatalf("Initialize: %v", err)
	}
	if err := br.Unseal(ctx, root, w); err != nil {
		t.Fatalf("Unseal: %v", err)
	}
	t.Cleanup(br.Seal)
	return br, root
}

// join is another node of root's vault over b, unsealed, sealed when the
// test ends.
func join(t testing.TB, b storage.Backend, opts Options, root secret.Bytes) *Barrier {
	t.Helper()
	br := New(b, opts)
	if err := br.Unseal(context.Background(), root, nil); err != nil {
		t.Fatalf("Unseal: %v", err)
	}
	t.Cleanup(br.Seal)
	return br
}

func mustPut(t testing.TB, b *Barrier, key, value string) {
	t.Helper()
	if err := b.Put(context.Background(), key, []byte(value)); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func mustGet(t testing.TB, b *Barrier, key, want string) {
	t.Helper()
	got, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if string(got) != want {
		t.Fatalf("Get(%q) = %q, want %q", key, got, want)
	}
}

// count is the number of keys stored.
func (m *memBackend) count() int {
	keys, _ := m.List(context.Background(), "", "", 0)
	return len(keys)
}
