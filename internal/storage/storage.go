// Package storage defines the physical layer: an untrusted key/value store
// of opaque bytes. It knows nothing of encryption; the barrier sits above it.
package storage

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
)

var (
	// ErrNotFound is returned by Get for a key that does not exist.
	ErrNotFound = errkind.New(errkind.NotFound, "not_found", "storage: not found")
	// ErrUnavailable means the backend cannot be reached; callers answer 503
	// storage_unavailable and retry later. Backends wrap their cause with it.
	ErrUnavailable = errkind.New(errkind.Unavailable, "storage_unavailable", "storage is unavailable; retry later")
	// ErrInvalidKey means a key breaks the rules of Backend (empty, too
	// long, not printable ASCII).
	ErrInvalidKey = errkind.New(errkind.Invalid, "", "storage: invalid key")
	// ErrConflict is returned by CompareAndSwap when the stored value is not
	// the expected one: another writer (on this node or another) won.
	ErrConflict = errkind.New(errkind.Conflict, "conflict", "storage: value changed concurrently")
	// ErrRestoreNotDurable is returned by Staging.Commit when the switch to
	// the restored contents happened (the backend now serves them) but
	// making it durable failed: after a crash the old contents may be back.
	ErrRestoreNotDurable = errkind.New(errkind.Unavailable, "storage_not_durable", "storage: the restore switched the data, but could not make the switch durable")
)

// Op is one write of an atomic batch: a put, or a delete when Delete is set.
type Op struct {
	Key    string
	Value  []byte
	Delete bool
	// Create makes a put conditional: the whole batch applies only if Key
	// is absent at commit, atomically with respect to every writer sharing
	// the storage (other nodes included); otherwise nothing is written and
	// Batch returns an error wrapping ErrConflict. It is how a name or an
	// index entry is claimed exactly once.
	Create bool
}

// KV is the key/value contract every layer speaks: a physical Backend, and
// the barrier above it (same calls, values encrypted). Services (auth,
// wallet, sealwrap, audit) take a KV; they never know which one.
// Keys are slash-separated paths of printable ASCII; values are opaque.
// Every method is safe for concurrent use. A write that returns nil is
// durable (fsynced or committed).
type KV interface {
	// Get returns the value, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Put creates or replaces the value.
	Put(ctx context.Context, key string, value []byte) error
	// Delete removes the key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List returns, in ascending byte order, the full keys that start with
	// prefix and sort strictly after `after` (when after is not empty), at
	// most limit of them (all when limit <= 0).
	List(ctx context.Context, prefix, after string, limit int) ([]string, error)
	// Batch applies every op atomically: all of them or none.
	Batch(ctx context.Context, ops []Op) error
	// CompareAndSwap writes next at key only if the stored value is old,
	// atomically with respect to every writer sharing the storage (other
	// nodes included). A nil old means "the key must be absent"; a nil next
	// deletes the key. When the stored value differs it writes nothing and
	// returns an error wrapping ErrConflict.
	CompareAndSwap(ctx context.Context, key string, old, next []byte) error
	// Update atomically replaces the value at key with fn's result, across
	// every writer sharing the storage (see UpdateFunc).
	Update(ctx context.Context, key string, fn UpdateFunc) error
}

// Backend is the physical storage contract: a KV that can be closed.
type Backend interface {
	KV
	// Close releases the backend.
	Close() error
}

// Subscriber is implemented by backends that report changes, including
// those made by other nodes sharing the same storage. fn receives each
// changed key; an empty key means "changes may have been missed: resync".
// fn must not block for long. The returned func cancels the subscription.
type Subscriber interface {
	Subscribe(fn func(key string)) (cancel func())
}

// UpdateFunc computes a key's next value from its current one (nil, false
// when absent): next, or del to delete the key (deleting an absent key
// writes nothing). It may run more than once and must have no side effects
// beyond its result; an error aborts the Update with nothing written.
type UpdateFunc = func(cur []byte, found bool) (next []byte, del bool, err error)

// MaxUpdateAttempts bounds the races an Update may lose before it gives up
// with an error wrapping ErrConflict.
const MaxUpdateAttempts = 100

// Update is a read-modify-write over Get and CompareAndSwap: the KV.Update
// of a physical backend (the barrier has its own, over ciphertext). When
// another writer changed the key in between, it reads again.
func Update(ctx context.Context, kv interface {
	Get(ctx context.Context, key string) ([]byte, error)
	CompareAndSwap(ctx context.Context, key string, old, next []byte) error
}, key string, fn UpdateFunc) error {
	for attempt := 0; attempt < MaxUpdateAttempts; attempt++ {
		cur, err := kv.Get(ctx, key)
		found := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		next, del, err := fn(cur, found)
		if err != nil {
			return err
		}
		if del && !found {
			return nil
		}
		var old []byte
		if found {
			old = cur
			if old == nil {
				old = []byte{}
			}
		}
		switch {
		case del:
			next = nil
		case next == nil:
			next = []byte{}
		}
		err = kv.CompareAndSwap(ctx, key, old, next)
		if !errors.Is(err, ErrConflict) {
			return err
		}
		if err := Backoff(ctx, attempt); err != nil {
			return err
		}
	}
	return fmt.Errorf("storage: update %q: %d attempts lost to concurrent writers: %w", key, MaxUpdateAttempts, ErrConflict)
}

// Backoff waits a short random time (up to 2 ms, growing with attempt)
// before a retry after a lost race, so that racing writers spread out.
func Backoff(ctx context.Context, attempt int) error {
	var j [2]byte
	_, _ = rand.Read(j[:]) // jitter, not a secret; crypto/rand never fails on Linux
	ceil := time.Duration(min(attempt+1, 8)) * 250 * time.Microsecond
	t := time.NewTimer(time.Duration(binary.BigEndian.Uint16(j[:])) * ceil / 65536)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
