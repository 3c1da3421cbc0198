// Package bolt is the embedded storage backend: one bbolt file in the data
// directory. Every write is fsynced before it returns (bbolt's NoSync stays
// off); concurrent writers are group-committed with db.Batch so that many
// writes share one fsync.
package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/internal/keypath"
)

var bucket = []byte("moonvault_kv")

// lockTimeout bounds the wait for another process's file lock, so a second
// server on the same data dir fails instead of hanging.
const lockTimeout = 2 * time.Second

// batchDelay replaces bbolt's 10ms default MaxBatchDelay: how long a batch
// of concurrent writes waits for company before it commits (a lone writer
// never waits: update). Every commit writes each dirty page with its own
// pwrite and fsyncs twice (data, then meta), so under load fewer, larger
// commits cost less CPU per write. At 2 ms a commit of account creations
// at 64 connections held ~9 accounts (~30 page writes); 5 ms made 15-20%
// more accounts per second (issue 14; 10 ms saved a little more CPU but no
// more throughput). Contending Updates of one key back off past this wait
// (barrier.backoff).
const batchDelay = 5 * time.Millisecond

// initialMmapSize is address space, not memory: the file grows as usual.
const initialMmapSize = 1 << 30

// Backend stores keys in one bbolt bucket. It implements storage.Backend
// and storage.Subscriber (in-process: bbolt files are never shared).
type Backend struct {
	path string
	// db is the open file; a restore swaps in a new one (see restore.go).
	db      atomic.Pointer[bbolt.DB]
	writers atomic.Int32 // writes in flight
	// restoring admits one restore at a time.
	restoring sync.Mutex
	// closing counts files replaced by a restore and still closing.
	closing sync.WaitGroup

	mu     sync.RWMutex
	subs   map[uint64]func(string)
	nextID uint64
}

var (
	_ storage.Backend     = (*Backend)(nil)
	_ storage.Subscriber  = (*Backend)(nil)
	_ storage.Snapshotter = (*Backend)(nil)
	_ storage.Restorer    = (*Backend)(nil)
)

// Open opens or creates the database file at path (mode 0600; its directory
// is created 0700 when missing).
func Open(path string) (*Backend, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("bolt: create data dir: %w", err)
	}
	removeStaleStaging(path)
	db, err := openDB(path, false)
	if err != nil {
		return nil, err
	}
	b := &Backend{path: path, subs: map[uint64]func(string){}}
	b.db.Store(db)
	return b, nil
}

// openDB opens the file with the backend's options and makes sure the
// bucket exists. noSync is for a restore's staging file, fsynced once at
// the end.
func openDB(path string, noSync bool) (*bbolt.DB, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:      lockTimeout,
		FreelistType: bbolt.FreelistMapType, // O(1) page allocation in large files
		// Growing the memory map waits for every read transaction to end;
		// reserving address space up front keeps writes going while a
		// snapshot holds its read transaction (bbolt docs, InitialMmapSize).
		InitialMmapSize: initialMmapSize,
		NoSync:          noSync,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("bolt: %s is locked by another process (another server on this data_dir?): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("bolt: create bucket: %w", err)
	}
	db.MaxBatchDelay = batchDelay
	return db, nil
}

// Close closes the file. Operations after Close fail with ErrUnavailable.
func (b *Backend) Close() error {
	b.closing.Wait()
	if err := b.db.Load().Close(); err != nil {
		return fmt.Errorf("bolt: close: %w", err)
	}
	return nil
}

// view and update run fn in a transaction on the current file. When a
// restore swapped the file while fn was starting on the old one (which is
// then closed), fn runs again on the new one.
func (b *Backend) view(fn func(*bbolt.Tx) error) error {
	for {
		db := b.db.Load()
		err := db.View(fn)
		if errors.Is(err, berrors.ErrDatabaseNotOpen) && b.db.Load() != db {
			continue
		}
		return err
	}
}

func (b *Backend) update(fn func(*bbolt.Tx) error) error {
	for {
		db := b.db.Load()
		// db.Batch waits up to MaxBatchDelay for company before committing;
		// a lone writer would pay that on every write, so it commits at once.
		var err error
		if b.writers.Add(1) == 1 {
			err = db.Update(fn)
		} else {
			err = db.Batch(fn)
		}
		b.writers.Add(-1)
		if errors.Is(err, berrors.ErrDatabaseNotOpen) && b.db.Load() != db {
			continue
		}
		return err
	}
}

// Get returns a copy of the value (bbolt's slice is valid only inside the
// transaction).
func (b *Backend) Get(ctx context.Context, key string) ([]byte, error) {
	if err := keypath.Check(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []byte
	err := b.view(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucket).Get([]byte(key))
		if v == nil {
			return fmt.Errorf("get %q: %w", key, storage.ErrNotFound)
		}
		out = bytes.Clone(v)
		if out == nil {
			out = []byte{}
		}
		return nil
	})
	return out, wrap(err)
}

// Put creates or replaces key.
func (b *Backend) Put(ctx context.Context, key string, value []byte) error {
	return b.Batch(ctx, []storage.Op{{Key: key, Value: value}})
}

// Delete removes key; a missing key is not an error.
func (b *Backend) Delete(ctx context.Context, key string) error {
	return b.Batch(ctx, []storage.Op{{Key: key, Delete: true}})
}

// Batch applies ops in one transaction. Under concurrency db.Batch coalesces
// it with other callers' writes into one fsynced commit, and reruns it alone
// if a coalesced transaction fails, so the closure is idempotent and
// all-or-nothing.
func (b *Backend) Batch(ctx context.Context, ops []storage.Op) error {
	for i, op := range ops {
		if err := keypath.Check(op.Key); err != nil {
			return fmt.Errorf("op %d: %w", i, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(ops) == 0 {
		return nil
	}
	write := func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucket)
		for _, op := range ops {
			if op.Create && !op.Delete && bk.Get([]byte(op.Key)) != nil {
				return fmt.Errorf("create %q: %w", op.Key, storage.ErrConflict)
			}
		}
		for _, op := range ops {
			var err error
			if op.Delete {
				err = bk.Delete([]byte(op.Key))
			} else {
				// bbolt keeps the slice until commit; copy so callers may reuse it.
				v := bytes.Clone(op.Value)
				if v == nil {
					v = []byte{}
				}
				err = bk.Put([]byte(op.Key), v)
			}
			if err != nil {
				return fmt.Errorf("write %q: %w", op.Key, err)
			}
		}
		return nil
	}
	if err := b.update(write); err != nil {
		return wrap(err)
	}
	b.notify(ops)
	return nil
}

// CompareAndSwap writes next at key only if the stored value is old (see
// storage.Backend). The check and the write share one bbolt transaction,
// and bbolt has a single writer, so no other write can come between them.
func (b *Backend) CompareAndSwap(ctx context.Context, key string, old, next []byte) error {
	if err := keypath.Check(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	cas := func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucket)
		cur := bk.Get([]byte(key))
		switch {
		case old == nil && cur != nil,
			old != nil && (cur == nil || !bytes.Equal(cur, old)):
			return fmt.Errorf("compare-and-swap %q: %w", key, storage.ErrConflict)
		case next == nil && cur == nil:
			return nil
		case next == nil:
			return bk.Delete([]byte(key))
		}
		v := bytes.Clone(next)
		if v == nil {
			v = []byte{}
		}
		return bk.Put([]byte(key), v)
	}
	// As in Batch; a conflict inside a coalesced batch makes bbolt rerun this
	// closure alone, which then reports the conflict to this caller only.
	if err := b.update(cas); err != nil {
		return wrap(err)
	}
	b.notify([]storage.Op{{Key: key, Value: next, Delete: next == nil}})
	return nil
}

// List seeks the cursor to the first candidate and walks at most limit keys,
// so its cost is O(log n + limit) whatever the database size.
func (b *Backend) List(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	if err := keypath.CheckPrefix("prefix", prefix); err != nil {
		return nil, err
	}
	if err := keypath.CheckPrefix("after", after); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	start := prefix
	if after > start {
		start = after
	}
	var keys []string
	err := b.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		pfx := []byte(prefix)
		for k, _ := c.Seek([]byte(start)); k != nil && bytes.HasPrefix(k, pfx); k, _ = c.Next() {
			if after != "" && string(k) == after {
				continue
			}
			keys = append(keys, string(k))
			if limit > 0 && len(keys) == limit {
				break
			}
		}
		return nil
	})
	return keys, wrap(err)
}

// Subscribe registers fn, called with each changed key after its commit.
// Calls are synchronous in the writer's goroutine, so fn must be quick.
func (b *Backend) Subscribe(fn func(key string)) (cancel func()) {
	b.mu.Lock()
	id := b.nextID
	b.nextID++
	b.subs[id] = fn
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		delete(b.subs, id)
		b.mu.Unlock()
	}
}

// notify calls the subscribers outside the lock, so that fn may itself
// subscribe or cancel.
func (b *Backend) notify(ops []storage.Op) {
	b.mu.RLock()
	if len(b.subs) == 0 {
		b.mu.RUnlock()
		return
	}
	fns := make([]func(string), 0, len(b.subs))
	for _, fn := range b.subs {
		fns = append(fns, fn)
	}
	b.mu.RUnlock()
	for _, op := range ops {
		for _, fn := range fns {
			fn(op.Key)
		}
	}
}

func wrap(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("bolt: %w: %w", storage.ErrUnavailable, err)
	}
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("bolt: %w", err)
	}
	return err
}

// Update implements storage.KV: a read-modify-write over CompareAndSwap.
func (b *Backend) Update(ctx context.Context, key string, fn storage.UpdateFunc) error {
	return storage.Update(ctx, b, key, fn)
}
