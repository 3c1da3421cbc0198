package bolt_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/bolt"
	"github.com/moonvault/moonvault/internal/storage/storagetest"
)

func TestSnapshotContract(t *testing.T) {
	storagetest.RunSnapshot(t, func(t *testing.T) storage.Backend { return openTemp(t) })
}

// TestRestoreSurvivesReopen: the restored file is the database after a
// restart, and no staging file is left beside it.
func TestRestoreSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	b, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Put(t.Context(), "old", []byte("x")); err != nil {
		t.Fatal(err)
	}
	s, err := b.BeginRestore(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "new", []byte("y")); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".restore"); !os.IsNotExist(err) {
		t.Fatalf("staging file left behind: %v", err)
	}
	b, err = bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if v, err := b.Get(t.Context(), "new"); err != nil || string(v) != "y" {
		t.Fatalf("after reopen new = %q, %v", v, err)
	}
	if _, err := b.Get(t.Context(), "old"); err == nil {
		t.Fatal("a record from before the restore survived it")
	}
}

// TestStaleStagingIgnored: a staging file left by a crash mid-restore is
// never the database and is removed at the next open.
func TestStaleStagingIgnored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	if err := os.WriteFile(path+".restore", []byte("torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := os.Stat(path + ".restore"); !os.IsNotExist(err) {
		t.Fatalf("stale staging file kept: %v", err)
	}
}

// TestRestoreKeepsReplacedFile: the file a restore replaced stays beside
// the database, whole, under the name ReplacedCopies gives.
func TestRestoreKeepsReplacedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vault.db")
	b, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Put(t.Context(), "old", []byte("x")); err != nil {
		t.Fatal(err)
	}
	s, err := b.BeginRestore(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	name := s.Replaced().Name
	kept, err := bolt.Open(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("open the replaced copy %s: %v", name, err)
	}
	defer kept.Close()
	if v, err := kept.Get(t.Context(), "old"); err != nil || string(v) != "x" {
		t.Fatalf("replaced copy holds old = %q, %v", v, err)
	}
}
