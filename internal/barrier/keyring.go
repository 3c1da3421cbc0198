package barrier

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

// The keyring record at core/keyring is
//
//	ringVersion || nonce(12) || AES-256-GCM_root(mode || payload)
//
// with AAD = ringVersion || "core/keyring". mode is modePlain (payload is
// the keyring JSON) or modeWrapped (payload is Wrapper.Wrap(JSON)).
//
// Seal wrap goes inside the root-key layer (wrap, then root-encrypt):
// storage alone reveals nothing; storage + root key reveals only the HSM
// envelope; and a wrong root key is rejected by GCM before the HSM is
// asked anything. Because the mode byte is under the root-key GCM tag, it
// cannot be flipped to strip the wrap without the root key, and even with
// the root key a plain keyring is refused while a Wrapper is configured.
const (
	ringVersion byte = 1
	modePlain   byte = 0
	modeWrapped byte = 1
)

// Initialized reports whether the keyring record exists.
func (b *Barrier) Initialized(ctx context.Context) (bool, error) {
	_, err := b.backend.Get(ctx, keyringPath)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, storage.ErrNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("barrier: reading keyring: %w", err)
	}
}

// Initialize creates the keyring with term 1, encrypted under rootKey and
// seal-wrapped by w when w is not nil. The barrier stays sealed; call
// Unseal next. If the key cannot be generated, nothing is written.
func (b *Barrier) Initialize(ctx context.Context, rootKey secret.Bytes, w Wrapper) error {
	return b.InitializeWith(ctx, rootKey, w, nil, nil)
}

// InitializeWith is Initialize that also keeps meta inside the keyring
// record (encrypted and authenticated under the root key: the core keeps
// the seal configuration there, see Meta) and writes the extra physical
// records (under core/) in the same atomic batch, so that a crash leaves
// either all of them or none.
//
// Existence is checked before writing; the batch is not conditional, so the
// caller must not initialize concurrently from two nodes (the core does it
// once, from one).
func (b *Barrier) InitializeWith(ctx context.Context, rootKey secret.Bytes, w Wrapper, meta []byte, extra []storage.Op) error {
	if err := checkRootKey(rootKey); err != nil {
		return err
	}
	for _, op := range extra {
		if !strings.HasPrefix(op.Key, reservedPrefix) || op.Key == keyringPath {
			return fmt.Errorf("barrier: initialize: extra record %q must be a core/ record other than the keyring", op.Key)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	init, err := b.Initialized(ctx)
	if err != nil {
		return err
	}
	if init {
		return ErrAlreadyInitialized
	}
	t, err := b.newTerm(1)
	if err != nil {
		return err
	}
	kr := &keyring{active: 1, terms: map[uint32]*term{1: t}, meta: bytes.Clone(meta)}
	defer kr.destroy()
	blob, err := encodeKeyring(ctx, rootKey, w, kr)
	if err != nil {
		return err
	}
	ops := append(slices.Clone(extra), storage.Op{Key: keyringPath, Value: blob})
	if err := b.backend.Batch(ctx, ops); err != nil {
		return fmt.Errorf("barrier: writing keyring: %w", err)
	}
	b.log.Info("barrier initialized", "term", 1, "seal_wrap", w != nil)
	return nil
}

// Unseal decrypts the keyring with rootKey (and w, when the keyring is
// seal-wrapped) and makes the barrier usable. Unsealing an unsealed barrier
// is a no-op.
func (b *Barrier) Unseal(ctx context.Context, rootKey secret.Bytes, w Wrapper) error {
	if err := checkRootKey(rootKey); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.Sealed() {
		return nil
	}
	_, kr, err := b.readKeyring(ctx, rootKey, w)
	if err != nil {
		return err
	}
	b.root = rootKey.Clone()
	b.wrapper = w
	b.ring.Store(kr)
	b.writes.reopen()
	b.loadUsageLocked(ctx, kr)
	b.watchLocked()
	b.log.Info("barrier unsealed", "term", kr.active, "terms", len(kr.terms))
	return nil
}

// CheckRoot reports whether candidate (with w) opens the stored keyring,
// sealed or not: nil, or an error wrapping ErrWrongRootKey,
// ErrWrapperMismatch or ErrNotInitialized.
func (b *Barrier) CheckRoot(ctx context.Context, candidate secret.Bytes, w Wrapper) error {
	if err := checkRootKey(candidate); err != nil {
		return err
	}
	_, kr, err := b.readKeyring(ctx, candidate, w)
	if err != nil {
		return err
	}
	kr.destroy()
	return nil
}

// Meta returns the metadata kept inside the keyring (nil while sealed or
// when there is none). It is authenticated by the root key: storage cannot
// alter it without the root key, only replay an older keyring.
func (b *Barrier) Meta() []byte {
	kr := b.ring.Load()
	if kr == nil {
		return nil
	}
	return bytes.Clone(kr.meta)
}

// UpdateMeta replaces the keyring's metadata with fn's result, atomically
// across nodes (fn sees the stored metadata and may be called again when
// another node changed the keyring in between).
func (b *Barrier) UpdateMeta(ctx context.Context, fn func(cur []byte) ([]byte, error)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, err := b.modifyLocked(ctx, b.root, b.wrapper, func(cur *keyring) (*keyring, error) {
		meta, err := fn(bytes.Clone(cur.meta))
		if err != nil {
			return nil, err
		}
		return cur.withMeta(meta), nil
	})
	return err
}

// Seal drops and zeroizes every key held in memory: the keyring keys and
// the root key. (The AES key schedules inside crypto/aes cannot be wiped
// from outside; they become unreachable.) Writes in flight finish first
// and new ones are refused, so once Seal returns the barrier writes
// nothing, not even from a background reload or rotation (they run under
// mu and find it sealed).
func (b *Barrier) Seal() {
	b.writes.close()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopWatch != nil {
		b.stopWatch()
		b.stopWatch = nil
	}
	kr := b.ring.Swap(nil)
	if kr != nil {
		kr.destroy()
		b.log.Info("barrier sealed")
	}
	b.root.Destroy()
	b.root, b.wrapper = nil, nil
}

// errNoRotation tells rotate that the active term already moved on.
var errNoRotation = errors.New("barrier: active term already rotated")

// Rotate adds a new key term, used for every later write; older terms keep
// decrypting. The keyring is changed with compare-and-swap, so rotations on
// several nodes at once all land (each adds its own term). If the key
// cannot be generated or the keyring not written, nothing changes.
func (b *Barrier) Rotate(ctx context.Context) (uint32, error) {
	n, _, err := b.rotate(ctx, 0)
	return n, err
}

// RotateFrom rotates only while from is still the active term, so that
// nodes deciding at once to rotate (nonce budget) add one term, not one
// each. It returns the active term afterwards and whether it rotated.
func (b *Barrier) RotateFrom(ctx context.Context, from uint32) (uint32, bool, error) {
	return b.rotate(ctx, from)
}

func (b *Barrier) rotate(ctx context.Context, from uint32) (uint32, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	next, err := b.modifyLocked(ctx, b.root, b.wrapper, func(cur *keyring) (*keyring, error) {
		if from != 0 && cur.active != from {
			return nil, errNoRotation
		}
		var top uint32
		for n := range cur.terms {
			top = max(top, n)
		}
		if top == math.MaxUint32 {
			return nil, errors.New("barrier: rotate: key terms exhausted")
		}
		t, err := b.newTerm(top + 1)
		if err != nil {
			return nil, err
		}
		next := &keyring{active: t.term, terms: maps.Clone(cur.terms), meta: cur.meta}
		next.terms[t.term] = t
		return next, nil
	})
	if errors.Is(err, errNoRotation) {
		return b.ring.Load().active, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	b.log.Info("barrier key rotated", "term", next.active, "terms", len(next.terms))
	return next.active, true, nil
}

// Rekey re-encrypts the keyring under newRoot (operator rekey). The caller
// must make newRoot recoverable (new shares delivered, or HSM-wrapped and
// stored) before or atomically with this call: once it returns, the old
// root key no longer unseals. Other nodes must be unsealed again with the
// new root key, as their Reload will fail with ErrWrongRootKey.
func (b *Barrier) Rekey(ctx context.Context, newRoot secret.Bytes) error {
	return b.RekeyMeta(ctx, newRoot, nil)
}

// RekeyMeta is Rekey that also replaces the keyring's metadata (nil keeps
// it) in the same write.
func (b *Barrier) RekeyMeta(ctx context.Context, newRoot secret.Bytes, meta []byte) error {
	if err := checkRootKey(newRoot); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.modifyLocked(ctx, newRoot, b.wrapper, func(cur *keyring) (*keyring, error) {
		if meta == nil {
			return cur, nil
		}
		return cur.withMeta(meta), nil
	}); err != nil {
		return err
	}
	b.root.Destroy()
	b.root = newRoot.Clone()
	b.log.Info("barrier root key changed")
	return nil
}

// SetWrapper rewrites the keyring seal-wrapped by w, or plain when w is nil
// (operator rewrap). Later Unseal calls must pass the matching wrapper.
func (b *Barrier) SetWrapper(ctx context.Context, w Wrapper) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.modifyLocked(ctx, b.root, w, func(cur *keyring) (*keyring, error) { return cur, nil }); err != nil {
		return err
	}
	b.wrapper = w
	b.log.Info("barrier keyring rewrapped", "seal_wrap", w != nil)
	return nil
}

// Reload re-reads the keyring, picking up terms another node added. Terms
// already known are kept, and the active term never moves back: a stale
// keyring replayed by storage cannot roll the barrier back. When storage
// lacks a term this node holds, the node says so loudly and writes the
// keyring back with it, so that nothing it encrypted becomes unreadable.
func (b *Barrier) Reload(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reloadLocked(ctx)
}

func (b *Barrier) reloadLocked(ctx context.Context) error {
	_, _, lost, err := b.refreshLocked(ctx)
	if err != nil || !lost {
		return err
	}
	_, err = b.modifyLocked(ctx, b.root, b.wrapper, func(cur *keyring) (*keyring, error) { return cur, nil })
	if err != nil {
		return fmt.Errorf("barrier: writing back the terms storage lost: %w", err)
	}
	return nil
}

// reloadForTerm reloads unless another caller already fetched term.
func (b *Barrier) reloadForTerm(ctx context.Context, tn uint32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if kr := b.ring.Load(); kr != nil && kr.terms[tn] != nil {
		return nil
	}
	return b.reloadLocked(ctx)
}

// maxRingAttempts bounds modifyLocked's retries under contention.
const maxRingAttempts = 50

// modifyLocked is every keyring change: read the stored keyring, merge it
// with the one in memory, let fn build the next keyring, and store that with
// compare-and-swap under writeRoot and writeW. When another node changed the
// keyring in between, the write is refused (never last-writer-wins): the
// node says so, reloads, and calls fn again on what is now stored. fn must
// not change its argument; keys it creates for a keyring that lost the race
// are destroyed here.
func (b *Barrier) modifyLocked(ctx context.Context, writeRoot secret.Bytes, writeW Wrapper, fn func(cur *keyring) (*keyring, error)) (*keyring, error) {
	for attempt := 0; ; attempt++ {
		raw, cur, _, err := b.refreshLocked(ctx)
		if err != nil {
			return nil, err
		}
		next, err := fn(cur)
		if err != nil {
			return nil, err
		}
		blob, err := encodeKeyring(ctx, writeRoot, writeW, next)
		if err == nil {
			err = b.backend.CompareAndSwap(ctx, keyringPath, raw, blob)
		}
		if err == nil {
			b.ring.Store(next)
			return next, nil
		}
		for n, t := range next.terms { // keys made for a keyring never stored
			if cur.terms[n] != t {
				t.key.Destroy()
			}
		}
		if !errors.Is(err, storage.ErrConflict) {
			return nil, fmt.Errorf("barrier: writing keyring: %w", err)
		}
		if attempt+1 >= maxRingAttempts {
			return nil, fmt.Errorf("barrier: writing keyring: %d attempts lost to concurrent writers: %w", maxRingAttempts, err)
		}
		b.log.Warn("keyring changed on another node while this node wrote it; reloading and trying again", "term", cur.active, "attempt", attempt+1)
		if err := backoff(ctx, attempt); err != nil {
			return nil, err
		}
	}
}

// refreshLocked reads the stored keyring and merges it into the one in
// memory. It returns the stored record (for compare-and-swap), the merged
// keyring (also installed) and whether storage lacked terms held here.
func (b *Barrier) refreshLocked(ctx context.Context) (raw []byte, merged *keyring, lost bool, err error) {
	cur := b.ring.Load()
	if cur == nil {
		return nil, nil, false, ErrSealed
	}
	raw, stored, err := b.readKeyring(ctx, b.root, b.wrapper)
	if errors.Is(err, ErrNotInitialized) {
		return nil, nil, false, fmt.Errorf("%w: %q: the keyring record is missing from storage", ErrIntegrity, keyringPath)
	}
	if err != nil {
		return nil, nil, false, err
	}
	merged, changed, lost := b.merge(cur, stored)
	if changed {
		b.ring.Store(merged)
		b.log.Info("barrier keyring reloaded", "term", merged.active, "terms", len(merged.terms))
	}
	return raw, merged, lost, nil
}

// merge combines the keyring in memory with the stored one. Storage is
// authoritative for the keys of the terms it holds and for the metadata;
// terms only memory holds are kept (storage lost them: rolled back, or an
// older node overwrote them), and the active term never moves back.
func (b *Barrier) merge(cur, stored *keyring) (merged *keyring, changed, lost bool) {
	merged = &keyring{active: cur.active, terms: maps.Clone(cur.terms), meta: cur.meta}
	for n, t := range stored.terms {
		switch mine := merged.terms[n]; {
		case mine == nil:
			merged.terms[n] = t
			changed = true
		case !mine.key.Equal(t.key):
			b.log.Error("the stored keyring holds another key for a term this node holds: two nodes created the same term; adopting the stored key (what this node wrote under its own key cannot be read)", "term", n)
			merged.terms[n] = t
			changed = true
		default:
			t.key.Destroy()
		}
	}
	var missing []uint32
	for n := range cur.terms {
		if stored.terms[n] == nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		b.log.Error("the stored keyring lacks terms this node holds (storage rolled back or overwritten); keeping them and writing them back", "terms", missing)
		lost = true
	}
	switch {
	case stored.active > cur.active:
		b.log.Info("keyring term changed on another node; this node now writes under it", "term", stored.active, "was", cur.active)
		merged.active = stored.active
		changed = true
	case stored.active < cur.active:
		b.log.Warn("stored keyring is older than the one in memory; keeping the newer active term",
			"stored_term", stored.active, "term", cur.active)
		lost = true
	}
	if stored.meta != nil && !bytes.Equal(stored.meta, cur.meta) {
		merged.meta = stored.meta
		changed = true
	}
	return merged, changed, lost
}

// withMeta returns a copy of kr with meta replaced.
func (kr *keyring) withMeta(meta []byte) *keyring {
	return &keyring{active: kr.active, terms: maps.Clone(kr.terms), meta: bytes.Clone(meta)}
}

// watchLocked subscribes to keyring changes when the backend reports them,
// and reloads off the notifier's goroutine (its fn must not block).
func (b *Barrier) watchLocked() {
	sub, ok := b.backend.(storage.Subscriber)
	if !ok {
		return
	}
	kick := make(chan struct{}, 1)
	stop := make(chan struct{})
	cancel := sub.Subscribe(func(key string) {
		if key == keyringPath || key == "" {
			select {
			case kick <- struct{}{}:
			default: // a reload is already pending
			}
		}
	})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-kick:
				select {
				case <-stop: // sealed meanwhile: this watcher's session is over
					return
				default:
				}
				ctx, done := context.WithTimeout(context.Background(), 30*time.Second)
				err := b.Reload(ctx)
				done()
				if err != nil && !errors.Is(err, ErrSealed) {
					b.log.Warn("barrier keyring reload failed", "error", err)
				}
			}
		}
	}()
	b.stopWatch = func() {
		cancel()
		close(stop)
	}
}

func checkRootKey(k secret.Bytes) error {
	if len(k) != keyLen {
		return fmt.Errorf("%w: root key must be %d bytes, got %d", ErrInvalidRootKey, keyLen, len(k))
	}
	return nil
}

// newTerm draws a fresh key from the CSP source, failing closed.
func (b *Barrier) newTerm(n uint32) (*term, error) {
	if b.rand == nil {
		return nil, errors.New("barrier: Options.Rand is nil")
	}
	key := make(secret.Bytes, keyLen)
	if _, err := io.ReadFull(b.rand, key); err != nil {
		key.Destroy()
		return nil, fmt.Errorf("barrier: generating key for term %d: %w", n, err)
	}
	return buildTerm(n, key, time.Now().UTC().Round(0))
}

func buildTerm(n uint32, key secret.Bytes, installed time.Time) (*term, error) {
	aead, err := newGCM(key)
	if err != nil {
		key.Destroy()
		return nil, err
	}
	return &term{term: n, key: key, installed: installed, aead: aead, use: &usage{}}, nil
}

// newGCM is AES-256-GCM with a random 96-bit nonce that the cipher draws
// itself and puts first (nonce || ciphertext || tag, the layout records
// already had). Caller-chosen nonces through cipher.NewGCM are not
// approved by Go's FIPS 140-3 module and fail under GODEBUG=fips140=only
// (NIST SP 800-38D §8.2.2; FIPS 140-3 IG C.H).
func newGCM(key []byte) (cipher.AEAD, error) {
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("barrier: %w", err)
	}
	return cipher.NewGCMWithRandomNonce(blk)
}

func (kr *keyring) destroy() {
	for _, t := range kr.terms {
		t.key.Destroy()
	}
}

// encodeKeyring encrypts kr under root (wrapped by w if set).
func encodeKeyring(ctx context.Context, root secret.Bytes, w Wrapper, kr *keyring) ([]byte, error) {
	js := kr.marshal()
	defer secret.Wipe(js)
	var payload []byte
	if w != nil {
		env, err := w.Wrap(ctx, keyringPath, js)
		if err != nil {
			return nil, fmt.Errorf("barrier: seal-wrapping keyring: %w", err)
		}
		payload = append([]byte{modeWrapped}, env...)
	} else {
		payload = make([]byte, 1+len(js))
		payload[0] = modePlain
		copy(payload[1:], js)
	}
	defer secret.Wipe(payload)
	aead, err := newGCM(root)
	if err != nil {
		return nil, err
	}
	blob := make([]byte, 1, 1+nonceLen+len(payload)+tagLen)
	blob[0] = ringVersion
	return aead.Seal(blob, nil, payload, ringAAD), nil // #nosec G407 -- NewGCMWithRandomNonce draws the nonce (ringVersion || nonce || ct || tag)
}

var ringAAD = []byte{ringVersion, 'c', 'o', 'r', 'e', '/', 'k', 'e', 'y', 'r', 'i', 'n', 'g'}

// readKeyring fetches and decrypts the keyring; raw is the stored record.
func (b *Barrier) readKeyring(ctx context.Context, root secret.Bytes, w Wrapper) ([]byte, *keyring, error) {
	blob, err := b.backend.Get(ctx, keyringPath)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil, ErrNotInitialized
	}
	if err != nil {
		return nil, nil, fmt.Errorf("barrier: reading keyring: %w", err)
	}
	kr, err := openKeyring(ctx, root, w, blob)
	return blob, kr, err
}

func openKeyring(ctx context.Context, root secret.Bytes, w Wrapper, blob []byte) (*keyring, error) {
	if len(blob) < 1+nonceLen+tagLen+1 || blob[0] != ringVersion {
		return nil, fmt.Errorf("%w: %q: malformed keyring record", ErrIntegrity, keyringPath)
	}
	aead, err := newGCM(root)
	if err != nil {
		return nil, err
	}
	payload, err := aead.Open(nil, nil, blob[1:], ringAAD)
	if err != nil {
		return nil, fmt.Errorf("%w (or the keyring record was altered)", ErrWrongRootKey)
	}
	defer secret.Wipe(payload)
	switch {
	case len(payload) < 1:
		return nil, fmt.Errorf("%w: %q: empty keyring", ErrIntegrity, keyringPath)
	case payload[0] == modePlain && w == nil:
		return unmarshalKeyring(payload[1:])
	case payload[0] == modeWrapped && w != nil:
		js, err := w.Unwrap(ctx, keyringPath, payload[1:])
		if err != nil {
			return nil, fmt.Errorf("barrier: unwrapping keyring: %w", err)
		}
		defer js.Destroy()
		return unmarshalKeyring(js)
	case payload[0] == modePlain:
		return nil, fmt.Errorf("%w: the keyring is not seal-wrapped but a wrapper was given", ErrWrapperMismatch)
	case payload[0] == modeWrapped:
		return nil, fmt.Errorf("%w: the keyring is seal-wrapped but no wrapper was given", ErrWrapperMismatch)
	default:
		return nil, fmt.Errorf("%w: %q: unknown keyring mode %d", ErrIntegrity, keyringPath, payload[0])
	}
}

// marshal writes the keyring JSON by hand into one buffer sized up front,
// so no key material is left behind in encoding/json's pooled buffers or in
// abandoned slices from append growth; the caller wipes the result.
//
//	{"active_term":N,"terms":[{"term":N,"key":"base64","install_time":"RFC3339"}],"meta":"base64"}
//
// meta is opaque to the barrier (the core's seal configuration).
func (kr *keyring) marshal() []byte {
	b := make([]byte, 0, 64+len(kr.terms)*192)
	b = append(b, `{"active_term":`...)
	b = strconv.AppendUint(b, uint64(kr.active), 10)
	b = append(b, `,"terms":[`...)
	first := true
	for _, n := range sortedTerms(kr) {
		t := kr.terms[n]
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"term":`...)
		b = strconv.AppendUint(b, uint64(t.term), 10)
		b = append(b, `,"key":"`...)
		b = base64.StdEncoding.AppendEncode(b, t.key)
		b = append(b, `","install_time":"`...)
		b = t.installed.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, `"}`...)
	}
	b = append(b, ']')
	if kr.meta != nil {
		b = append(b, `,"meta":"`...)
		b = base64.StdEncoding.AppendEncode(b, kr.meta)
		b = append(b, '"')
	}
	return append(b, '}')
}

func sortedTerms(kr *keyring) []uint32 {
	ns := make([]uint32, 0, len(kr.terms))
	for n := range kr.terms {
		ns = append(ns, n)
	}
	for i := 1; i < len(ns); i++ { // tiny: insertion sort
		for j := i; j > 0 && ns[j] < ns[j-1]; j-- {
			ns[j], ns[j-1] = ns[j-1], ns[j]
		}
	}
	return ns
}

type keyringJSON struct {
	ActiveTerm uint32 `json:"active_term"`
	Terms      []struct {
		Term        uint32    `json:"term"`
		Key         []byte    `json:"key"`
		InstallTime time.Time `json:"install_time"`
	} `json:"terms"`
	Meta []byte `json:"meta"`
}

// unmarshalKeyring decodes and validates the keyring JSON. The decoded key
// slices become the terms' keys (no extra copies).
func unmarshalKeyring(js []byte) (*keyring, error) {
	var kj keyringJSON
	err := json.Unmarshal(js, &kj)
	wipe := func() {
		for _, t := range kj.Terms {
			secret.Wipe(t.Key)
		}
	}
	if err != nil {
		wipe()
		return nil, fmt.Errorf("%w: %q: keyring is not valid JSON", ErrIntegrity, keyringPath)
	}
	kr := &keyring{active: kj.ActiveTerm, terms: make(map[uint32]*term, len(kj.Terms)), meta: kj.Meta}
	for i, tj := range kj.Terms {
		var problem string
		switch {
		case tj.Term == 0:
			problem = "term 0"
		case len(tj.Key) != keyLen:
			problem = fmt.Sprintf("key of %d bytes", len(tj.Key))
		case kr.terms[tj.Term] != nil:
			problem = "duplicate term"
		}
		if problem != "" {
			wipe()
			return nil, fmt.Errorf("%w: %q: keyring terms[%d]: %s", ErrIntegrity, keyringPath, i, problem)
		}
		t, err := buildTerm(tj.Term, secret.Bytes(tj.Key), tj.InstallTime)
		if err != nil {
			wipe()
			return nil, err
		}
		kr.terms[tj.Term] = t
	}
	if kr.terms[kr.active] == nil {
		wipe()
		return nil, fmt.Errorf("%w: %q: keyring active_term %d has no key", ErrIntegrity, keyringPath, kr.active)
	}
	return kr, nil
}

// VerifyRoot checks, in constant time, that candidate is the root key the
// barrier was unsealed with: operators prove they hold it (rekey) by
// presenting a threshold of shares.
func (b *Barrier) VerifyRoot(_ context.Context, candidate secret.Bytes) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Sealed() {
		return ErrSealed
	}
	if !b.root.Equal(candidate) {
		return ErrWrongRootKey
	}
	return nil
}
