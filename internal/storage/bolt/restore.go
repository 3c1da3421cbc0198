package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

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
// one, never a mix. The old file is kept under another name (a hard link
// made before the rename).
type boltStaging struct {
	b        *Backend
	path     string
	db       *bbolt.DB
	tx       *bbolt.Tx
	txRecs   int
	txSize   int
	done     bool
	expect   []expectation
	replaced storage.ReplacedCopy
}

type expectation struct {
	key   string
	value []byte // nil: absent
}

// replacedInfix and replacedLayout name a kept file:
// <database file>.replaced-<UTC time>.
const (
	replacedInfix  = ".replaced-"
	replacedLayout = "20060102T150405.000000000Z"
)

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

func (s *boltStaging) Expect(key string, value []byte) {
	if value != nil {
		value = bytes.Clone(value)
	}
	s.expect = append(s.expect, expectation{key: key, value: value})
}

func (s *boltStaging) Replaced() storage.ReplacedCopy { return s.replaced }

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

// Commit makes the staging file durable, checks the expectations against
// the live file while holding its writers off, keeps the live file under a
// new name, renames the staging file over it and switches the backend to
// it. Writes that were still running on the old file finish there and are
// lost with it: they are ordered before the restore, which replaces
// everything.
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
	old := s.b.db.Load()
	// A write transaction on the live file: no writer can change what the
	// expectations check until the switch is done.
	hold, err := old.Begin(true)
	if err != nil {
		_ = s.Abort()
		return wrap(err)
	}
	if err := checkExpect(hold.Bucket(bucket), s.expect); err != nil {
		_ = hold.Rollback()
		_ = s.Abort()
		return err
	}
	at := time.Now().UTC()
	keep := s.b.path + replacedInfix + at.Format(replacedLayout)
	if err := os.Link(s.b.path, keep); err != nil {
		_ = hold.Rollback()
		_ = s.Abort()
		return fmt.Errorf("bolt: keep the replaced file: %w", err)
	}
	s.db.NoSync = false // from now on it is the live database
	if err := os.Rename(s.path, s.b.path); err != nil {
		_ = hold.Rollback()
		_ = os.Remove(keep)
		_ = s.Abort()
		return fmt.Errorf("bolt: switch to the restored file: %w", err)
	}
	// The rename is the commit point: from here on the restored file is
	// the database, whatever else fails.
	s.done = true
	s.replaced = storage.ReplacedCopy{Name: filepath.Base(keep), At: at}
	s.b.db.Swap(s.db)
	_ = hold.Rollback()
	s.b.restoring.Unlock()
	s.b.closeLater(old)
	s.b.notifyResync()
	if err := syncDirFn(filepath.Dir(s.b.path)); err != nil {
		return fmt.Errorf("bolt: fsync data dir: %w: %w", storage.ErrRestoreNotDurable, err)
	}
	return nil
}

// checkExpect compares each expectation with the live bucket.
func checkExpect(bk *bbolt.Bucket, exp []expectation) error {
	for _, e := range exp {
		k, v := bk.Cursor().Seek([]byte(e.key))
		found := k != nil && string(k) == e.key
		if found != (e.value != nil) || (found && !bytes.Equal(v, e.value)) {
			return fmt.Errorf("bolt: %s changed since the restore began: %w", e.key, storage.ErrConflict)
		}
	}
	return nil
}

// closeLater closes a replaced file once its read transactions (a snapshot
// still streaming) end, without making the restore wait for them.
func (b *Backend) closeLater(db *bbolt.DB) {
	b.closing.Add(1)
	go func() {
		defer b.closing.Done()
		_ = db.Close()
	}()
}

// ReplacedCopies lists the files kept by earlier restores, oldest first.
func (b *Backend) ReplacedCopies(ctx context.Context) ([]storage.ReplacedCopy, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir, base := filepath.Split(b.path)
	ents, err := os.ReadDir(filepath.Clean(dir))
	if err != nil {
		return nil, fmt.Errorf("bolt: list replaced copies: %w", err)
	}
	var out []storage.ReplacedCopy
	for _, e := range ents {
		if at, ok := replacedTime(base, e.Name()); ok && e.Type().IsRegular() {
			out = append(out, storage.ReplacedCopy{Name: e.Name(), At: at})
		}
	}
	slices.SortFunc(out, func(x, y storage.ReplacedCopy) int { return x.At.Compare(y.At) })
	return out, nil
}

// DropReplaced deletes a file kept by an earlier restore.
func (b *Backend) DropReplaced(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir, base := filepath.Split(b.path)
	if _, ok := replacedTime(base, name); !ok {
		return fmt.Errorf("bolt: %q is not a replaced copy of %s", name, base)
	}
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("bolt: drop replaced copy: %w", err)
	}
	return nil
}

// replacedTime parses the time out of a kept file's name.
func replacedTime(base, name string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(name, base+replacedInfix)
	if !ok {
		return time.Time{}, false
	}
	at, err := time.Parse(replacedLayout, rest)
	return at, err == nil
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

// syncDirFn is syncDir; tests inject failures.
var syncDirFn = syncDir

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
