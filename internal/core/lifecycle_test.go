package core

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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/seal"
	"github.com/moonvault/moonvault/internal/sealwrap"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/inmem"
)

// fakeSeal is an auto-seal whose key lives in memory: AES-256-GCM bound to
// the associated data, like the PKCS#11 seal, with a switch that makes it
// fail as an unreachable HSM does.
type fakeSeal struct {
	aead cipher.AEAD
	down atomic.Bool
	// failures, when positive, fails that many calls before working.
	failures atomic.Int32
	ensured  atomic.Int32
}

var errHSMDown = errors.New("fake HSM: unreachable")

func newFakeSeal(t testing.TB) *fakeSeal {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCMWithRandomNonce(b)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeSeal{aead: g}
}

func (f *fakeSeal) fail() error {
	if f.down.Load() {
		return errHSMDown
	}
	if f.failures.Add(-1) >= 0 {
		return errHSMDown
	}
	return nil
}

func (f *fakeSeal) Type() string  { return "pkcs11" }
func (f *fakeSeal) KeyID() string { return "fake:root" }
func (f *fakeSeal) EnsureKey(context.Context) (bool, error) {
	if err := f.fail(); err != nil {
		return false, err
	}
	return f.ensured.Add(1) == 1, nil
}

func (f *fakeSeal) Encrypt(_ context.Context, pt, aad []byte) ([]byte, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return f.aead.Seal(nil, nil, pt, aad), nil
}

func (f *fakeSeal) Decrypt(_ context.Context, ct, aad []byte) ([]byte, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	pt, err := f.aead.Open(nil, nil, ct, aad)
	if err != nil {
		return nil, seal.ErrDecrypt
	}
	return pt, nil
}

// hooks records what the core asked of the services.
type hooks struct {
	mu                              sync.Mutex
	unsealed, sealing, roots, migra int
	refuse                          error
}

func (h *hooks) count(p *int) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return *p
}

func (h *hooks) inc(p *int) {
	h.mu.Lock()
	*p++
	h.mu.Unlock()
}

// vault is a core over in-memory storage with a real barrier.
type vault struct {
	t     *testing.T
	store *inmem.Backend
	b     *barrier.Barrier
	c     *Core
	h     *hooks
	seal  *fakeSeal
}

// newVault builds a core over store; a non-nil fs is its auto-seal (and
// the seal-wrap of its keyring).
func newVault(t *testing.T, store *inmem.Backend, fs *fakeSeal, rnd io.Reader) *vault {
	t.Helper()
	if rnd == nil {
		rnd = rand.Reader
	}
	v := &vault{t: t, store: store, h: &hooks{}, seal: fs}
	v.b = barrier.New(store, barrier.Options{Rand: rnd})
	opts := Options{Storage: store, Barrier: v.b, Rand: rnd, Logger: slog.New(slog.DiscardHandler)}
	opts.Hooks = Hooks{
		Unsealed:  func(context.Context, *barrier.Barrier) error { v.h.inc(&v.h.unsealed); return nil },
		Sealing:   func() { v.h.inc(&v.h.sealing) },
		RootToken: func(context.Context) (string, error) { v.h.inc(&v.h.roots); return "root-token", nil },
		BeforeUnseal: func() error {
			v.h.mu.Lock()
			defer v.h.mu.Unlock()
			return v.h.refuse
		},
	}
	if fs != nil {
		opts.AutoSeal = fs
		sw := sealwrap.New(fs)
		opts.Hooks.KeyringWrapper = func() barrier.Wrapper { return sw }
		opts.Hooks.MigrateCSPs = func(ctx context.Context, b *barrier.Barrier) error {
			v.h.inc(&v.h.migra)
			return b.SetWrapper(ctx, sw)
		}
	}
	v.c = New(opts)
	return v
}

func (v *vault) status() Status {
	v.t.Helper()
	st, err := v.c.Status(v.t.Context())
	if err != nil {
		v.t.Fatal(err)
	}
	return st
}

func (v *vault) unseal(share []byte) Status {
	v.t.Helper()
	st, err := v.c.Unseal(v.t.Context(), share)
	if err != nil {
		v.t.Fatalf("unseal: %v", err)
	}
	return st
}

func (v *vault) keys() int {
	keys, err := v.store.List(context.Background(), "", "", 0)
	if err != nil {
		v.t.Fatal(err)
	}
	return len(keys)
}

func TestInitShamir(t *testing.T) {
	ctx := t.Context()
	v := newVault(t, inmem.New(), nil, nil)
	if st := v.status(); st.Initialized || !st.Sealed || st.Type != "shamir" {
		t.Fatalf("fresh status %+v", st)
	}
	for _, bad := range []InitRequest{{}, {SecretShares: 2, SecretThreshold: 3}, {SecretShares: 3, SecretThreshold: 1}, {SecretShares: 256, SecretThreshold: 2}} {
		if _, err := v.c.Init(ctx, bad); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("Init(%+v) = %v, want ErrInvalidRequest", bad, err)
		}
	}
	if v.keys() != 0 {
		t.Fatalf("refused inits wrote %d keys", v.keys())
	}
	res, err := v.c.Init(ctx, InitRequest{SecretShares: 3, SecretThreshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Keys) != 3 || res.RecoveryKeys != nil || res.RootToken != "root-token" {
		t.Fatalf("init result: %d keys, %d recovery keys, token %q", len(res.Keys), len(res.RecoveryKeys), res.RootToken)
	}
	for _, k := range res.Keys {
		if len(k) != rootKeySize+1 {
			t.Fatalf("share of %d bytes", len(k))
		}
	}
	// Shamir: sealed after init, for the operators to unseal.
	if st := v.status(); !st.Initialized || !st.Sealed || st.N != 3 || st.T != 2 || st.RecoverySeal {
		t.Fatalf("status after init %+v", st)
	}
	if v.h.count(&v.h.sealing) != 1 || v.h.count(&v.h.unsealed) != 1 {
		t.Fatalf("hooks: unsealed %d, sealing %d", v.h.unsealed, v.h.sealing)
	}
	if _, err := v.c.Init(ctx, InitRequest{SecretShares: 1, SecretThreshold: 1}); !errors.Is(err, ErrAlreadyInitialized) {
		t.Fatalf("second init: %v", err)
	}
}

func TestInitEntropyFailureWritesNothing(t *testing.T) {
	v := newVault(t, inmem.New(), nil, failingReader{})
	if _, err := v.c.Init(t.Context(), InitRequest{SecretShares: 1, SecretThreshold: 1}); err == nil {
		t.Fatal("init succeeded without entropy")
	}
	if v.keys() != 0 || v.status().Initialized {
		t.Fatalf("a failed init left %d keys", v.keys())
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("entropy source failed") }

func TestUnsealProgress(t *testing.T) {
	ctx := t.Context()
	v := newVault(t, inmem.New(), nil, nil)
	res, err := v.c.Init(ctx, InitRequest{SecretShares: 5, SecretThreshold: 3})
	if err != nil {
		t.Fatal(err)
	}
	if st := v.unseal(res.Keys[0]); !st.Sealed || st.Progress != 1 {
		t.Fatalf("after one share: %+v", st)
	}
	if st := v.unseal(res.Keys[0]); st.Progress != 1 {
		t.Fatalf("a duplicate share counted: %+v", st)
	}
	v.c.ResetUnseal()
	if st := v.status(); st.Progress != 0 {
		t.Fatalf("reset kept progress %d", st.Progress)
	}
	v.unseal(res.Keys[4])
	if st := v.unseal(res.Keys[2]); !st.Sealed || st.Progress != 2 {
		t.Fatalf("after two shares: %+v", st)
	}
	if st := v.unseal(res.Keys[1]); st.Sealed || st.Progress != 0 || st.Term == 0 {
		t.Fatalf("at the threshold: %+v", st)
	}
	if v.c.Sealed() || v.h.count(&v.h.unsealed) != 2 {
		t.Fatalf("not unsealed, or Unsealed hook not run (%d)", v.h.unsealed)
	}
	// A share after unsealing changes nothing.
	if st := v.unseal(res.Keys[3]); st.Sealed || st.Progress != 0 {
		t.Fatalf("share while unsealed: %+v", st)
	}
	v.c.Seal()
	if !v.c.Sealed() || v.h.count(&v.h.sealing) != 2 {
		t.Fatal("Seal did not seal, or Sealing hook not run")
	}
	if _, err := v.c.Rotate(ctx); !errors.Is(err, ErrSealed) {
		t.Fatalf("rotate while sealed: %v", err)
	}
}

func TestWrongShares(t *testing.T) {
	ctx := t.Context()
	v := newVault(t, inmem.New(), nil, nil)
	res, err := v.c.Init(ctx, InitRequest{SecretShares: 3, SecretThreshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	other := newVault(t, inmem.New(), nil, nil)
	alien, err := other.c.Init(ctx, InitRequest{SecretShares: 3, SecretThreshold: 2})
	if err != nil {
		t.Fatal(err)
	}

	// Malformed shares are refused and not counted.
	zeroX := bytes.Clone(res.Keys[0])
	zeroX[rootKeySize] = 0
	for name, bad := range map[string][]byte{"short": res.Keys[0][:10], "long": append(bytes.Clone(res.Keys[0]), 1), "zero x": zeroX, "unsplit length": res.Keys[0][:rootKeySize]} {
		if _, err := v.c.Unseal(ctx, bad); !errors.Is(err, ErrInvalidShare) {
			t.Errorf("%s share: %v, want ErrInvalidShare", name, err)
		}
	}
	if st := v.status(); st.Progress != 0 {
		t.Fatalf("malformed shares counted: %d", st.Progress)
	}

	// Shares that do not combine to the root key reset the progress. (The
	// alien share must have another x coordinate: two shares with one x
	// are refused as malformed, not combined.)
	v.unseal(res.Keys[0])
	alienShare := alien.Keys[1]
	if alienShare[rootKeySize] == res.Keys[0][rootKeySize] {
		alienShare = alien.Keys[2]
	}
	if _, err := v.c.Unseal(ctx, alienShare); !errors.Is(err, ErrWrongCombination) {
		t.Fatalf("mixed shares: %v, want ErrWrongCombination", err)
	}
	if st := v.status(); !st.Sealed || st.Progress != 0 {
		t.Fatalf("after a wrong combination: %+v", st)
	}
	if _, err := v.c.Unseal(ctx, alien.Keys[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := v.c.Unseal(ctx, alien.Keys[2]); !errors.Is(err, ErrWrongCombination) {
		t.Fatalf("another vault's shares: %v", err)
	}
	if err := v.c.VerifyShares(ctx, [][]byte{res.Keys[0], res.Keys[1]}); !errors.Is(err, ErrSealed) {
		t.Fatalf("verify while sealed: %v", err)
	}
	v.unseal(res.Keys[1])
	if st := v.unseal(res.Keys[2]); st.Sealed {
		t.Fatal("the right shares do not unseal after wrong ones")
	}

	// generate-root's check: a threshold of the right, distinct shares.
	if err := v.c.VerifyShares(ctx, [][]byte{res.Keys[0], res.Keys[2]}); err != nil {
		t.Fatalf("verify right shares: %v", err)
	}
	if err := v.c.VerifyShares(ctx, [][]byte{res.Keys[0], res.Keys[0]}); !errors.Is(err, ErrInvalidShare) {
		t.Fatalf("verify a duplicated share: %v", err)
	}
	if err := v.c.VerifyShares(ctx, [][]byte{alien.Keys[0], alien.Keys[1]}); !errors.Is(err, ErrWrongCombination) {
		t.Fatalf("verify another vault's shares: %v", err)
	}
}

func TestUnsealRefused(t *testing.T) {
	ctx := t.Context()
	v := newVault(t, inmem.New(), nil, nil)
	v.h.refuse = errors.New("no TEE")
	res, err := v.c.Init(ctx, InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	// The shares are the only copy: returned even though the vault stays sealed.
	if len(res.Keys) != 1 || res.RootToken != "" || !v.c.Sealed() {
		t.Fatalf("init under refusal: %d keys, token %q, sealed %v", len(res.Keys), res.RootToken, v.c.Sealed())
	}
	if _, err := v.c.Unseal(ctx, res.Keys[0]); !errors.Is(err, ErrUnsealRefused) || !v.c.Sealed() {
		t.Fatalf("unseal under refusal: %v", err)
	}
	v.h.refuse = nil
	if st := v.unseal(res.Keys[0]); st.Sealed {
		t.Fatal("not unsealed once allowed")
	}
}

func TestAutoSeal(t *testing.T) {
	ctx := t.Context()
	store, fs := inmem.New(), newFakeSeal(t)
	v := newVault(t, store, fs, nil)
	res, err := v.c.Init(ctx, InitRequest{RecoveryShares: 3, RecoveryThreshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Keys != nil || len(res.RecoveryKeys) != 3 || res.RootToken == "" {
		t.Fatalf("init: %d keys, %d recovery keys", len(res.Keys), len(res.RecoveryKeys))
	}
	// Auto-unsealed at init; the status shows recovery shares.
	if st := v.status(); st.Sealed || !st.RecoverySeal || st.N != 3 || st.T != 2 || st.Type != "pkcs11" {
		t.Fatalf("status %+v", st)
	}
	if _, err := v.c.Unseal(ctx, res.RecoveryKeys[0]); err != nil {
		t.Fatalf("unseal while unsealed: %v", err)
	}
	v.c.Seal()
	if _, err := v.c.Unseal(ctx, res.RecoveryKeys[0]); !errors.Is(err, ErrAutoSeal) {
		t.Fatalf("shares on an auto seal: %v", err)
	}

	// The HSM is down: the vault stays sealed, then unseals when it is back.
	fs.down.Store(true)
	if err := v.c.AutoUnseal(ctx); !errors.Is(err, errHSMDown) || !v.c.Sealed() {
		t.Fatalf("auto-unseal with the HSM down: %v", err)
	}
	fs.down.Store(false)
	if err := v.c.AutoUnseal(ctx); err != nil || v.c.Sealed() {
		t.Fatalf("auto-unseal: %v", err)
	}

	// A node restarted over the same storage unseals by itself, retrying
	// through HSM failures.
	v.c.Seal()
	fs.failures.Store(3)
	v2 := newVault(t, store, fs, nil)
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	v2.c.RunAutoUnseal(rctx, time.Millisecond, 2*time.Millisecond)
	if v2.c.Sealed() {
		t.Fatal("RunAutoUnseal returned with the vault sealed")
	}

	// Recovery shares authorize operator actions.
	if err := v2.c.VerifyShares(ctx, [][]byte{res.RecoveryKeys[1], res.RecoveryKeys[2]}); err != nil {
		t.Fatalf("recovery shares: %v", err)
	}
	other, err := newVault(t, inmem.New(), newFakeSeal(t), nil).c.Init(ctx, InitRequest{RecoveryShares: 3, RecoveryThreshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := v2.c.VerifyShares(ctx, [][]byte{other.RecoveryKeys[0], other.RecoveryKeys[1]}); !errors.Is(err, ErrWrongCombination) {
		t.Fatalf("another vault's recovery shares: %v", err)
	}

	// A wrapped root key altered in storage does not unseal.
	v2.c.Seal()
	wrapped, err := store.Get(ctx, keyWrappedRoot)
	if err != nil {
		t.Fatal(err)
	}
	wrapped[len(wrapped)-1] ^= 1
	if err := store.Put(ctx, keyWrappedRoot, wrapped); err != nil {
		t.Fatal(err)
	}
	if err := v2.c.AutoUnseal(ctx); !errors.Is(err, seal.ErrDecrypt) || !v2.c.Sealed() {
		t.Fatalf("tampered wrapped root key: %v", err)
	}
}

func TestRekeyShamir(t *testing.T) {
	ctx := t.Context()
	v := newVault(t, inmem.New(), nil, nil)
	res, err := v.c.Init(ctx, InitRequest{SecretShares: 3, SecretThreshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.c.RekeyInit(ctx, 5, 3); !errors.Is(err, ErrSealed) {
		t.Fatalf("rekey while sealed: %v", err)
	}
	v.unseal(res.Keys[0])
	v.unseal(res.Keys[1])
	if err := v.b.Put(ctx, "data/x", []byte("kept across the rekey")); err != nil {
		t.Fatal(err)
	}
	if _, err := v.c.RekeyUpdate(ctx, "nonce", res.Keys[0]); !errors.Is(err, ErrNoRekey) {
		t.Fatalf("update without init: %v", err)
	}
	if _, err := v.c.RekeyInit(ctx, 2, 3); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("rekey to an impossible split: %v", err)
	}
	st, err := v.c.RekeyInit(ctx, 5, 3)
	if err != nil || !st.Started || st.Required != 2 || st.Nonce == "" {
		t.Fatalf("rekey init: %+v %v", st, err)
	}
	if _, err := v.c.RekeyUpdate(ctx, "not-the-nonce", res.Keys[0]); !errors.Is(err, ErrNonceMismatch) {
		t.Fatalf("wrong nonce: %v", err)
	}
	if st, err = v.c.RekeyUpdate(ctx, st.Nonce, res.Keys[2]); err != nil || st.Complete || st.Progress != 1 {
		t.Fatalf("first share: %+v %v", st, err)
	}
	st, err = v.c.RekeyUpdate(ctx, st.Nonce, res.Keys[0])
	if err != nil || !st.Complete || len(st.Keys) != 5 {
		t.Fatalf("rekey: %+v %v", st, err)
	}
	newKeys := st.Keys

	// The old shares no longer work; three of the new five do, and the
	// data written before is still there.
	v.c.Seal()
	v.unseal(res.Keys[0])
	v.unseal(res.Keys[1])
	if _, err := v.c.Unseal(ctx, res.Keys[2]); !errors.Is(err, ErrWrongCombination) {
		t.Fatalf("old shares after rekey: %v", err)
	}
	v.unseal(newKeys[4])
	v.unseal(newKeys[0])
	if got := v.unseal(newKeys[2]); got.Sealed || got.N != 5 || got.T != 3 {
		t.Fatalf("new shares: %+v", got)
	}
	if got, err := v.b.Get(ctx, "data/x"); err != nil || string(got) != "kept across the rekey" {
		t.Fatalf("data after rekey: %q %v", got, err)
	}

	// A wrong combination cancels the rekey and changes nothing.
	st, _ = v.c.RekeyInit(ctx, 2, 2)
	other, _ := newVault(t, inmem.New(), nil, nil).c.Init(ctx, InitRequest{SecretShares: 5, SecretThreshold: 3})
	for _, k := range other.Keys[:3] {
		st, err = v.c.RekeyUpdate(ctx, st.Nonce, k)
	}
	if !errors.Is(err, ErrWrongCombination) {
		t.Fatalf("rekey with another vault's shares: %v", err)
	}
	if got, _ := v.c.RekeyStatusNow(ctx); got.Started {
		t.Fatal("the rekey stays open after a wrong combination")
	}
	v.c.Seal()
	v.unseal(newKeys[1])
	v.unseal(newKeys[3])
	if got := v.unseal(newKeys[0]); got.Sealed {
		t.Fatal("a failed rekey changed the key")
	}
}

func TestRekeyRecovery(t *testing.T) {
	ctx := t.Context()
	v := newVault(t, inmem.New(), newFakeSeal(t), nil)
	res, err := v.c.Init(ctx, InitRequest{RecoveryShares: 2, RecoveryThreshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	st, err := v.c.RekeyInit(ctx, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range res.RecoveryKeys {
		if st, err = v.c.RekeyUpdate(ctx, st.Nonce, k); err != nil {
			t.Fatal(err)
		}
	}
	if !st.Complete || len(st.Keys) != 3 {
		t.Fatalf("recovery rekey: %+v", st)
	}
	if err := v.c.VerifyShares(ctx, [][]byte{st.Keys[0], st.Keys[2]}); err != nil {
		t.Fatalf("new recovery shares: %v", err)
	}
	if err := v.c.VerifyShares(ctx, [][]byte{res.RecoveryKeys[0], res.RecoveryKeys[1]}); !errors.Is(err, ErrWrongCombination) {
		t.Fatalf("old recovery shares after rekey: %v", err)
	}
	if got := v.status(); got.N != 3 || got.T != 2 || got.Sealed {
		t.Fatalf("status %+v", got)
	}
}

// TestMigrateShamirToAutoSeal: a Shamir vault restarted with an HSM stays
// sealed and says a migration is due; a threshold of unseal shares with
// migrate moves the root key to the HSM, seal-wraps the keyring, returns
// recovery shares, and from then on the vault unseals by itself.
func TestMigrateShamirToAutoSeal(t *testing.T) {
	ctx := t.Context()
	store := inmem.New()
	old := newVault(t, store, nil, nil)
	res, err := old.c.Init(ctx, InitRequest{SecretShares: 3, SecretThreshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	old.unseal(res.Keys[0])
	old.unseal(res.Keys[1])
	if err := old.b.Put(ctx, "data/x", []byte("before the migration")); err != nil {
		t.Fatal(err)
	}
	old.c.Seal()

	fs := newFakeSeal(t)
	v := newVault(t, store, fs, nil)
	if st := v.status(); !st.Migration || !st.Sealed || st.Type != "pkcs11" {
		t.Fatalf("status before migration %+v", st)
	}
	if err := v.c.AutoUnseal(ctx); !errors.Is(err, ErrMigrationRequired) {
		t.Fatalf("auto-unseal before migration: %v", err)
	}
	if _, err := v.c.Unseal(ctx, res.Keys[0]); !errors.Is(err, ErrMigrationRequired) {
		t.Fatalf("plain unseal before migration: %v", err)
	}
	if _, _, err := old.c.UnsealMigrate(ctx, res.Keys[0]); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("migrate without an HSM: %v", err)
	}

	// The HSM fails mid-migration: nothing changes; run it again.
	fs.down.Store(true)
	if _, _, err := v.c.UnsealMigrate(ctx, res.Keys[0]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.c.UnsealMigrate(ctx, res.Keys[2]); !errors.Is(err, errHSMDown) || !v.c.Sealed() {
		t.Fatalf("migrate with the HSM down: %v", err)
	}
	if st := v.status(); !st.Migration {
		t.Fatal("a failed migration changed the seal")
	}
	fs.down.Store(false)
	if _, _, err := v.c.UnsealMigrate(ctx, res.Keys[0]); err != nil {
		t.Fatal(err)
	}
	st, recovery, err := v.c.UnsealMigrate(ctx, res.Keys[2])
	if err != nil {
		t.Fatal(err)
	}
	if st.Sealed || st.Migration || !st.RecoverySeal || st.N != 3 || st.T != 2 || len(recovery) != 3 || v.h.count(&v.h.migra) != 1 {
		t.Fatalf("after migration: %+v, %d recovery shares, MigrateCSPs ran %d times", st, len(recovery), v.h.migra)
	}
	if got, err := v.b.Get(ctx, "data/x"); err != nil || string(got) != "before the migration" {
		t.Fatalf("data after migration: %q %v", got, err)
	}

	// A node restarted now unseals by itself; the old shares are recovery-useless.
	v.c.Seal()
	v2 := newVault(t, store, fs, nil)
	if err := v2.c.AutoUnseal(ctx); err != nil || v2.c.Sealed() {
		t.Fatalf("auto-unseal after migration: %v", err)
	}
	if err := v2.c.VerifyShares(ctx, [][]byte{recovery[0], recovery[1]}); err != nil {
		t.Fatalf("recovery shares: %v", err)
	}
	if err := v2.c.VerifyShares(ctx, [][]byte{res.Keys[0], res.Keys[1]}); !errors.Is(err, ErrWrongCombination) {
		t.Fatalf("old unseal shares as recovery shares: %v", err)
	}
	// The keyring is seal-wrapped now: the barrier refuses to open it without the HSM key.
	plain := barrier.New(store, barrier.Options{Rand: rand.Reader})
	if err := plain.Unseal(ctx, secret.Bytes(make([]byte, 32)), nil); err == nil {
		t.Fatal("a zero root key opened the keyring")
	}
	if _, err := store.Get(ctx, keyWrappedRoot); err != nil {
		t.Fatalf("no wrapped root key: %v", err)
	}
	if raw, _ := store.Get(ctx, keySealConfig); !bytes.Contains(raw, []byte(`"seal_wrap":true`)) || !bytes.Contains(raw, []byte(`"type":"pkcs11"`)) {
		t.Fatalf("seal config %s", raw)
	}
}

func TestStatusStorageDown(t *testing.T) {
	v := newVault(t, inmem.New(), nil, nil)
	down := &downStore{Backend: v.store}
	v.c.opts.Storage = down
	down.down.Store(true)
	if _, err := v.c.Status(t.Context()); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("status with storage down: %v", err)
	}
	if _, err := v.c.Init(t.Context(), InitRequest{SecretShares: 1, SecretThreshold: 1}); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("init with storage down: %v", err)
	}
}

// downStore fails reads with storage.ErrUnavailable while down is set.
type downStore struct {
	storage.Backend
	down atomic.Bool
}

func (d *downStore) Get(ctx context.Context, key string) ([]byte, error) {
	if d.down.Load() {
		return nil, fmt.Errorf("fake: %w", storage.ErrUnavailable)
	}
	return d.Backend.Get(ctx, key)
}
