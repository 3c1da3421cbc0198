package auth

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/moonvault/moonvault/internal/entropy"
	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/fakeclock"
	"github.com/moonvault/moonvault/internal/fips"
	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/seal/sealtest"
	"github.com/moonvault/moonvault/internal/sealwrap"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/inmem"
)

// memKV is the in-memory storage backend standing in for the barrier,
// with fault injection: records that fail their integrity check, and hooks
// that interleave nodes.
type memKV struct {
	*inmem.Backend
	mu sync.Mutex // guards the fields below
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

func newMemKV() *memKV { return &memKV{Backend: inmem.New()} }

func (k *memKV) Get(ctx context.Context, key string) ([]byte, error) {
	k.mu.Lock()
	hook, bad := k.getHook, k.corrupt[key]
	k.mu.Unlock()
	if hook != nil {
		defer hook(key) // after the read: the value is already taken
	}
	if bad {
		return nil, fmt.Errorf("get %s: %w", key, errTestIntegrity)
	}
	return k.Backend.Get(ctx, key)
}

func (k *memKV) beforeWrite(keys ...string) {
	k.mu.Lock()
	hook := k.putHook
	k.mu.Unlock()
	if hook != nil {
		for _, key := range keys {
			hook(key)
		}
	}
}

func (k *memKV) Put(ctx context.Context, key string, value []byte) error {
	k.beforeWrite(key)
	return k.Backend.Put(ctx, key, value)
}

func (k *memKV) Delete(ctx context.Context, key string) error {
	k.beforeWrite(key)
	return k.Backend.Delete(ctx, key)
}

func (k *memKV) Batch(ctx context.Context, ops []storage.Op) error {
	keys := make([]string, len(ops))
	for i, op := range ops {
		keys[i] = op.Key
	}
	k.beforeWrite(keys...)
	return k.Backend.Batch(ctx, ops)
}

func (k *memKV) CompareAndSwap(ctx context.Context, key string, old, next []byte) error {
	k.beforeWrite(key)
	return k.Backend.CompareAndSwap(ctx, key, old, next)
}

// Update is the barrier's read-modify-write, through this KV's hooks.
func (k *memKV) Update(ctx context.Context, key string, fn storage.UpdateFunc) error {
	return storage.Update(ctx, k, key, fn)
}

// setRaw writes below the hooks, as a node that had the value in flight.
func (k *memKV) setRaw(key string, v []byte) {
	if err := k.Backend.Put(context.Background(), key, v); err != nil {
		panic(err)
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

func (k *memKV) putCount() int { return k.Puts() }

// newTestSealer seal-wraps under a software seal (the HSM's stand-in).
func newTestSealer(t testing.TB) *sealwrap.Sealer {
	return sealwrap.New(sealtest.New(t.Name()))
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
	sealer *sealwrap.Sealer
	clock  *fakeclock.Clock
	rand   *switchReader
	svc    *Service
}

func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	e := &env{t: t, kv: newMemKV(), sealer: newTestSealer(t), rand: &switchReader{},
		clock: fakeclock.New(time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC))}
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

// totpCode is what an authenticator app shows (HMAC-SHA-1, outside the
// FIPS boundary; see fips.Outside).
// totpLogin enrols TOTP for name and logs in with a code of the next
// step; it returns the TOTP secret, the code it used and the tokens.
func (e *env) totpLogin(name string) (sec, code string, tok *Tokens) {
	e.t.Helper()
	sec, _ = enrollTOTP(e.t, e, name)
	e.clock.Advance(30 * time.Second)
	code, err := totpCode(sec, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	tok, err = e.svc.Login(context.Background(), LoginInput{Username: name, Password: testPassword, TOTP: secret.String(code)})
	if err != nil {
		e.t.Fatal(err)
	}
	return sec, code, tok
}

func totpCode(secret string, t time.Time) (code string, err error) {
	fips.Outside(func() { code, err = totp.GenerateCode(secret, t) })
	return code, err
}
