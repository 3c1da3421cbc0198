// Package barrier is the encryption barrier between the vault and its
// untrusted storage (modelled on OpenBao's vault/barrier_aes_gcm.go). Every
// value is sealed with AES-256-GCM under a key term from the keyring, with
// the record's version, term and storage path as associated data, so a
// value cannot be altered, truncated or moved to another path unnoticed.
// The keyring itself lives at core/keyring, encrypted under the root key
// and optionally seal-wrapped by an HSM-held key.
//
// Barrier satisfies storage.Backend (Get/Put/Delete/List/Batch/Close), so
// services consume it through the same small key/value interface; Close
// seals the barrier but never closes the backend below it.
package barrier

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

var (
	// ErrSealed is returned by every data call while the barrier is sealed.
	ErrSealed = errkind.New(errkind.Sealed, "sealed", "the vault is sealed")
	// ErrIntegrity means a stored record failed authentication: it was
	// altered, truncated, moved from another path or has an unknown format.
	ErrIntegrity = errkind.New(errkind.Integrity, "integrity_error", "barrier: integrity check failed")
	// ErrUnknownTerm means a record names a key term the keyring lacks even
	// after a reload. It wraps ErrIntegrity, so callers may treat both alike.
	ErrUnknownTerm = fmt.Errorf("barrier: unknown key term: %w", ErrIntegrity)
	// ErrReservedPath refuses logical keys under core/, which the core owns.
	ErrReservedPath = errkind.New(errkind.Invalid, "", "barrier: path is reserved for the core")
	// ErrWrongRootKey means the keyring did not authenticate under the given
	// root key (a wrong key, or a tampered keyring record).
	ErrWrongRootKey = errkind.New(errkind.Invalid, "", "barrier: wrong root key")
	// ErrInvalidRootKey reports a root key of the wrong length.
	ErrInvalidRootKey = errkind.New(errkind.Invalid, "", "barrier: invalid root key")
	// ErrAlreadyInitialized is returned by Initialize when a keyring exists.
	ErrAlreadyInitialized = errkind.New(errkind.Invalid, "already_initialized", "the vault is already initialized")
	// ErrNotInitialized is returned by Unseal when no keyring exists.
	ErrNotInitialized = errkind.New(errkind.Sealed, "not_initialized", "the vault is not initialized")
	// ErrWrapperMismatch means the keyring's seal-wrap state differs from the
	// Wrapper given: a wrapped keyring needs one, and a plain keyring is
	// refused when one is given (that would let storage + root key holders
	// downgrade to a keyring of their choosing). Use SetWrapper to migrate.
	ErrWrapperMismatch = errkind.New(errkind.Sealed, "seal_wrap_mismatch", "barrier: keyring seal-wrap state does not match the configured wrapper")
)

// Wrapper seal-wraps the keyring with an HSM-held key; package sealwrap
// implements it.
type Wrapper interface {
	Wrap(ctx context.Context, path string, plaintext []byte) ([]byte, error)
	Unwrap(ctx context.Context, path string, envelope []byte) (secret.Bytes, error)
}

// Options are the barrier's dependencies.
type Options struct {
	// Rand is the CSP source for keyring keys (the entropy mixer); required.
	// Nonces come from crypto/rand: they need uniqueness, not secrecy.
	Rand io.Reader
	// Logger receives state changes (unseal, seal, rotate); never key bytes.
	Logger *slog.Logger
	// Budget bounds the encryptions per key term (see usage.go).
	Budget Budget
}

// Status describes the active key term.
type Status struct {
	Term        uint32
	InstallTime time.Time
	Terms       int
}

const (
	recordVersion  byte = 1
	termLen             = 4
	nonceLen            = 12
	tagLen              = 16
	headerLen           = 1 + termLen + nonceLen
	keyLen              = 32 // AES-256
	keyringPath         = "core/keyring"
	reservedPrefix      = "core/"
)

// Barrier encrypts a storage.Backend. It is safe for concurrent use.
type Barrier struct {
	backend storage.Backend
	rand    io.Reader
	log     *slog.Logger
	budget  Budget
	// rotating is set while an automatic rotation runs.
	rotating atomic.Bool

	// ring is the immutable keyring snapshot the data path reads without a
	// lock; nil while sealed.
	ring atomic.Pointer[keyring]

	// writes admits the writes of records and of the encryption count;
	// Seal closes it and waits for those in flight, so that a sealed
	// barrier writes nothing (keyring writes are serialised by mu).
	writes writeGate

	mu        sync.Mutex // serializes unseal, seal, rotate, rekey, reload
	root      secret.Bytes
	wrapper   Wrapper
	stopWatch func()
}

// New returns a sealed barrier over b.
func New(b storage.Backend, opts Options) *Barrier {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	br := &Barrier{backend: b, rand: opts.Rand, log: log, budget: opts.Budget.withDefaults()}
	br.writes.idle = sync.NewCond(&br.writes.mu)
	return br
}

// writeGate counts the writes in flight. Unlike a sync.RWMutex it never
// blocks an entry, so a write may enter again inside another (a record's
// encryption-count reservation) without deadlocking against a waiting
// Seal: once closed, entries fail.
type writeGate struct {
	mu   sync.Mutex
	idle *sync.Cond // signalled when n drops to 0
	open bool
	n    int
}

// enter admits one write, or returns ErrSealed once the gate is closed.
func (g *writeGate) enter() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.open {
		return ErrSealed
	}
	g.n++
	return nil
}

func (g *writeGate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n--; g.n == 0 {
		g.idle.Broadcast()
	}
}

// close refuses new writes and waits for those in flight to finish.
func (g *writeGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = false
	for g.n > 0 {
		g.idle.Wait()
	}
}

func (g *writeGate) reopen() {
	g.mu.Lock()
	g.open = true
	g.mu.Unlock()
}

// Sealed reports whether the barrier holds no keys.
func (b *Barrier) Sealed() bool { return b.ring.Load() == nil }

// Status returns the active term; the zero Status while sealed.
func (b *Barrier) Status() Status {
	kr := b.ring.Load()
	if kr == nil {
		return Status{}
	}
	t := kr.terms[kr.active]
	return Status{Term: t.term, InstallTime: t.installed, Terms: len(kr.terms)}
}

func checkKey(key string) error {
	if strings.HasPrefix(key, reservedPrefix) {
		return fmt.Errorf("%w: %q", ErrReservedPath, key)
	}
	return nil
}

// Get decrypts the value at key. A record naming an unknown term triggers
// one keyring reload first, since another node may have rotated.
func (b *Barrier) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	_, pt, found, err := b.getRaw(ctx, key)
	if err == nil && !found {
		return nil, fmt.Errorf("barrier: get %q: %w", key, storage.ErrNotFound)
	}
	return pt, err
}

// Put encrypts value under the active term and stores it at key.
func (b *Barrier) Put(ctx context.Context, key string, value []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := b.writes.enter(); err != nil {
		return err
	}
	defer b.writes.leave()
	kr := b.ring.Load()
	if kr == nil {
		return ErrSealed
	}
	rec, err := b.sealValue(ctx, kr, key, value)
	if err != nil {
		return err
	}
	if err := b.backend.Put(ctx, key, rec); err != nil {
		return fmt.Errorf("barrier: put %q: %w", key, err)
	}
	return nil
}

// Delete removes key.
func (b *Barrier) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := b.writes.enter(); err != nil {
		return err
	}
	defer b.writes.leave()
	if b.Sealed() {
		return ErrSealed
	}
	if err := b.backend.Delete(ctx, key); err != nil {
		return fmt.Errorf("barrier: delete %q: %w", key, err)
	}
	return nil
}

// Batch encrypts every put and applies all ops atomically.
func (b *Barrier) Batch(ctx context.Context, ops []storage.Op) error {
	for _, op := range ops {
		if err := checkKey(op.Key); err != nil {
			return err
		}
	}
	if err := b.writes.enter(); err != nil {
		return err
	}
	defer b.writes.leave()
	kr := b.ring.Load()
	if kr == nil {
		return ErrSealed
	}
	enc := make([]storage.Op, len(ops))
	for i, op := range ops {
		enc[i] = storage.Op{Key: op.Key, Delete: op.Delete, Create: op.Create}
		if !op.Delete {
			rec, err := b.sealValue(ctx, kr, op.Key, op.Value)
			if err != nil {
				return err
			}
			enc[i].Value = rec
		}
	}
	if err := b.backend.Batch(ctx, enc); err != nil {
		return fmt.Errorf("barrier: batch: %w", err)
	}
	return nil
}

// CompareAndSwap writes next at key only if the stored plaintext is old (nil
// old: the key must be absent; nil next: delete), atomically across every
// node sharing the storage: the stored ciphertext that decrypted to old is
// what the backend compares. It returns an error wrapping
// storage.ErrConflict when the plaintext differs or another writer won.
func (b *Barrier) CompareAndSwap(ctx context.Context, key string, old, next []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	raw, cur, found, err := b.getRaw(ctx, key)
	if err != nil {
		return err
	}
	if (old == nil) == found || (found && !bytes.Equal(cur, old)) {
		return fmt.Errorf("barrier: compare-and-swap %q: %w", key, storage.ErrConflict)
	}
	return b.swapRaw(ctx, key, raw, next)
}

// maxUpdateAttempts bounds Update's retries under contention; each attempt
// is one read and one conditional write.
const maxUpdateAttempts = 100

// Update atomically replaces the value at key with fn's result, across every
// node sharing the storage. fn receives the current plaintext (nil, false
// when the key is absent) and returns the next value, or del to delete it
// (deleting an absent key writes nothing). When another writer changed the
// key in between, Update reads again and calls fn again, so fn must have no
// side effects beyond its result. An error from fn aborts with nothing
// written and is returned as is. After maxUpdateAttempts lost races it
// returns an error wrapping storage.ErrConflict.
func (b *Barrier) Update(ctx context.Context, key string, fn func(cur []byte, found bool) (next []byte, del bool, err error)) error {
	if err := checkKey(key); err != nil {
		return err
	}
	for attempt := 0; attempt < maxUpdateAttempts; attempt++ {
		raw, cur, found, err := b.getRaw(ctx, key)
		if err != nil {
			return err
		}
		next, del, err := fn(cur, found)
		if err != nil {
			return err
		}
		if del && !found {
			return nil
		}
		if del {
			next = nil
		} else if next == nil {
			next = []byte{}
		}
		err = b.swapRaw(ctx, key, raw, next)
		if !errors.Is(err, storage.ErrConflict) {
			return err
		}
		if err := backoff(ctx, attempt); err != nil {
			return err
		}
	}
	return fmt.Errorf("barrier: update %q: %d attempts lost to concurrent writers: %w", key, maxUpdateAttempts, storage.ErrConflict)
}

// backoff sleeps a short, growing, jittered time between Update attempts so
// that contending writers spread out: up to 250 µs after the first lost
// race, growing to 8 ms, past the 5 ms a bolt batch waits for company (a
// ceiling of 2 ms left twelve writers of one key landing in the same
// batches, where only one can win, until some ran out of attempts).
func backoff(ctx context.Context, attempt int) error {
	var j [2]byte
	_, _ = rand.Read(j[:]) // jitter, not a secret; crypto/rand never fails on Linux
	ceil := time.Duration(min(attempt+1, 32)) * 250 * time.Microsecond
	d := time.Duration(binary.BigEndian.Uint16(j[:])) * ceil / 65536
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// getRaw reads key's stored record and its plaintext. A missing key gives
// found=false and no error.
func (b *Barrier) getRaw(ctx context.Context, key string) (raw, plain []byte, found bool, err error) {
	kr := b.ring.Load()
	if kr == nil {
		return nil, nil, false, ErrSealed
	}
	raw, err = b.backend.Get(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil, false, nil
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("barrier: get %q: %w", key, err)
	}
	plain, err = kr.open(key, raw)
	if errors.Is(err, ErrUnknownTerm) {
		if rerr := b.reloadForTerm(ctx, recordTerm(raw)); rerr != nil {
			return nil, nil, false, fmt.Errorf("%w (reload: %w)", err, rerr)
		}
		if kr = b.ring.Load(); kr == nil {
			return nil, nil, false, ErrSealed
		}
		plain, err = kr.open(key, raw)
	}
	if err != nil {
		return nil, nil, false, err
	}
	return raw, plain, true, nil
}

// swapRaw replaces the stored record raw (nil: absent) with next encrypted
// under the active term (nil next: delete).
func (b *Barrier) swapRaw(ctx context.Context, key string, raw, next []byte) error {
	if err := b.writes.enter(); err != nil {
		return err
	}
	defer b.writes.leave()
	kr := b.ring.Load()
	if kr == nil {
		return ErrSealed
	}
	var enc []byte
	if next != nil {
		var err error
		if enc, err = b.sealValue(ctx, kr, key, next); err != nil {
			return err
		}
	}
	if err := b.backend.CompareAndSwap(ctx, key, raw, enc); err != nil {
		return fmt.Errorf("barrier: compare-and-swap %q: %w", key, err)
	}
	return nil
}

// List returns logical keys under prefix; core/ keys are never listed.
func (b *Barrier) List(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	if err := checkKey(prefix); err != nil {
		return nil, err
	}
	if b.Sealed() {
		return nil, ErrSealed
	}
	filter := strings.HasPrefix(reservedPrefix, prefix) // prefix could match core/...
	var out []string
	for {
		keys, err := b.backend.List(ctx, prefix, after, limit)
		if err != nil {
			return nil, fmt.Errorf("barrier: list %q: %w", prefix, err)
		}
		if !filter {
			return keys, nil
		}
		for _, k := range keys {
			if !strings.HasPrefix(k, reservedPrefix) {
				out = append(out, k)
			}
		}
		if limit <= 0 || len(keys) < limit || len(out) >= limit {
			if limit > 0 && len(out) > limit {
				out = out[:limit]
			}
			return out, nil
		}
		after = keys[len(keys)-1] // refill what filtering removed
	}
}

// Subscribe passes backend change notifications through, without core/
// keys, when the backend is a storage.Subscriber; otherwise it is a no-op.
func (b *Barrier) Subscribe(fn func(key string)) (cancel func()) {
	sub, ok := b.backend.(storage.Subscriber)
	if !ok {
		return func() {}
	}
	return sub.Subscribe(func(key string) {
		if !strings.HasPrefix(key, reservedPrefix) {
			fn(key)
		}
	})
}

// Close seals the barrier. It does not close the backend, which its owner
// closes.
func (b *Barrier) Close() error {
	b.Seal()
	return nil
}

// keyring is an immutable snapshot: changes build a new one.
type keyring struct {
	active uint32
	terms  map[uint32]*term
	meta   []byte // the core's metadata, opaque here (see Meta)
}

type term struct {
	term      uint32
	key       secret.Bytes
	installed time.Time
	aead      cipher.AEAD // cached: no key schedule on the hot path
	use       *usage      // encryption count (nonce budget)
}

// seal builds version || term || nonce || GCM(value) with
// AAD = version || term || path. The AAD is laid out past the record in the
// same allocation.
func (kr *keyring) seal(path string, value []byte) []byte {
	t := kr.terms[kr.active]
	n := headerLen + len(value) + tagLen
	rec := make([]byte, n, n+1+termLen+len(path))
	rec[0] = recordVersion
	binary.BigEndian.PutUint32(rec[1:], t.term)
	aad := append(rec[n:n], rec[:1+termLen]...)
	aad = append(aad, path...)
	// The AEAD draws a random 96-bit nonce per record (NIST SP 800-38D
	// §8.2.2) and writes nonce || ciphertext || tag after the header.
	return t.aead.Seal(rec[:1+termLen], nil, value, aad) // #nosec G407 -- NewGCMWithRandomNonce draws the nonce; it must be nil
}

// open authenticates and decrypts a record stored at path.
func (kr *keyring) open(path string, rec []byte) ([]byte, error) {
	if len(rec) < headerLen+tagLen {
		return nil, fmt.Errorf("%w: %q: record is %d bytes, shorter than %d", ErrIntegrity, path, len(rec), headerLen+tagLen)
	}
	if rec[0] != recordVersion {
		return nil, fmt.Errorf("%w: %q: unknown record version %d", ErrIntegrity, path, rec[0])
	}
	tn := recordTerm(rec)
	t := kr.terms[tn]
	if t == nil {
		return nil, fmt.Errorf("%w: %q: term %d", ErrUnknownTerm, path, tn)
	}
	ct := rec[headerLen:]
	n := len(ct) - tagLen
	buf := make([]byte, n, n+1+termLen+len(path))
	aad := append(buf[n:n], rec[:1+termLen]...)
	aad = append(aad, path...)
	pt, err := t.aead.Open(buf[:0], nil, rec[1+termLen:], aad)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: authentication failed", ErrIntegrity, path)
	}
	return pt[:n:n], nil
}

// recordTerm reads the term of a record at least headerLen long.
func recordTerm(rec []byte) uint32 {
	if len(rec) < 1+termLen {
		return 0
	}
	return binary.BigEndian.Uint32(rec[1:])
}
