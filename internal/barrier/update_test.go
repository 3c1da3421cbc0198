package barrier

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/postgres"
	"github.com/moonvault/moonvault/internal/storage/postgres/pgtest"
	"golang.org/x/sync/errgroup"
)

// TestUpdateTwoNodes: two barriers ("nodes") over one real storage add to
// one counter concurrently through Update; no increment may be lost. This is
// what spend limits and single-use checks rely on across nodes.
func TestUpdateTwoNodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T) (storage.Backend, storage.Backend)
	}{
		{"bolt", func(t *testing.T) (storage.Backend, storage.Backend) {
			db := openBolt(t, filepath.Join(t.TempDir(), "vault.db"))
			t.Cleanup(func() { _ = db.Close() })
			return db, db // one file, one process: two barriers share it
		}},
		{"postgres", func(t *testing.T) (storage.Backend, storage.Backend) {
			url := pgtest.NewDatabase(t)
			var out [2]storage.Backend
			for i := range out {
				pg, err := postgres.Open(t.Context(), url, nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = pg.Close() })
				out[i] = pg
			}
			return out[0], out[1]
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sa, sb := tc.open(t)
			a, root := unsealed(t, sa, nil)
			defer a.Seal()
			b := join(t, sb, Options{Rand: rand.Reader}, root)

			const workers, each = 6, 15
			var g errgroup.Group
			incr := func(cur []byte, found bool) ([]byte, bool, error) {
				n := 0
				if found {
					var err error
					if n, err = strconv.Atoi(string(cur)); err != nil {
						return nil, false, err
					}
				}
				return []byte(strconv.Itoa(n + 1)), false, nil
			}
			for _, node := range []*Barrier{a, b} {
				for range workers {
					g.Go(func() error {
						for range each {
							if err := node.Update(t.Context(), "limits/counter", incr); err != nil {
								return err
							}
						}
						return nil
					})
				}
			}
			if err := g.Wait(); err != nil {
				t.Fatal(err)
			}
			got, err := a.Get(t.Context(), "limits/counter")
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprint(2 * workers * each); string(got) != want {
				t.Fatalf("counter = %s, want %s: an update was lost", got, want)
			}
		})
	}
}

func TestUpdateSemantics(t *testing.T) {
	b, _ := unsealed(t, newMem(), nil)
	defer b.Seal()
	ctx := context.Background()

	// fn sees absence, creates; sees the value, deletes.
	var seen []string
	err := b.Update(ctx, "x/k", func(cur []byte, found bool) ([]byte, bool, error) {
		seen = append(seen, fmt.Sprintf("%q %v", cur, found))
		return []byte("one"), false, nil
	})
	if err != nil || len(seen) != 1 || seen[0] != `"" false` {
		t.Fatalf("create: %v, seen %v", err, seen)
	}
	mustGet(t, b, "x/k", "one")

	// An error from fn writes nothing and comes back as is.
	boom := errors.New("over the limit")
	if err := b.Update(ctx, "x/k", func([]byte, bool) ([]byte, bool, error) { return []byte("two"), false, boom }); !errors.Is(err, boom) {
		t.Fatalf("fn error: %v", err)
	}
	mustGet(t, b, "x/k", "one")

	// Delete, then deleting an absent key is a no-op.
	del := func([]byte, bool) ([]byte, bool, error) { return nil, true, nil }
	if err := b.Update(ctx, "x/k", del); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "x/k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if err := b.Update(ctx, "x/k", del); err != nil {
		t.Fatal(err)
	}

	// core/ stays reserved; a sealed barrier refuses.
	if err := b.Update(ctx, "core/keyring", del); !errors.Is(err, ErrReservedPath) {
		t.Fatalf("core path: %v", err)
	}
	b.Seal()
	if err := b.Update(ctx, "x/k", del); !errors.Is(err, ErrSealed) {
		t.Fatalf("sealed: %v", err)
	}
}

// TestUpdateRetriesOnConflict: a write that lands between Update's read and
// its conditional write makes Update read again and call fn on the new
// value, instead of overwriting it.
func TestUpdateRetriesOnConflict(t *testing.T) {
	b, _ := unsealed(t, newMem(), nil)
	defer b.Seal()
	ctx := context.Background()
	mustPut(t, b, "x/k", "1")
	calls := 0
	err := b.Update(ctx, "x/k", func(cur []byte, found bool) ([]byte, bool, error) {
		calls++
		if calls == 1 {
			// Another writer wins the race.
			if err := b.Put(ctx, "x/k", []byte("5")); err != nil {
				return nil, false, err
			}
		}
		n, _ := strconv.Atoi(string(cur))
		return []byte(strconv.Itoa(n + 1)), false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Fatalf("fn called %d times, want 2", calls)
	}
	mustGet(t, b, "x/k", "6")
}
