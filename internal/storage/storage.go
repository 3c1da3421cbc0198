// Package storage defines the physical layer: an untrusted key/value store
// of opaque bytes. It knows nothing of encryption; the barrier sits above it.
package storage

import (
	"context"
	"errors"

	"github.com/moonvault/moonvault/internal/errkind"
)

var (
	// ErrNotFound is returned by Get for a key that does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrUnavailable means the backend cannot be reached; callers answer 503
	// storage_unavailable and retry later. Backends wrap their cause with it.
	ErrUnavailable = errors.New("storage: unavailable")
	// ErrConflict is returned by CompareAndSwap when the stored value is not
	// the expected one: another writer (on this node or another) won.
	ErrConflict = errkind.New(errkind.Conflict, "conflict", "storage: value changed concurrently")
)

// Op is one write of an atomic batch: a put, or a delete when Delete is set.
type Op struct {
	Key    string
	Value  []byte
	Delete bool
}

// Backend is the physical storage contract. Keys are slash-separated paths
// of printable ASCII; values are opaque. Every method is safe for concurrent
// use. A write that returns nil is durable (fsynced or committed).
type Backend interface {
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
