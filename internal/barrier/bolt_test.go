package barrier

import (
	"context"
	"crypto/rand"
	"errors"
	"path/filepath"
	"testing"

	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/bolt"
	"github.com/moonvault/moonvault/internal/storage/storagetest"
)

func openBolt(t testing.TB, path string) *bolt.Backend {
	t.Helper()
	db, err := bolt.Open(path)
	if err != nil {
		t.Fatalf("bolt.Open: %v", err)
	}
	return db
}

// TestContractOverBolt runs the storage contract suite against the barrier
// on a real bbolt file: encryption must be invisible to consumers.
func TestContractOverBolt(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		db := openBolt(t, filepath.Join(t.TempDir(), "vault.db"))
		t.Cleanup(func() { _ = db.Close() })
		b, _ := unsealed(t, db, nil)
		return b
	})
}

// TestBoltRestart: initialize, write, rotate, close the file, reopen it and
// unseal with a seal-wrapped keyring.
func TestBoltRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.db")
	ctx := context.Background()
	w := newWrapper(t)
	db := openBolt(t, path)
	b, root := unsealed(t, db, w)
	mustPut(t, b, "wallet/keys/alice/main", "term 1")
	if _, err := b.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	mustPut(t, b, "wallet/keys/bob/main", "term 2")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openBolt(t, path)
	defer db.Close()
	b = New(db, Options{Rand: rand.Reader})
	if init, err := b.Initialized(ctx); err != nil || !init {
		t.Fatalf("Initialized after reopen = %v, %v", init, err)
	}
	if err := b.Unseal(ctx, root, w); err != nil {
		t.Fatal(err)
	}
	defer b.Seal()
	mustGet(t, b, "wallet/keys/alice/main", "term 1")
	mustGet(t, b, "wallet/keys/bob/main", "term 2")
	if st := b.Status(); st.Term != 2 || st.Terms != 2 {
		t.Fatalf("Status = %+v", st)
	}
	// A closed database surfaces as ErrUnavailable.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "wallet/keys/bob/main"); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Get on closed db: %v, want ErrUnavailable", err)
	}
}
