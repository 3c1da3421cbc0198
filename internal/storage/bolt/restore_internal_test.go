package bolt

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/moonvault/moonvault/internal/storage"
)

// TestRestoreDirSyncFailureStillSwitches: once the restored file is
// renamed over the database, it is the database, whatever the directory
// fsync says afterwards. A failed fsync must not leave the backend serving
// the replaced file (whose writes would then vanish at the next open)
// while the caller believes nothing changed.
func TestRestoreDirSyncFailureStillSwitches(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := t.Context()
	if err := b.Put(ctx, "old", []byte("x")); err != nil {
		t.Fatal(err)
	}
	syncDirFn = func(string) error { return errors.New("injected fsync failure") }
	defer func() { syncDirFn = syncDir }()
	s, err := b.BeginRestore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "new", []byte("y")); err != nil {
		t.Fatal(err)
	}
	err = s.Commit(ctx)
	if !errors.Is(err, storage.ErrRestoreNotDurable) {
		t.Fatalf("Commit with a failing directory fsync = %v, want ErrRestoreNotDurable", err)
	}
	if v, err := b.Get(ctx, "new"); err != nil || string(v) != "y" {
		t.Fatalf("after the switch the backend reads new = %q, %v: still on the replaced file", v, err)
	}
	if err := b.Put(ctx, "after", []byte("z")); err != nil {
		t.Fatal(err)
	}
	syncDirFn = syncDir
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if v, err := b2.Get(ctx, "after"); err != nil || string(v) != "z" {
		t.Fatalf("a write made after the restore is lost at reopen: %q, %v", v, err)
	}
}
