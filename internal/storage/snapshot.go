package storage

import "context"

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
	// Commit switches the backend to the staged records.
	Commit(ctx context.Context) error
	// Abort discards the staged records. It is safe after Commit (no-op).
	Abort() error
}

// Restorer is implemented by backends that can be replaced whole.
type Restorer interface {
	BeginRestore(ctx context.Context) (Staging, error)
}
