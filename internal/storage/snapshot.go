package storage

import (
	"context"
	"time"
)

// View is a consistent, point-in-time, read-only view of every record, as
// stored: writes committed after the view was taken are not in it, and
// writes go on while it is open. Close releases it (the bolt read
// transaction, the PostgreSQL REPEATABLE READ transaction).
type View interface {
	// Count is the number of records in the view.
	Count() int64
	// Each calls fn for every record in ascending byte order of the key.
	// value is only valid during the call. An error from fn stops the walk
	// and is returned.
	Each(ctx context.Context, fn func(key string, value []byte) error) error
	Close() error
}

// Snapshotter is implemented by backends that can open a View.
type Snapshotter interface {
	View(ctx context.Context) (View, error)
}

// Staging receives the complete new contents of a backend for a restore.
// Nothing staged is visible to readers until Commit, which replaces every
// record in one step (all of them or none) and tells subscribers to
// resync (fn("")). Abort, or a failed Commit, leaves the backend as it was.
// A Staging is used by one goroutine.
type Staging interface {
	// Put stages one record; each key may be staged once.
	Put(ctx context.Context, key string, value []byte) error
	// Expect makes Commit conditional: at the moment of the switch, with
	// every writer of the storage held off (other nodes included), the
	// live record key must hold value (nil: must be absent). Otherwise
	// Commit fails with an error wrapping ErrConflict and changes nothing.
	// A restore authorised against one vault can so never replace another
	// that took its place meanwhile.
	Expect(key string, value []byte)
	// Commit switches the backend to the staged records. The contents it
	// replaces are kept (Replaced names them) until DropReplaced. An error
	// wrapping ErrRestoreNotDurable means the switch happened.
	Commit(ctx context.Context) error
	// Replaced describes the copy of the replaced contents a successful
	// Commit kept.
	Replaced() ReplacedCopy
	// Abort discards the staged records. It is safe after Commit (no-op).
	Abort() error
}

// ReplacedCopy is the contents a restore replaced, kept by the backend: a
// table (PostgreSQL) or a file beside the database (bolt).
type ReplacedCopy struct {
	Name string    `json:"name"`
	At   time.Time `json:"replaced_at"`
}

// Restorer is implemented by backends that can be replaced whole.
type Restorer interface {
	BeginRestore(ctx context.Context) (Staging, error)
	// ReplacedCopies lists the copies kept by earlier restores, oldest
	// first.
	ReplacedCopies(ctx context.Context) ([]ReplacedCopy, error)
	// DropReplaced deletes one kept copy; an unknown name is an error.
	DropReplaced(ctx context.Context, name string) error
}
