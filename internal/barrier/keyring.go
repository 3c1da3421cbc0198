package barrier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
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

func checkRootKey(k secret.Bytes) error {
	if len(k) != keyLen {
		return fmt.Errorf("%w: root key must be %d bytes, got %d", ErrInvalidRootKey, keyLen, len(k))
	}
	return nil
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
