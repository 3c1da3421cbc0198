package postgres

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/storage/postgres/pgtest"
)

// TestRestoreCommitBoundedBySnapshot: a snapshot still streaming holds the
// table; the commit gives up after the lock timeout with ErrTableBusy and
// changes nothing, instead of holding the node (and its exclusive gate)
// for as long as the download takes.
func TestRestoreCommitBoundedBySnapshot(t *testing.T) {
	defer func(d time.Duration) { commitLockTimeout = d }(commitLockTimeout)
	commitLockTimeout = 200 * time.Millisecond
	ctx := t.Context()
	b, err := Open(ctx, pgtest.NewDatabase(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Put(ctx, "old", []byte("x")); err != nil {
		t.Fatal(err)
	}
	v, err := b.View(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	s, err := b.BeginRestore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "new", []byte("y")); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); !errors.Is(err, ErrTableBusy) {
		t.Fatalf("Commit while a snapshot holds the table = %v, want ErrTableBusy", err)
	}
	if got, err := b.Get(ctx, "old"); err != nil || string(got) != "x" {
		t.Fatalf("old = %q, %v after a refused commit", got, err)
	}
	// The replaced rows are kept: once the view ends, a restore goes
	// through and its replaced copy holds them.
	_ = v.Close()
	s, err = b.BeginRestore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var val []byte
	if err := b.pool.QueryRow(ctx, `SELECT value FROM `+s.Replaced().Name+` WHERE key = 'old'`).Scan(&val); err != nil || string(val) != "x" {
		t.Fatalf("replaced copy holds old = %q, %v", val, err)
	}
}
