package bolt_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/bolt"
	"github.com/moonvault/moonvault/internal/storage/storagetest"
)

func openTemp(t testing.TB) *bolt.Backend {
	t.Helper()
	b, err := bolt.Open(filepath.Join(t.TempDir(), "vault.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return b
}

func TestContract(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend { return openTemp(t) })
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "vault.db")
	b, err := bolt.Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := b.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := b.Get(t.Context(), "k"); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Get after Close = %v, want ErrUnavailable", err)
	}
	b, err = bolt.Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer b.Close()
	if v, err := b.Get(t.Context(), "k"); err != nil || string(v) != "v" {
		t.Fatalf("Get after reopen = %q, %v", v, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("database file mode = %v, %v; want 0600", fi.Mode(), err)
	}
}

// TestKillDurability: every write acknowledged before a SIGKILL is in the
// file afterwards (the shared contract in storagetest).
func TestKillDurability(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	if p := os.Getenv("MOONVAULT_STORAGETEST_KILL_TARGET"); p != "" {
		path = p
	}
	storagetest.KillDurability(t, path, func(p string) (storage.Backend, error) { return bolt.Open(p) })
}

// TestFsyncFailure: a write is acknowledged only after its fsync succeeded
// (bbolt's NoSync stays off), which a kill -9 test cannot see.
func TestFsyncFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	if p := os.Getenv("MOONVAULT_STORAGETEST_FSYNC_TARGET"); p != "" {
		path = p
	}
	storagetest.FsyncFailure(t, path, func(p string) (storage.Backend, error) { return bolt.Open(p) })
}
