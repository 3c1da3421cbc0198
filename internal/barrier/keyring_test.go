package barrier

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/secret"
)

var testTime = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)

func TestInitializeAndUnseal(t *testing.T) {
	mem := newMem()
	b := New(mem, Options{Rand: rand.Reader})
	ctx := t.Context()
	if init, err := b.Initialized(ctx); err != nil || init {
		t.Fatalf("Initialized before init = %v, %v", init, err)
	}
	root := newRoot(t)
	if err := b.Unseal(ctx, root, nil); !errors.Is(err, ErrNotInitialized) {
		t.Fatalf("Unseal before init: %v, want ErrNotInitialized", err)
	}
	if err := b.Initialize(ctx, root[:16], nil); !errors.Is(err, ErrInvalidRootKey) {
		t.Fatalf("16-byte root key: %v, want ErrInvalidRootKey", err)
	}
	if err := b.Initialize(ctx, root, nil); err != nil {
		t.Fatal(err)
	}
	if !b.Sealed() {
		t.Fatal("Initialize must leave the barrier sealed")
	}
	if err := b.Initialize(ctx, root, nil); !errors.Is(err, ErrAlreadyInitialized) {
		t.Fatalf("second Initialize: %v, want ErrAlreadyInitialized", err)
	}
	if err := b.Unseal(ctx, root, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Unseal(ctx, root, nil); err != nil {
		t.Fatalf("Unseal when unsealed: %v", err)
	}
	st := b.Status()
	if st.Term != 1 || st.Terms != 1 || time.Since(st.InstallTime) > time.Hour {
		t.Fatalf("Status = %+v", st)
	}
	mustPut(t, b, "k", "v")
	b.Seal()

	// A second barrier (another node, or a restart) over the same storage.
	b2 := New(mem, Options{Rand: rand.Reader})
	if err := b2.Unseal(ctx, root, nil); err != nil {
		t.Fatal(err)
	}
	defer b2.Seal()
	mustGet(t, b2, "k", "v")
	if got := b2.Status(); !got.InstallTime.Equal(st.InstallTime) || got.Term != 1 {
		t.Fatalf("reloaded Status = %+v, want %+v", got, st)
	}
}

func TestWrongRootKey(t *testing.T) {
	mem := newMem()
	_, root := unsealed(t, mem, nil)
	b := New(mem, Options{Rand: rand.Reader})
	wrong := root.Clone()
	wrong[0] ^= 1
	err := b.Unseal(t.Context(), wrong, nil)
	if !errors.Is(err, ErrWrongRootKey) || !b.Sealed() {
		t.Fatalf("wrong root: %v, sealed %v", err, b.Sealed())
	}
	// A tampered keyring is indistinguishable and equally refused.
	blob := mem.raw(t, keyringPath)
	blob[len(blob)-1] ^= 1
	mem.setRaw(keyringPath, blob)
	if err := b.Unseal(t.Context(), root, nil); !errors.Is(err, ErrWrongRootKey) || !b.Sealed() {
		t.Fatalf("tampered keyring: %v", err)
	}
	mem.setRaw(keyringPath, []byte{2, 0, 0})
	if err := b.Unseal(t.Context(), root, nil); !errors.Is(err, ErrIntegrity) || !b.Sealed() {
		t.Fatalf("malformed keyring: %v", err)
	}
}

func TestRotate(t *testing.T) {
	mem := newMem()
	b, root := unsealed(t, mem, nil)
	mustPut(t, b, "old", "from term 1")
	n, err := b.Rotate(t.Context())
	if err != nil || n != 2 {
		t.Fatalf("Rotate = %d, %v", n, err)
	}
	mustPut(t, b, "new", "from term 2")
	for key, want := range map[string]uint32{"old": 1, "new": 2} {
		if got := binary.BigEndian.Uint32(mem.raw(t, key)[1:]); got != want {
			t.Fatalf("%s written with term %d, want %d", key, got, want)
		}
	}
	mustGet(t, b, "old", "from term 1")
	mustGet(t, b, "new", "from term 2")
	if st := b.Status(); st.Term != 2 || st.Terms != 2 {
		t.Fatalf("Status = %+v", st)
	}
	// Persisted: a fresh unseal sees both terms.
	b.Seal()
	if err := b.Unseal(t.Context(), root, nil); err != nil {
		t.Fatal(err)
	}
	mustGet(t, b, "old", "from term 1")
	if st := b.Status(); st.Term != 2 || st.Terms != 2 {
		t.Fatalf("Status after unseal = %+v", st)
	}
}

func TestRandFailureWritesNothing(t *testing.T) {
	mem := newMem()
	b := New(mem, Options{Rand: failingRand{}})
	err := b.Initialize(t.Context(), newRoot(t), nil)
	if !errors.Is(err, errEntropy) {
		t.Fatalf("Initialize: %v, want the entropy error", err)
	}
	if mem.count() != 0 {
		t.Fatalf("Initialize wrote %d keys after failing", mem.count())
	}
	if err := New(mem, Options{}).Initialize(t.Context(), newRoot(t), nil); err == nil || mem.count() != 0 {
		t.Fatalf("nil Rand: %v, %d keys written", err, mem.count())
	}

	good, _ := unsealed(t, mem, nil)
	before := mem.raw(t, keyringPath)
	good.rand = failingRand{}
	if _, err := good.Rotate(t.Context()); !errors.Is(err, errEntropy) {
		t.Fatalf("Rotate: %v, want the entropy error", err)
	}
	if !bytes.Equal(before, mem.raw(t, keyringPath)) || good.Status().Term != 1 {
		t.Fatal("failed Rotate changed the keyring")
	}
}

func TestRekey(t *testing.T) {
	mem := newMem()
	b, oldRoot := unsealed(t, mem, nil)
	mustPut(t, b, "k", "v")
	if _, err := b.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	newKey := newRoot(t)
	if err := b.Rekey(t.Context(), newKey[:31]); !errors.Is(err, ErrInvalidRootKey) {
		t.Fatalf("short new root: %v", err)
	}
	if err := b.Rekey(t.Context(), newKey); err != nil {
		t.Fatal(err)
	}
	mustGet(t, b, "k", "v") // still unsealed, data intact
	b.Seal()
	if err := b.Unseal(t.Context(), oldRoot, nil); !errors.Is(err, ErrWrongRootKey) {
		t.Fatalf("old root after rekey: %v, want ErrWrongRootKey", err)
	}
	if err := b.Unseal(t.Context(), newKey, nil); err != nil {
		t.Fatal(err)
	}
	mustGet(t, b, "k", "v")
	if st := b.Status(); st.Term != 2 || st.Terms != 2 {
		t.Fatalf("Status = %+v", st)
	}
	// Rotate after rekey writes under the new root.
	if _, err := b.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	b.Seal()
	if err := b.Unseal(t.Context(), newKey, nil); err != nil || b.Status().Term != 3 {
		t.Fatalf("unseal after rotate: %v %+v", err, b.Status())
	}
}

func TestSealZeroizes(t *testing.T) {
	b, _ := unsealed(t, newMem(), nil)
	if _, err := b.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	var held []secret.Bytes
	for _, tm := range b.ring.Load().terms {
		held = append(held, tm.key)
	}
	held = append(held, b.root)
	for i, k := range held {
		if len(k) != keyLen || bytes.Equal(k, make([]byte, keyLen)) {
			t.Fatalf("key %d is not a live key before Seal", i)
		}
	}
	b.Seal()
	for i, k := range held {
		if !bytes.Equal(k, make([]byte, keyLen)) {
			t.Fatalf("key %d not zeroized after Seal", i)
		}
	}
	if b.root != nil || b.ring.Load() != nil {
		t.Fatal("Seal kept references")
	}
}

func TestUnknownTerm(t *testing.T) {
	mem := newMem()
	b, root := unsealed(t, mem, nil)
	mustPut(t, b, "old", "v1")
	if _, err := b.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Rewrite the keyring without term 1 (as if it had been dropped) while
	// the node is sealed: an unsealed node that watches storage would see
	// the loss and write term 1 back (TestLostTermWrittenBackBySubscription).
	kr := b.ring.Load()
	only2 := &keyring{active: 2, terms: map[uint32]*term{2: {term: 2, key: kr.terms[2].key.Clone(), installed: kr.terms[2].installed}}}
	b.Seal()
	blob, err := encodeKeyring(t.Context(), root, nil, only2)
	if err != nil {
		t.Fatal(err)
	}
	mem.setRaw(keyringPath, blob)
	if err := b.Unseal(t.Context(), root, nil); err != nil {
		t.Fatal(err)
	}
	_, err = b.Get(t.Context(), "old")
	if !errors.Is(err, ErrUnknownTerm) || !errors.Is(err, ErrIntegrity) || !strings.Contains(err.Error(), "old") {
		t.Fatalf("Get = %v, want ErrUnknownTerm naming the path", err)
	}
}

// TestReloadOnUnknownTerm: node B, with no change feed, meets a record
// written under a term node A added and reloads once to read it.
func TestReloadOnUnknownTerm(t *testing.T) {
	mem := newMem()
	a, root := unsealed(t, mem, nil)
	nodeB := join(t, mem, Options{Rand: rand.Reader}, root)
	if _, err := a.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	mustPut(t, a, "k", "written by A under term 2")
	mustGet(t, nodeB, "k", "written by A under term 2")
	if st := nodeB.Status(); st.Term != 2 {
		t.Fatalf("B after reload: %+v", st)
	}
	// B's own rotation merges, never drops A's terms.
	if n, err := nodeB.Rotate(t.Context()); err != nil || n != 3 {
		t.Fatalf("B Rotate = %d, %v", n, err)
	}
	if err := a.Reload(t.Context()); err != nil || a.Status().Term != 3 || a.Status().Terms != 3 {
		t.Fatalf("A Reload: %v %+v", err, a.Status())
	}
}

func TestReloadBySubscription(t *testing.T) {
	mem := newSubMem()
	a, root := unsealed(t, mem, nil)
	nodeB := join(t, mem, Options{Rand: rand.Reader}, root)
	if _, err := a.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for nodeB.Status().Term != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("B never picked up term 2: %+v", nodeB.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Data subscriptions pass through, without core/ keys.
	seen := make(chan string, 8)
	cancel := nodeB.Subscribe(func(k string) { seen <- k })
	defer cancel()
	if _, err := a.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	mustPut(t, a, "auth/revoked/s1", "x")
	select {
	case k := <-seen:
		if k != "auth/revoked/s1" {
			t.Fatalf("subscriber saw %q first, want auth/revoked/s1", k)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the subscriber saw no change within 10 s")
	}
	if got := New(newMem(), Options{}).Subscribe(func(string) {}); got == nil {
		t.Fatal("Subscribe on a plain backend must return a no-op cancel")
	}
}

func TestReloadRefusesRollback(t *testing.T) {
	mem := newMem()
	b, _ := unsealed(t, mem, nil)
	stale := mem.raw(t, keyringPath)
	if _, err := b.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	mem.setRaw(keyringPath, stale) // storage replays the term-1 keyring
	if err := b.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := b.Status(); st.Term != 2 || st.Terms != 2 {
		t.Fatalf("rolled back to %+v", st)
	}
}

func TestSealWrap(t *testing.T) {
	mem := newMem()
	w := newWrapper(t)
	b, root := unsealed(t, mem, w)
	mustPut(t, b, "k", "v")
	keyBytes := b.ring.Load().terms[1].key.Clone()

	// Storage + root key alone: the payload is an HSM envelope, not the
	// keyring (the key appears neither raw nor base64-encoded).
	blob := mem.raw(t, keyringPath)
	aead, _ := newGCM(root)
	payload, err := aead.Open(nil, nil, blob[1:], ringAAD)
	if err != nil {
		t.Fatal(err)
	}
	if payload[0] != modeWrapped || bytes.Contains(payload, keyBytes) ||
		bytes.Contains(payload, []byte(base64.StdEncoding.EncodeToString(keyBytes))) || bytes.Contains(payload, []byte("active_term")) {
		t.Fatal("keyring readable with storage + root key alone")
	}

	b.Seal()
	if err := b.Unseal(t.Context(), root, nil); !errors.Is(err, ErrWrapperMismatch) || !b.Sealed() {
		t.Fatalf("Unseal without wrapper: %v", err)
	}
	if err := b.Unseal(t.Context(), root, newWrapper(t)); err == nil || !b.Sealed() {
		t.Fatalf("Unseal with another HSM key: %v", err)
	}
	if err := b.Unseal(t.Context(), root, w); err != nil {
		t.Fatal(err)
	}
	mustGet(t, b, "k", "v")

	// operator rewrap: off, then on again.
	if err := b.SetWrapper(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	b.Seal()
	if err := b.Unseal(t.Context(), root, w); !errors.Is(err, ErrWrapperMismatch) {
		t.Fatalf("Unseal plain keyring with wrapper: %v, want ErrWrapperMismatch", err)
	}
	if err := b.Unseal(t.Context(), root, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.SetWrapper(t.Context(), w); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Rotate(t.Context()); err != nil { // rotate keeps the wrap
		t.Fatal(err)
	}
	b.Seal()
	if err := b.Unseal(t.Context(), root, w); err != nil || b.Status().Term != 2 {
		t.Fatalf("Unseal after rewrap: %v %+v", err, b.Status())
	}
	mustGet(t, b, "k", "v")
}

func TestKeyringJSON(t *testing.T) {
	kr := fixedKeyring(t)
	js := kr.marshal()
	back, err := unmarshalKeyring(js)
	if err != nil {
		t.Fatal(err)
	}
	if back.active != 7 || len(back.terms) != 2 || !back.terms[1].key.Equal(kr.terms[1].key) ||
		!back.terms[7].installed.Equal(testTime) {
		t.Fatalf("round trip lost data: %s", js)
	}
	bad := map[string]string{
		"not json":       `{`,
		"no active key":  `{"active_term":2,"terms":[{"term":1,"key":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","install_time":"2026-01-02T03:04:05Z"}]}`,
		"short key":      `{"active_term":1,"terms":[{"term":1,"key":"AAEC","install_time":"2026-01-02T03:04:05Z"}]}`,
		"term zero":      `{"active_term":0,"terms":[{"term":0,"key":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","install_time":"2026-01-02T03:04:05Z"}]}`,
		"duplicate term": `{"active_term":1,"terms":[{"term":1,"key":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","install_time":"2026-01-02T03:04:05Z"},{"term":1,"key":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","install_time":"2026-01-02T03:04:05Z"}]}`,
		"empty terms":    `{"active_term":1,"terms":[]}`,
	}
	for name, js := range bad {
		if _, err := unmarshalKeyring([]byte(js)); !errors.Is(err, ErrIntegrity) {
			t.Errorf("%s: %v, want ErrIntegrity", name, err)
		} else if strings.Contains(err.Error(), "AAEC") {
			t.Errorf("%s: error leaks key material: %v", name, err)
		}
	}
}

func TestCloseSealsButKeepsBackend(t *testing.T) {
	mem := newSubMem()
	b, root := unsealed(t, mem, nil)
	mustPut(t, b, "k", "v")
	if err := b.Close(); err != nil || !b.Sealed() {
		t.Fatalf("Close: %v, sealed %v", err, b.Sealed())
	}
	b2 := New(mem, Options{Rand: rand.Reader})
	if err := b2.Unseal(context.Background(), root, nil); err != nil {
		t.Fatal(err)
	}
	defer b2.Seal()
	mustGet(t, b2, "k", "v")
}
