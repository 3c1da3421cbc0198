package core

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/bolt"
)

// softSeal stands for the HSM: an AES-256-GCM key the storage attacker
// cannot read. (The real PKCS#11 seal runs in internal/server's tests.)
type softSeal struct {
	mu      sync.Mutex
	aead    cipher.AEAD
	created bool
}

func newSoftSeal(t testing.TB) *softSeal {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	blk, _ := aes.NewCipher(k)
	g, _ := cipher.NewGCMWithRandomNonce(blk)
	return &softSeal{aead: g}
}

func (s *softSeal) Type() string  { return "pkcs11" }
func (s *softSeal) KeyID() string { return "pkcs11:test" }
func (s *softSeal) EnsureKey(context.Context) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	created := !s.created
	s.created = true
	return created, nil
}
func (s *softSeal) Encrypt(_ context.Context, pt, aad []byte) ([]byte, error) {
	return s.aead.Seal(nil, nil, pt, aad), nil
}
func (s *softSeal) Decrypt(_ context.Context, ct, aad []byte) ([]byte, error) {
	if len(ct) < 12 {
		return nil, errors.New("short")
	}
	return s.aead.Open(nil, nil, ct, aad)
}

// logBuf collects the log for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

type node struct {
	core    *Core
	barrier *barrier.Barrier
	log     *logBuf
}

func newNode(t testing.TB, st storage.Backend, auto AutoSeal) *node {
	t.Helper()
	lb := &logBuf{}
	log := slog.New(slog.NewTextHandler(lb, nil))
	b := barrier.New(st, barrier.Options{Rand: rand.Reader, Logger: log})
	opts := Options{Storage: st, Barrier: b, Rand: rand.Reader, Logger: log}
	if auto != nil {
		opts.AutoSeal = auto
	}
	c := New(opts)
	t.Cleanup(c.Seal)
	return &node{core: c, barrier: b, log: lb}
}

func openBolt(t testing.TB, dir string) storage.Backend {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func raw(t testing.TB, st storage.Backend, key string) []byte {
	t.Helper()
	v, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return v
}

func put(t testing.TB, st storage.Backend, key string, v []byte) {
	t.Helper()
	if err := st.Put(context.Background(), key, v); err != nil {
		t.Fatal(err)
	}
}

// forgeRecovery plays the storage attacker of issue 13 item 2: it writes a
// 1-of-1 recovery seal config and the hash of a key it chose, in the record
// the core read before this fix.
func forgeRecovery(t testing.TB, st storage.Backend) []byte {
	t.Helper()
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	sum := sha256.Sum256(k)
	put(t, st, "core/recovery-hash", sum[:])
	cfg, _ := json.Marshal(SealConfig{Type: "pkcs11", RecoveryShares: 1, RecoveryThreshold: 1})
	put(t, st, "core/seal-config", cfg)
	return k
}

// TestForgedRecoveryKeyRefused: a storage-only attacker cannot authorize
// generate-root or rekey with a recovery key of its own.
func TestForgedRecoveryKeyRefused(t *testing.T) {
	ctx := context.Background()
	st := openBolt(t, t.TempDir())
	n := newNode(t, st, newSoftSeal(t))
	res, err := n.core.Init(ctx, InitRequest{RecoveryShares: 3, RecoveryThreshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	forged := forgeRecovery(t, st)
	if err := n.core.VerifyShares(ctx, [][]byte{forged}); !errors.Is(err, ErrInvalidShare) && !errors.Is(err, ErrWrongCombination) {
		t.Fatalf("VerifyShares(forged key) = %v, want refused", err)
	}
	if _, err := n.core.RekeyInit(ctx, 1, 1); err != nil {
		t.Fatal(err)
	}
	rs, _ := n.core.RekeyStatusNow(ctx)
	if rs.Required != 2 {
		t.Fatalf("rekey requires %d shares; the forged config says 1, the vault 2", rs.Required)
	}
	if st, err := n.core.RekeyUpdate(ctx, rs.Nonce, forged); err == nil && st.Complete {
		t.Fatal("rekey completed with a forged recovery key")
	}
	// The real shares still work, and the status shows the real split.
	shares := [][]byte{res.RecoveryKeys[0], res.RecoveryKeys[2]}
	if err := n.core.VerifyShares(ctx, shares); err != nil {
		t.Fatalf("real shares: %v", err)
	}
	if s, _ := n.core.Status(ctx); s.T != 2 || s.N != 3 {
		t.Fatalf("status shows the forged split: %+v", s)
	}
}

// TestHintTamperingRepaired: a changed seal-config hint is noticed at
// unseal, reported and rewritten from the authenticated copy.
func TestHintTamperingRepaired(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openBolt(t, dir)
	n := newNode(t, st, nil)
	res, err := n.core.Init(ctx, InitRequest{SecretShares: 5, SecretThreshold: 3})
	if err != nil {
		t.Fatal(err)
	}
	good := raw(t, st, "core/seal-config")

	// Threshold shrunk to 1: one share is not the root key.
	shrunk, _ := json.Marshal(SealConfig{Type: "shamir", SecretShares: 5, SecretThreshold: 1})
	put(t, st, "core/seal-config", shrunk)
	if _, err := n.core.Unseal(ctx, res.Keys[0]); !errors.Is(err, ErrWrongCombination) || !n.core.Sealed() {
		t.Fatalf("one share with a shrunk threshold: %v, sealed %v", err, n.core.Sealed())
	}
	// 2-of-2 claimed: two shares do not combine to the root key either.
	two, _ := json.Marshal(SealConfig{Type: "shamir", SecretShares: 2, SecretThreshold: 2})
	put(t, st, "core/seal-config", two)
	n.core.Unseal(ctx, res.Keys[0])
	if _, err := n.core.Unseal(ctx, res.Keys[1]); !errors.Is(err, ErrWrongCombination) || !n.core.Sealed() {
		t.Fatalf("two shares with a 2-of-2 hint: %v", err)
	}
	// Threshold raised to 4: four shares unseal, and the hint is repaired.
	raised, _ := json.Marshal(SealConfig{Type: "shamir", SecretShares: 5, SecretThreshold: 4})
	put(t, st, "core/seal-config", raised)
	for _, k := range res.Keys[:4] {
		if _, err := n.core.Unseal(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if n.core.Sealed() {
		t.Fatal("still sealed")
	}
	if got := raw(t, st, "core/seal-config"); !bytes.Equal(got, good) {
		t.Fatalf("hint not repaired: %s", got)
	}
	if !strings.Contains(n.log.String(), "differs from the authenticated seal configuration") {
		t.Fatalf("tampering not reported:\n%s", n.log)
	}
	if s, _ := n.core.Status(ctx); s.T != 3 || s.N != 5 {
		t.Fatalf("status: %+v", s)
	}
}

// TestKeyringSwapIntoHSMVault: storage replaces a HSM-sealed vault by a
// Shamir vault of the attacker's (its own keyring under a root key it
// knows). The node neither auto-unseals it nor "migrates" to it.
func TestKeyringSwapIntoHSMVault(t *testing.T) {
	ctx := context.Background()
	hsm := newSoftSeal(t)
	for _, keepWrappedRoot := range []bool{true, false} {
		dir := t.TempDir()
		st := openBolt(t, dir)
		n := newNode(t, st, hsm)
		if _, err := n.core.Init(ctx, InitRequest{RecoveryShares: 1, RecoveryThreshold: 1}); err != nil {
			t.Fatal(err)
		}
		n.core.Seal()

		// The attacker's own vault, written over the real one's records.
		evil := openBolt(t, t.TempDir())
		en := newNode(t, evil, nil)
		eres, err := en.core.Init(ctx, InitRequest{SecretShares: 1, SecretThreshold: 1})
		if err != nil {
			t.Fatal(err)
		}
		put(t, st, "core/keyring", raw(t, evil, "core/keyring"))
		put(t, st, "core/seal-config", raw(t, evil, "core/seal-config"))
		if !keepWrappedRoot {
			if err := st.Delete(ctx, "core/root-key"); err != nil {
				t.Fatal(err)
			}
		}

		n2 := newNode(t, st, hsm)
		if err := n2.core.AutoUnseal(ctx); err == nil || !n2.core.Sealed() {
			t.Fatalf("keep=%v: auto-unseal of the swapped vault: %v", keepWrappedRoot, err)
		}
		_, rec, err := n2.core.UnsealMigrate(ctx, eres.Keys[0])
		if err == nil || rec != nil || !n2.core.Sealed() {
			t.Fatalf("keep=%v: migration to the attacker's vault: %v (recovery %d)", keepWrappedRoot, err, len(rec))
		}
		if !errors.Is(err, ErrUnsealRefused) && !errors.Is(err, ErrWrongCombination) {
			t.Fatalf("keep=%v: %v", keepWrappedRoot, err)
		}
	}
}

// TestLegacyKeyringRefused: a keyring without the authenticated seal
// configuration (an earlier build's, or any the core did not write) does
// not unseal.
func TestLegacyKeyringRefused(t *testing.T) {
	ctx := context.Background()
	st := openBolt(t, t.TempDir())
	b := barrier.New(st, barrier.Options{Rand: rand.Reader})
	root := make(secret.Bytes, 32)
	_, _ = rand.Read(root)
	if err := b.Initialize(ctx, root, nil); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(SealConfig{Type: "shamir", SecretShares: 1, SecretThreshold: 1})
	put(t, st, "core/seal-config", cfg)
	n := newNode(t, st, nil)
	if _, err := n.core.Unseal(ctx, root); !errors.Is(err, ErrSealTampered) || !n.core.Sealed() {
		t.Fatalf("legacy keyring: %v, sealed %v", err, n.core.Sealed())
	}
}

// TestRekeyRecoveryTwoNodes: two nodes rekeying the recovery key at once:
// one wins, the other is told to start again, and the winner's shares are
// the ones that work.
func TestRekeyRecoveryTwoNodes(t *testing.T) {
	ctx := context.Background()
	st := openBolt(t, t.TempDir())
	hsm := newSoftSeal(t)
	a := newNode(t, st, hsm)
	res, err := a.core.Init(ctx, InitRequest{RecoveryShares: 1, RecoveryThreshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	b := newNode(t, st, hsm)
	if err := b.core.AutoUnseal(ctx); err != nil {
		t.Fatal(err)
	}
	sa, _ := a.core.RekeyInit(ctx, 1, 1)
	sb, _ := b.core.RekeyInit(ctx, 1, 1)
	ra, err := a.core.RekeyUpdate(ctx, sa.Nonce, res.RecoveryKeys[0])
	if err != nil || !ra.Complete {
		t.Fatalf("A: %+v %v", ra, err)
	}
	if rb, err := b.core.RekeyUpdate(ctx, sb.Nonce, res.RecoveryKeys[0]); err == nil {
		t.Fatalf("B rekeyed with the old key after A: %+v", rb)
	}
	if err := b.core.VerifyShares(ctx, [][]byte{ra.Keys[0]}); err != nil {
		t.Fatalf("A's new key on B: %v", err)
	}
	if err := a.core.VerifyShares(ctx, [][]byte{res.RecoveryKeys[0]}); err == nil {
		t.Fatal("the old recovery key still works")
	}
}

var _ io.Reader = rand.Reader

// TestHintLoggedBounded: the seal-config hint is attacker-controlled
// (storage is untrusted), so the report of a difference quotes a bounded
// prefix of it: a huge or control-laden hint cannot flood the log.
func TestHintLoggedBounded(t *testing.T) {
	ctx := context.Background()
	st := openBolt(t, t.TempDir())
	n := newNode(t, st, nil)
	res, err := n.core.Init(ctx, InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	junk := strings.Repeat("\x1b[2J\nlevel=ERROR msg=forged ", 40000) // ~1 MiB
	hint, _ := json.Marshal(map[string]any{"type": "shamir", "secret_shares": 1, "secret_threshold": 1, "junk": junk})
	put(t, st, "core/seal-config", hint)
	if _, err := n.core.Unseal(ctx, res.Keys[0]); err != nil {
		t.Fatal(err)
	}
	out := n.log.String()
	if !strings.Contains(out, "differs from the authenticated seal configuration") {
		t.Fatalf("tampering not reported:\n%.2000s", out)
	}
	if len(out) > 16<<10 {
		t.Fatalf("the log grew by %d bytes for one tampered hint", len(out))
	}
	if strings.Contains(out, "\nlevel=ERROR msg=forged") {
		t.Fatal("the hint forged a log line")
	}
}
