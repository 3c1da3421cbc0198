// Package barriertest gives tests unsealed barriers over real storage: one
// barrier over a backend, or the nodes of one vault sharing a root key over
// one bbolt file or one PostgreSQL database.
package barriertest

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"

	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/bolt"
	"github.com/moonvault/moonvault/internal/storage/postgres"
	"github.com/moonvault/moonvault/internal/storage/postgres/pgtest"
)

// Unsealed initialises a barrier over b with a fresh root key and unseals
// it (sealed again when the test ends); the root key unseals more nodes.
func Unsealed(t testing.TB, b storage.Backend) (*barrier.Barrier, secret.Bytes) {
	t.Helper()
	root := make(secret.Bytes, 32)
	if _, err := rand.Read(root); err != nil {
		t.Fatal(err)
	}
	br := barrier.New(b, barrier.Options{Rand: rand.Reader})
	if err := br.Initialize(context.Background(), root, nil); err != nil {
		t.Fatal(err)
	}
	if err := br.Unseal(context.Background(), root, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(br.Seal)
	return br, root
}

// Nodes returns n unsealed barriers, the nodes of one vault, over one real
// backend: "bolt" (one file, one handle shared as a process would) or
// "postgres" (one new database, a connection pool per node).
func Nodes(t testing.TB, backend string, n int) []*barrier.Barrier {
	t.Helper()
	stores := make([]storage.Backend, n)
	switch backend {
	case "bolt":
		db, err := bolt.Open(filepath.Join(t.TempDir(), "vault.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		for i := range stores {
			stores[i] = db
		}
	case "postgres":
		url := pgtest.NewDatabase(t)
		for i := range stores {
			pg, err := postgres.Open(context.Background(), url, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = pg.Close() })
			stores[i] = pg
		}
	default:
		t.Fatalf("barriertest: unknown backend %q (bolt or postgres)", backend)
	}
	first, root := Unsealed(t, stores[0])
	out := []*barrier.Barrier{first}
	for _, s := range stores[1:] {
		b := barrier.New(s, barrier.Options{Rand: rand.Reader})
		if err := b.Unseal(context.Background(), root, nil); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Seal)
		out = append(out, b)
	}
	return out
}
