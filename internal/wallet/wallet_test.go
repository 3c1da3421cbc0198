package wallet

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/moonvault/moonvault/internal/entropy"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/bolt"
	"github.com/moonvault/moonvault/internal/wallet/evm"
)

// gcmSealer is a real AES-256-GCM seal wrap with the path as associated
// data, standing in for package sealwrap (whose key lives in an HSM). It
// counts unwraps, and can be gated to hold unwraps in flight.
type gcmSealer struct {
	aead    cipher.AEAD
	unwraps atomic.Int64
	gate    chan struct{} // when non-nil, Unwrap waits for it to close
	fail    error
}

func newSealer(t testing.TB) *gcmSealer {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	b, _ := aes.NewCipher(k)
	a, _ := cipher.NewGCMWithRandomNonce(b)
	return &gcmSealer{aead: a}
}

func (g *gcmSealer) Wrap(_ context.Context, path string, pt []byte) ([]byte, error) {
	if g.fail != nil {
		return nil, g.fail
	}
	return g.aead.Seal(nil, nil, pt, []byte(path)), nil
}

func (g *gcmSealer) Unwrap(_ context.Context, path string, env []byte) (secret.Bytes, error) {
	g.unwraps.Add(1)
	if g.gate != nil {
		<-g.gate
	}
	return g.aead.Open(nil, nil, env, []byte(path))
}

func openKV(t testing.TB) *bolt.Backend {
	t.Helper()
	kv, err := bolt.Open(filepath.Join(t.TempDir(), "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	return kv
}

func newService(t testing.TB, opts Options) (*Service, *bolt.Backend, *gcmSealer) {
	kv := openKV(t)
	s := newSealer(t)
	return New(kv, s, rand.Reader, opts), kv, s
}

func recoverSigner(t *testing.T, hash, sig []byte) common.Address {
	t.Helper()
	a, err := signerOf(hash, sig)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// signerOf is recoverSigner for goroutines, which must not call t.Fatal.
func signerOf(hash, sig []byte) (common.Address, error) {
	if len(sig) != 65 {
		return common.Address{}, fmt.Errorf("signature of %d bytes", len(sig))
	}
	rs := append([]byte(nil), sig...)
	rs[64] -= 27
	pub, err := crypto.SigToPub(hash, rs)
	if err != nil {
		return common.Address{}, err
	}
	return crypto.PubkeyToAddress(*pub), nil
}

func TestCreateGetSignDelete(t *testing.T) {
	for _, exclusive := range []bool{false, true} {
		t.Run(fmt.Sprintf("exclusive=%v", exclusive), func(t *testing.T) { testCreateGetSignDelete(t, exclusive) })
	}
}

func testCreateGetSignDelete(t *testing.T, exclusive bool) {
	ctx := context.Background()
	svc, kv, _ := newService(t, Options{ExclusiveStorage: exclusive})
	a, err := svc.Create(ctx, "alice", "main", nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "main" || a.Owner != "alice" || len(a.PublicKey) != 65 || a.CreatedAt.IsZero() {
		t.Fatalf("bad account %+v", a)
	}
	got, err := svc.Get(ctx, "alice", "main")
	if err != nil || got.Address != a.Address {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if _, err := svc.Get(ctx, "bob", "main"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other owner: %v", err)
	}
	byAddr, err := svc.ByAddress(ctx, common.HexToAddress(a.Address))
	if err != nil || byAddr.Name != "main" || byAddr.Owner != "alice" {
		t.Fatalf("ByAddress = %+v, %v", byAddr, err)
	}
	sig, hash, err := svc.SignMessage(ctx, got, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if recoverSigner(t, hash, sig).Hex() != a.Address {
		t.Fatal("signature does not recover the account address")
	}
	if _, err := svc.Create(ctx, "alice", "main", nil); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate name: %v", err)
	}
	if err := svc.Delete(ctx, "alice", "main"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{accountKey("alice", "main"), keyPath("alice", "main"), addressKey(a.Chain, a.Network, a.Address)} {
		if _, err := kv.Get(ctx, k); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("%s survives Delete: %v", k, err)
		}
	}
	if _, _, err := svc.SignMessage(ctx, got, []byte("x")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("sign after delete: %v", err)
	}
	if _, err := svc.Get(ctx, "alice", "main"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after delete: %v", err)
	}
	if err := svc.Delete(ctx, "alice", "main"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestAccountID(t *testing.T) {
	id := AccountID{Owner: "alice@example.com", Name: "main.v2"}
	got, err := ParseAccountID(id.String())
	if err != nil || got != id || id.String() != "alice@example.com/main.v2" {
		t.Fatalf("round trip: %q -> %+v, %v", id.String(), got, err)
	}
	for _, bad := range []string{"", "alice", "/main", "alice/", "alice/main/x", "al ice/main"} {
		if _, err := ParseAccountID(bad); err == nil {
			t.Errorf("ParseAccountID(%q) accepted", bad)
		}
	}
}

func TestCreateValidation(t *testing.T) {
	ctx := context.Background()
	svc, _, _ := newService(t, Options{})
	n := crypto.S256().Params().N.Bytes()
	cases := []struct {
		owner, name string
		key         secret.Bytes
		want        error
	}{
		{"alice", "bad/name", nil, ErrInvalidName},
		{"alice", "has space", nil, ErrInvalidName},
		{"alice", string(make([]byte, 65)), nil, ErrInvalidName},
		{"al/ice", "x", nil, ErrInvalidOwner},
		{"", "x", nil, ErrInvalidOwner},
		{"alice", "k1", make(secret.Bytes, 31), ErrInvalidKey},
		{"alice", "k2", make(secret.Bytes, 32), ErrInvalidKey}, // zero scalar
		{"alice", "k3", secret.Bytes(n), ErrInvalidKey},        // scalar = N
		{"alice", "k4", make(secret.Bytes, 33), ErrInvalidKey},
	}
	for _, c := range cases {
		if _, err := svc.Create(ctx, c.owner, c.name, c.key); !errors.Is(err, c.want) {
			t.Errorf("Create(%q,%q): %v, want %v", c.owner, c.name, err, c.want)
		}
	}
}

func TestImportKey(t *testing.T) {
	ctx := context.Background()
	svc, _, _ := newService(t, Options{})
	raw := secret.Bytes(crypto.Keccak256([]byte("cow")))
	a, err := svc.Create(ctx, "alice", "", raw)
	if err != nil {
		t.Fatal(err)
	}
	if a.Address != "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826" {
		t.Fatalf("imported address %s", a.Address)
	}
	if !generatedNameRe.MatchString(a.Name) {
		t.Fatalf("generated name %q", a.Name)
	}
	// The stored public key is go-ethereum's uncompressed encoding of the
	// key's point (decompressed once, with btcec).
	k, err := crypto.ToECDSA(raw)
	if err != nil {
		t.Fatal(err)
	}
	if want := crypto.FromECDSAPub(&k.PublicKey); !bytes.Equal(a.PublicKey, want) {
		t.Fatalf("public key %x, want %x", a.PublicKey, want)
	}
	if _, err := svc.Create(ctx, "bob", "same", raw); !errors.Is(err, ErrExists) {
		t.Fatalf("re-import of an address: %v", err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) {
	return 0, fmt.Errorf("hsm source: %w", entropy.ErrUnavailable)
}

func TestCreateFailsClosed(t *testing.T) {
	ctx := context.Background()
	kv := openKV(t)
	sealer := newSealer(t)
	svc := New(kv, sealer, failingReader{}, Options{})
	if _, err := svc.Create(ctx, "alice", "x", nil); !errors.Is(err, entropy.ErrUnavailable) {
		t.Fatalf("want entropy.ErrUnavailable, got %v", err)
	}
	sealer.fail = errors.New("hsm down")
	svc = New(kv, sealer, rand.Reader, Options{})
	if _, err := svc.Create(ctx, "alice", "y", nil); err == nil {
		t.Fatal("Create succeeded with a failing sealer")
	}
	keys, err := kv.List(ctx, "wallet/", "", 0)
	if err != nil || len(keys) != 0 {
		t.Fatalf("something was written: %v %v", keys, err)
	}
}

func TestListPaging(t *testing.T) {
	ctx := context.Background()
	svc, _, _ := newService(t, Options{})
	for i := range 5 {
		if _, err := svc.Create(ctx, "alice", fmt.Sprintf("a%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.Create(ctx, "alicex", "other", nil); err != nil {
		t.Fatal(err)
	}
	var names []string
	cursor := ""
	for page := 0; ; page++ {
		accts, next, err := svc.List(ctx, "alice", cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range accts {
			names = append(names, a.Name)
		}
		if next == "" {
			break
		}
		cursor = next
		if page > 5 {
			t.Fatal("paging does not end")
		}
	}
	if fmt.Sprint(names) != "[a0 a1 a2 a3 a4]" {
		t.Fatalf("listed %v", names)
	}
}

func TestGrantRevoke(t *testing.T) {
	for _, exclusive := range []bool{false, true} {
		t.Run(fmt.Sprintf("exclusive=%v", exclusive), func(t *testing.T) { testGrantRevoke(t, exclusive) })
	}
}

func testGrantRevoke(t *testing.T, exclusive bool) {
	ctx := context.Background()
	svc, _, _ := newService(t, Options{ExclusiveStorage: exclusive})
	if _, err := svc.Create(ctx, "alice", "w", nil); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"bob", "carol", "bob"} {
		if err := svc.Grant(ctx, "alice", "w", g); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := svc.Get(ctx, "alice", "w")
	if fmt.Sprint(a.Grants) != "[bob carol]" {
		t.Fatalf("grants %v", a.Grants)
	}
	if err := svc.Revoke(ctx, "alice", "w", "bob"); err != nil {
		t.Fatal(err)
	}
	a, _ = svc.Get(ctx, "alice", "w")
	if fmt.Sprint(a.Grants) != "[carol]" {
		t.Fatalf("grants after revoke %v", a.Grants)
	}
	if err := svc.Grant(ctx, "alice", "nope", "bob"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("grant on missing account: %v", err)
	}
	if err := svc.Grant(ctx, "alice", "w", "a/b"); !errors.Is(err, ErrInvalidOwner) {
		t.Fatalf("bad grantee: %v", err)
	}
}

func TestCacheHitsAndSingleflight(t *testing.T) {
	ctx := context.Background()
	svc, _, sealer := newService(t, Options{})
	a, err := svc.Create(ctx, "alice", "w", nil)
	if err != nil {
		t.Fatal(err)
	}
	sealer.gate = make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sig, hash, err := svc.SignMessage(ctx, a, []byte("m"))
			if err == nil {
				var got common.Address
				if got, err = signerOf(hash, sig); err == nil && got.Hex() != a.Address {
					err = fmt.Errorf("signer %s, want %s", got.Hex(), a.Address)
				}
			}
			errs <- err
		}()
	}
	time.Sleep(100 * time.Millisecond) // let the misses pile up on the gated unwrap
	close(sealer.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := sealer.unwraps.Load(); n != 1 {
		t.Fatalf("%d unwraps for 16 concurrent misses, want 1", n)
	}
	for range 10 {
		if _, _, err := svc.SignMessage(ctx, a, []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	if n := sealer.unwraps.Load(); n != 1 {
		t.Fatalf("cache hits unwrapped again: %d", n)
	}
}

// cachedKey returns the cached key object for an account (nil if absent).
func cachedKey(svc *Service, a *Account) *ecdsa.PrivateKey {
	e := svc.cache.acquire(a.Owner+"/"+a.Name, cacheTag(a))
	if e == nil {
		return nil
	}
	defer svc.cache.release(e)
	return e.key.(*evm.Key).ECDSA()
}

// wiped reports whether k's scalar was zeroized.
func wiped(k *ecdsa.PrivateKey) bool {
	//lint:ignore SA1019 the test checks that the zeroization in evm.Key.Destroy reached the scalar
	return k.D.Sign() == 0
}

func TestCacheZeroizes(t *testing.T) {
	ctx := context.Background()
	svc, _, _ := newService(t, Options{CacheSize: 2})
	var accts []*Account
	var keys []*ecdsa.PrivateKey
	for i := range 3 {
		a, err := svc.Create(ctx, "alice", fmt.Sprintf("w%d", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := svc.SignMessage(ctx, a, []byte("m")); err != nil {
			t.Fatal(err)
		}
		accts = append(accts, a)
		keys = append(keys, cachedKey(svc, a))
	}
	if svc.cache.len() != 2 {
		t.Fatalf("cache holds %d keys, bound is 2", svc.cache.len())
	}
	if !wiped(keys[0]) {
		t.Fatal("evicted key not zeroized")
	}
	if err := svc.Delete(ctx, "alice", "w1"); err != nil {
		t.Fatal(err)
	}
	if !wiped(keys[1]) {
		t.Fatal("deleted account's cached key not zeroized")
	}
	svc.Purge()
	if !wiped(keys[2]) || svc.cache.len() != 0 {
		t.Fatal("Purge left a key")
	}
	// Signing still works after a purge: the key is unwrapped again.
	if _, _, err := svc.SignMessage(ctx, accts[2], []byte("m")); err != nil {
		t.Fatal(err)
	}
}

func TestPinnedKeySurvivesEviction(t *testing.T) {
	c := newKeyCache(1)
	newKey := func() (*evm.Key, string) {
		k := testKey(t)
		addr := crypto.PubkeyToAddress(k.PublicKey)
		ek, err := evm.NewKey(secret.Bytes(crypto.FromECDSA(k)), addr)
		if err != nil {
			t.Fatal(err)
		}
		return ek, addr.Hex()
	}
	k1, a1 := newKey()
	k2, a2 := newKey()
	c.add("o/1", a1, k1, 0)
	e := c.acquire("o/1", a1)
	c.add("o/2", a2, k2, 0) // evicts o/1 while pinned
	//lint:ignore SA1019 the test checks that the zeroization in keys.go reached the scalar
	if k1.ECDSA().D.Sign() == 0 {
		t.Fatal("pinned key wiped under its user")
	}
	c.release(e)
	//lint:ignore SA1019 as above
	if k1.ECDSA().D.Sign() != 0 {
		t.Fatal("evicted key not wiped on last release")
	}
}

func TestForgedAccountRefused(t *testing.T) {
	ctx := context.Background()
	svc, _, _ := newService(t, Options{CacheSize: -1})
	a, _ := svc.Create(ctx, "alice", "w", nil)
	b, _ := svc.Create(ctx, "bob", "w", nil)
	forged := *a
	forged.Address = b.Address
	if _, _, err := svc.SignMessage(ctx, &forged, []byte("m")); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("forged account: %v", err)
	}
	// Uncached path signs correctly too.
	sig, hash, err := svc.SignMessage(ctx, a, []byte("m"))
	if err != nil || recoverSigner(t, hash, sig).Hex() != a.Address {
		t.Fatalf("uncached sign: %v", err)
	}
}

// testKey is a random secp256k1 key. go-ethereum's crypto.GenerateKey goes
// through crypto/ecdsa, which refuses a curve it does not know under
// GODEBUG=fips140=only; secp256k1 is outside the FIPS boundary anyway
// (docs/fips.md), and the vault derives keys from its own entropy like this.
func testKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	b := make([]byte, 32)
	for {
		_, _ = rand.Read(b)
		if k, err := crypto.ToECDSA(b); err == nil {
			return k
		}
	}
}

var generatedNameRe = regexp.MustCompile(`^acct-[0-9a-f]{12}-[0-9a-f]{8}$`)

// Generated names sort in creation order (so a list reads oldest first and
// consecutive creations share storage pages), across milliseconds and
// across the years; within one millisecond they differ by their random
// part.
func TestGeneratedNamesSortInCreationOrder(t *testing.T) {
	times := []time.Time{
		time.Unix(0, 0),
		time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 1, 20, 0, 0, int(time.Millisecond), time.UTC),
		time.Date(2026, 12, 1, 20, 0, 1, 0, time.UTC),
		time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
	}
	var prev string
	for _, tm := range times {
		name, err := generatedName("acct-", tm)
		if err != nil {
			t.Fatal(err)
		}
		if !generatedNameRe.MatchString(name) || !nameRe.MatchString(name) {
			t.Fatalf("%v: name %q", tm, name)
		}
		if name <= prev {
			t.Fatalf("%v: %q does not sort after %q", tm, name, prev)
		}
		prev = name
	}
	same := map[string]bool{}
	for range 100 {
		name, err := generatedName("acct-", times[1])
		if err != nil {
			t.Fatal(err)
		}
		same[name] = true
	}
	if len(same) < 99 {
		t.Fatalf("100 names in one millisecond: only %d distinct", len(same))
	}
	if before, _ := generatedName("acct-", time.Unix(-1, 0)); !strings.HasPrefix(before, "acct-000000000000-") {
		t.Fatalf("a clock before 1970 names %q", before)
	}
}
