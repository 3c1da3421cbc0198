package wallet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage/postgres"
	"github.com/moonvault/moonvault/internal/storage/postgres/pgtest"
)

// twoNodes returns two wallet services ("nodes") over one PostgreSQL
// database, each with its own connection pool and lock stripes, sharing
// the seal-wrap key as real nodes share the HSM.
func twoNodes(t *testing.T) (*Service, *Service) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	s := newSealer(t)
	var out [2]*Service
	for i := range out {
		pg, err := postgres.Open(t.Context(), url, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pg.Close() })
		out[i] = New(pg, s, rand.Reader, Options{})
	}
	return out[0], out[1]
}

// TestCreateRaceAcrossNodes: nodes creating one name, or importing one key
// under two names, at the same moment: exactly one wins, and the account
// that was answered is the one stored (a handed-out address is never
// overwritten by another node's key).
func TestCreateRaceAcrossNodes(t *testing.T) {
	a, b := twoNodes(t)
	ctx := context.Background()
	const rounds = 10
	for r := range rounds {
		name := fmt.Sprintf("hot-%d", r)
		var wg sync.WaitGroup
		var accs [2]*Account
		var errs [2]error
		for i, node := range []*Service{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				accs[i], errs[i] = node.Create(ctx, "alice", name, nil)
			}()
		}
		wg.Wait()
		won := -1
		for i := range 2 {
			switch {
			case errs[i] == nil && won >= 0:
				t.Fatalf("round %d: both nodes created %s (%s and %s)", r, name, accs[0].Address, accs[1].Address)
			case errs[i] == nil:
				won = i
			case !errors.Is(errs[i], ErrExists):
				t.Fatalf("round %d node %d: %v, want ErrExists", r, i, errs[i])
			}
		}
		if won < 0 {
			t.Fatalf("round %d: neither node created %s: %v", r, name, errs)
		}
		stored, err := b.Get(ctx, "alice", name)
		if err != nil {
			t.Fatal(err)
		}
		if stored.Address != accs[won].Address {
			t.Fatalf("round %d: answered %s, stored %s", r, accs[won].Address, stored.Address)
		}
		// The stored key is the answered account's key.
		if _, _, err := b.SignMessage(ctx, stored, []byte("x")); err != nil {
			t.Fatalf("round %d: the winner's account does not sign: %v", r, err)
		}
	}

	// One key imported under two names on two nodes: one address entry.
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var errs [2]error
	for i, node := range []*Service{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = node.Create(ctx, "alice", fmt.Sprintf("imported-%d", i), secret.Bytes(key).Clone())
		}()
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("importing one key on two nodes: %v / %v, want exactly one success (key %s…)", errs[0], errs[1], hex.EncodeToString(key[:2]))
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, ErrExists) {
			t.Fatalf("the losing import: %v, want ErrExists", err)
		}
	}
}
