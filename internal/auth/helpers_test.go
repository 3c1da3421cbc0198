package auth

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/entropy"
	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

// memKV is a small in-memory KV with a change feed, standing in for the
// barrier (real storage integration is tested by the lead).
type memKV struct {
	mu   sync.Mutex
	m    map[string][]byte
	subs map[int]func(string)
	next int
	puts int
	// corrupt lists keys whose records fail their integrity check, as the
	// barrier reports a tampered record.
	corrupt map[string]bool
	// getHook, when set, runs after every Get has read its value (tests
	// interleave nodes).
	getHook func(key string)
	// putHook, when set, runs before every write.
	putHook func(key string)
}

var errTestIntegrity = errkind.New(errkind.Integrity, "integrity_error", "memkv: integrity check failed")

func newMemKV() *memKV { return &memKV{m: map[string][]byte{}, subs: map[int]func(string){}} }

func (k *memKV) Get(_ context.Context, key string) ([]byte, error) {
	k.mu.Lock()
	hook := k.getHook
	k.mu.Unlock()
	if hook != nil {
		defer hook(key) // after the read: the value is already taken
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.corrupt[key] {
		return nil, fmt.Errorf("get %s: %w", key, errTestIntegrity)
	}
	v, ok := k.m[key]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", key, storage.ErrNotFound)
	}
	return bytes.Clone(v), nil
}

func (k *memKV) Put(ctx context.Context, key string, value []byte) error {
	return k.Batch(ctx, []storage.Op{{Key: key, Value: value}})
}

func (k *memKV) Delete(ctx context.Context, key string) error {
	return k.Batch(ctx, []storage.Op{{Key: key, Delete: true}})
}

func (k *memKV) List(_ context.Context, prefix, after string, limit int) ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
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

// Update is the barrier's read-modify-write: read, call fn, and write only
// if the value is unchanged; otherwise read again.
func (k *memKV) Update(ctx context.Context, key string, fn func(cur []byte, found bool) ([]byte, bool, error)) error {
	for range 100 {
		cur, err := k.Get(ctx, key)
		found := err == nil
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		next, del, err := fn(cur, found)
		if err != nil {
			return err
		}
		if del && !found {
			return nil
		}
		op := storage.Op{Key: key, Value: next, Delete: del}
		if next == nil && !del {
			op.Value = []byte{}
		}
		unchanged := func() bool {
			now, ok := k.m[key]
			return ok == found && bytes.Equal(now, cur)
		}
		if k.batch([]storage.Op{op}, unchanged) {
			return nil
		}
	}
	return fmt.Errorf("memkv: update %s: %w", key, storage.ErrConflict)
}

func (k *memKV) Batch(_ context.Context, ops []storage.Op) error {
	k.batch(ops, nil)
	return nil
}

// batch applies ops atomically if check (run under the lock) allows.
func (k *memKV) batch(ops []storage.Op, check func() bool) bool {
	k.mu.Lock()
	hook := k.putHook
	k.mu.Unlock()
	if hook != nil {
		for _, op := range ops {
			hook(op.Key)
		}
	}
	k.mu.Lock()
	if check != nil && !check() {
		k.mu.Unlock()
		return false
	}
	for _, op := range ops {
		if op.Delete {
			delete(k.m, op.Key)
		} else {
			k.m[op.Key] = bytes.Clone(op.Value)
			k.puts++
		}
	}
	subs := make([]func(string), 0, len(k.subs))
	for _, fn := range k.subs {
		subs = append(subs, fn)
	}
	k.mu.Unlock()
	for _, fn := range subs {
		for _, op := range ops {
			fn(op.Key)
		}
	}
	return true
}

func (k *memKV) Subscribe(fn func(string)) func() {
	k.mu.Lock()
	defer k.mu.Unlock()
	id := k.next
	k.next++
	k.subs[id] = fn
	return func() {
		k.mu.Lock()
		delete(k.subs, id)
		k.mu.Unlock()
	}
}

func (k *memKV) keys(prefix string) []string {
	out, _ := k.List(context.Background(), prefix, "", 0)
	return out
}

// jwtKeys lists the signing key records (not the signer record).
func (k *memKV) jwtKeys() []string {
	var out []string
	for _, key := range k.keys(prefixJWTKeys) {
		if key != jwtSignerPath {
			out = append(out, key)
		}
	}
	return out
}

func (k *memKV) putCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.puts
}

// testSealer is AES-256-GCM with the path as associated data.
type testSealer struct{ aead cipher.AEAD }

func newTestSealer(t testing.TB) *testSealer {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return &testSealer{aead: g}
}

func (s *testSealer) Wrap(_ context.Context, path string, pt []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, pt, []byte(path)), nil
}

func (s *testSealer) Unwrap(_ context.Context, path string, env []byte) (secret.Bytes, error) {
	n := s.aead.NonceSize()
	if len(env) < n {
		return nil, errors.New("short envelope")
	}
	pt, err := s.aead.Open(nil, env[:n], env[n:], []byte(path))
	return secret.Bytes(pt), err
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

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

// switchReader is an entropy source that can be made to fail.
type switchReader struct {
	mu   sync.Mutex
	fail bool
}

func (r *switchReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return 0, fmt.Errorf("hsm source: %w", entropy.ErrUnavailable)
	}
	return rand.Read(p)
}

func (r *switchReader) set(fail bool) {
	r.mu.Lock()
	r.fail = fail
	r.mu.Unlock()
}

// cheapArgon keeps tests fast; TestPasswordPHC covers the real parameters.
var cheapArgon = argonParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

type env struct {
	t      testing.TB
	kv     *memKV
	sealer *testSealer
	clock  *clock
	rand   *switchReader
	svc    *Service
}

func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	e := &env{t: t, kv: newMemKV(), sealer: newTestSealer(t), rand: &switchReader{},
		clock: &clock{t: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)}}
	e.svc = e.start(mod)
	return e
}

// start builds and starts a Service on the env's storage.
func (e *env) start(mod func(*Config)) *Service {
	e.t.Helper()
	cfg := Config{Now: e.clock.Now, ResyncInterval: time.Hour}
	if mod != nil {
		mod(&cfg)
	}
	svc, err := New(cfg, e.kv, e.sealer, e.rand, slog.New(slog.DiscardHandler))
	if err != nil {
		e.t.Fatal(err)
	}
	svc.argon = cheapArgon
	phc, err := svc.hashPassword("dummy-password-never-used")
	if err != nil {
		e.t.Fatal(err)
	}
	svc.dummyPHC = phc
	if err := svc.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(svc.Stop)
	return svc
}

const testPassword = secret.String("correct horse battery staple")

func (e *env) user(name, role string) {
	e.t.Helper()
	if _, err := e.svc.CreateUser(context.Background(), name, testPassword, role); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) login(name string) *Tokens {
	e.t.Helper()
	tok, err := e.svc.Login(context.Background(), LoginInput{Username: name, Password: testPassword, RemoteAddr: "192.0.2.1:4000", UserAgent: "test"})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) auth(tok string) (*identity.Principal, error) {
	return e.svc.Authenticate(context.Background(), tok)
}

var _ io.Reader = (*switchReader)(nil)
