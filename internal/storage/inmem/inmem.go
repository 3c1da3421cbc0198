// Package inmem is a storage backend held in memory: for tests, benchmarks
// and fault-injection harnesses that need a real, contract-keeping backend
// (storagetest.Run) without files or a database. Nothing survives Close.
package inmem

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/internal/keypath"
)

// Backend is a storage.Backend and storage.Subscriber in memory. Values are
// copied in and out, as the contract requires.
type Backend struct {
	mu   sync.RWMutex
	data map[string][]byte
	puts int

	smu  sync.Mutex
	subs map[uint64]func(string)
	next uint64
}

var (
	_ storage.Backend    = (*Backend)(nil)
	_ storage.Subscriber = (*Backend)(nil)
)

// New returns an empty backend.
func New() *Backend {
	return &Backend{data: map[string][]byte{}, subs: map[uint64]func(string){}}
}

// Get implements storage.KV.
func (b *Backend) Get(ctx context.Context, key string) ([]byte, error) {
	if err := check(ctx, key); err != nil {
		return nil, err
	}
	b.mu.RLock()
	v, ok := b.data[key]
	b.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("inmem: get %q: %w", key, storage.ErrNotFound)
	}
	return bytes.Clone(v), nil
}

// Put implements storage.KV.
func (b *Backend) Put(ctx context.Context, key string, value []byte) error {
	return b.Batch(ctx, []storage.Op{{Key: key, Value: value}})
}

// Delete implements storage.KV.
func (b *Backend) Delete(ctx context.Context, key string) error {
	return b.Batch(ctx, []storage.Op{{Key: key, Delete: true}})
}

// List implements storage.KV.
func (b *Backend) List(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := keypath.CheckPrefix("prefix", prefix); err != nil {
		return nil, err
	}
	if err := keypath.CheckPrefix("after", after); err != nil {
		return nil, err
	}
	b.mu.RLock()
	var keys []string
	for k := range b.data {
		if strings.HasPrefix(k, prefix) && (after == "" || k > after) {
			keys = append(keys, k)
		}
	}
	b.mu.RUnlock()
	slices.Sort(keys)
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
	}
	return keys, nil
}

// Batch implements storage.KV: every op or none.
func (b *Backend) Batch(ctx context.Context, ops []storage.Op) error {
	for _, op := range ops {
		if err := check(ctx, op.Key); err != nil {
			return err
		}
	}
	b.mu.Lock()
	for _, op := range ops {
		if _, ok := b.data[op.Key]; ok && op.Create && !op.Delete {
			b.mu.Unlock()
			return fmt.Errorf("inmem: create %q: %w", op.Key, storage.ErrConflict)
		}
	}
	for _, op := range ops {
		if op.Delete {
			delete(b.data, op.Key)
		} else {
			b.data[op.Key] = bytes.Clone(op.Value)
			b.puts++
		}
	}
	b.mu.Unlock()
	for _, op := range ops {
		b.notify(op.Key)
	}
	return nil
}

// CompareAndSwap implements storage.KV.
func (b *Backend) CompareAndSwap(ctx context.Context, key string, old, next []byte) error {
	if err := check(ctx, key); err != nil {
		return err
	}
	b.mu.Lock()
	cur, ok := b.data[key]
	if (old == nil && ok) || (old != nil && (!ok || !bytes.Equal(cur, old))) {
		b.mu.Unlock()
		return fmt.Errorf("inmem: compare-and-swap %q: %w", key, storage.ErrConflict)
	}
	if next == nil {
		delete(b.data, key)
	} else {
		b.data[key] = bytes.Clone(next)
		b.puts++
	}
	b.mu.Unlock()
	b.notify(key)
	return nil
}

func check(ctx context.Context, key string) error {
	if err := keypath.Check(key); err != nil {
		return err
	}
	return ctx.Err()
}

// Close implements storage.Backend; the data stays readable (tests inspect
// it after a node stops).
func (b *Backend) Close() error { return nil }

// Subscribe implements storage.Subscriber: fn sees every key written,
// synchronously, after the write.
func (b *Backend) Subscribe(fn func(key string)) (cancel func()) {
	b.smu.Lock()
	id := b.next
	b.next++
	b.subs[id] = fn
	b.smu.Unlock()
	return func() {
		b.smu.Lock()
		delete(b.subs, id)
		b.smu.Unlock()
	}
}

func (b *Backend) notify(key string) {
	b.smu.Lock()
	subs := make([]func(string), 0, len(b.subs))
	for _, fn := range b.subs {
		subs = append(subs, fn)
	}
	b.smu.Unlock()
	for _, fn := range subs {
		fn(key)
	}
}

// Puts counts the values written so far (for tests that assert how many
// writes an operation makes).
func (b *Backend) Puts() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.puts
}

// Update implements storage.KV: a read-modify-write over CompareAndSwap.
func (b *Backend) Update(ctx context.Context, key string, fn storage.UpdateFunc) error {
	return storage.Update(ctx, b, key, fn)
}
