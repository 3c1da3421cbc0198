package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/internal/keypath"
)

// stagingSuffix names the file a restore writes beside the database.
const stagingSuffix = ".restore"

// Staged records are committed in transactions of at most this many
// records or bytes, so a restore's memory stays bounded.
const (
	stageTxRecords = 20000
	stageTxBytes   = 32 << 20
)

// ErrRestoreInProgress refuses a second concurrent restore.
var ErrRestoreInProgress = errkind.New(errkind.Conflict, "restore_in_progress", "a restore is already in progress")

// boltView is one read transaction: bbolt's MVCC gives it a consistent view
// while writers go on.
type boltView struct {
	tx    *bbolt.Tx
	count int64
}

// View opens a read transaction over the whole database.
func (b *Backend) View(ctx context.Context) (storage.View, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for {
		db := b.db.Load()
		tx, err := db.Begin(false)
		if errors.Is(err, berrors.ErrDatabaseNotOpen) && b.db.Load() != db {
			continue
		}
		if err != nil {
			return nil, wrap(err)
		}
		return &boltView{tx: tx, count: int64(tx.Bucket(bucket).Stats().KeyN)}, nil
	}
}

func (v *boltView) Count() int64 { return v.count }

func (v *boltView) Each(ctx context.Context, fn func(key string, value []byte) error) error {
	c := v.tx.Bucket(bucket).Cursor()
	n := 0
	for k, val := c.First(); k != nil; k, val = c.Next() {
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := fn(string(k), val); err != nil {
			return err
		}
	}
	return nil
}

func (v *boltView) Close() error {
	if err := v.tx.Rollback(); err != nil && !errors.Is(err, berrors.ErrTxClosed) {
		return wrap(err)
	}
	return nil
}

// boltStaging writes the new contents to a new file beside the database.
// Commit fsyncs it and renames it over the database: rename(2) is atomic,
// so after a crash the path holds either the old file or the complete new
// one, never a mix.
type boltStaging struct {
	b      *Backend
	path   string
	db     *bbolt.DB
	tx     *bbolt.Tx
	txRecs int
	txSize int
	done   bool
}

// BeginRestore starts writing a staging file; one restore runs at a time.
func (b *Backend) BeginRestore(ctx context.Context) (storage.Staging, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !b.restoring.TryLock() {
		return nil, ErrRestoreInProgress
	}
	path := b.path + stagingSuffix
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		b.restoring.Unlock()
		return nil, fmt.Errorf("bolt: remove stale staging file: %w", err)
	}
	db, err := openDB(path, true)
	if err != nil {
		b.restoring.Unlock()
		return nil, err
	}
	return &boltStaging{b: b, path: path, db: db}, nil
}

func (s *boltStaging) Put(ctx context.Context, key string, value []byte) error {
	if s.done {
		return errors.New("bolt: staging already finished")
	}
	if err := keypath.Check(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.tx == nil {
		tx, err := s.db.Begin(true)
		if err != nil {
			return wrap(err)
		}
		s.tx = tx
	}
	bk := s.tx.Bucket(bucket)
	// Snapshots arrive in key order: full pages instead of half-full splits.
	bk.FillPercent = 1.0
	if bk.Get([]byte(key)) != nil {
		return fmt.Errorf("bolt: staging: duplicate key %q", key)
	}
	v := bytes.Clone(value)
	if v == nil {
		v = []byte{}
	}
	if err := bk.Put([]byte(key), v); err != nil {
		return wrap(err)
	}
	s.txRecs++
	s.txSize += len(key) + len(v)
	if s.txRecs >= stageTxRecords || s.txSize >= stageTxBytes {
		return s.flush()
	}
	return nil
}

func (s *boltStaging) flush() error {
	if s.tx == nil {
		return nil
	}
	tx := s.tx
	s.tx, s.txRecs, s.txSize = nil, 0, 0
	return wrap(tx.Commit())
}

// Commit makes the staging file durable, renames it over the database and
// switches the backend to it. Writes that were still running on the old
// file finish there and are lost with it: they are ordered before the
// restore, which replaces everything.
func (s *boltStaging) Commit(ctx context.Context) error {
	if s.done {
		return errors.New("bolt: staging already finished")
	}
	if err := ctx.Err(); err != nil {
		_ = s.Abort()
		return err
	}
	if err := s.flush(); err != nil {
		_ = s.Abort()
		return err
	}
	if err := s.db.Sync(); err != nil {
		_ = s.Abort()
		return fmt.Errorf("bolt: fsync staging file: %w", err)
	}
	s.db.NoSync = false // from now on it is the live database
	if err := os.Rename(s.path, s.b.path); err != nil {
		_ = s.Abort()
		return fmt.Errorf("bolt: switch to the restored file: %w", err)
	}
	s.done = true
	defer s.b.restoring.Unlock()
	// The rename is the commit point; make it durable too.
	if err := syncDir(filepath.Dir(s.b.path)); err != nil {
		return fmt.Errorf("bolt: fsync data dir: %w", err)
	}
	old := s.b.db.Swap(s.db)
	// Close waits for read transactions still open on the old file.
	_ = old.Close()
	s.b.notifyResync()
	return nil
}

func (s *boltStaging) Abort() error {
	if s.done {
		return nil
	}
	s.done = true
	defer s.b.restoring.Unlock()
	if s.tx != nil {
		_ = s.tx.Rollback()
	}
	err := s.db.Close()
	if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		err = rerr
	}
	return err
}

// removeStaleStaging deletes a staging file a crashed restore left behind;
// it was never renamed, so it was never the database.
func removeStaleStaging(path string) {
	_ = os.Remove(path + stagingSuffix)
}

func syncDir(dir string) error {
	d, err := os.Open(dir) // #nosec G304 -- the data directory the operator configured
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// notifyResync tells subscribers that every key may have changed.
func (b *Backend) notifyResync() {
	b.notify([]storage.Op{{Key: ""}})
}
