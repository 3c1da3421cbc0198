package wallet

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

// countingKV counts reads of account records.
type countingKV struct {
	storage.KV
	reads atomic.Int64
}

func (c *countingKV) Get(ctx context.Context, key string) ([]byte, error) {
	if len(key) > len(prefixAccounts) && key[:len(prefixAccounts)] == prefixAccounts {
		c.reads.Add(1)
	}
	return c.KV.Get(ctx, key)
}

// TestAccountCache: with ExclusiveStorage the sign path's Get reads an
// account record once; every change made through the Service (grant,
// revoke, delete, re-create) and Purge are seen by the next Get; callers
// get copies. Without it every Get reads storage (other nodes may write).
func TestAccountCache(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		exclusive bool
		reads     int64 // storage reads of the record by 5 Gets
	}{
		{exclusive: false, reads: 5},
		{exclusive: true, reads: 1},
	} {
		t.Run(fmt.Sprintf("exclusive=%v", tc.exclusive), func(t *testing.T) {
			kv := &countingKV{KV: openKV(t)}
			svc := New(kv, newSealer(t), rand.Reader, Options{ExclusiveStorage: tc.exclusive})
			if _, err := svc.Create(ctx, "alice", "main", nil); err != nil {
				t.Fatal(err)
			}
			kv.reads.Store(0)
			for range 5 {
				a, err := svc.Get(ctx, "alice", "main")
				if err != nil {
					t.Fatal(err)
				}
				a.Grants = append(a.Grants, "mallory") // a copy: the cache is not touched
				a.PublicKey[1] ^= 0xff
			}
			if got := kv.reads.Load(); got != tc.reads {
				t.Fatalf("5 Gets read the record %d times, want %d", got, tc.reads)
			}
			check := func(step string, want []string) {
				t.Helper()
				a, err := svc.Get(ctx, "alice", "main")
				if err != nil {
					t.Fatalf("%s: %v", step, err)
				}
				if !slices.Equal(a.Grants, want) {
					t.Fatalf("%s: grants %v, want %v", step, a.Grants, want)
				}
				stored, err := svc.getRecord(ctx, "alice", "main")
				if err != nil || !slices.Equal(stored.PublicKey, a.PublicKey) {
					t.Fatalf("%s: the cached public key differs from storage (%v)", step, err)
				}
			}
			check("after the callers' edits", nil)
			if err := svc.Grant(ctx, "alice", "main", "bob"); err != nil {
				t.Fatal(err)
			}
			check("grant", []string{"bob"})
			if err := svc.Revoke(ctx, "alice", "main", "bob"); err != nil {
				t.Fatal(err)
			}
			check("revoke", nil)
			old, _ := svc.Get(ctx, "alice", "main")
			if err := svc.Delete(ctx, "alice", "main"); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Get(ctx, "alice", "main"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get after delete: %v", err)
			}
			re, err := svc.Create(ctx, "alice", "main", nil)
			if err != nil {
				t.Fatal(err)
			}
			if a, err := svc.Get(ctx, "alice", "main"); err != nil || a.Address != re.Address || a.Address == old.Address {
				t.Fatalf("re-created account: got %+v (%v), want address %s", a, err, re.Address)
			}
			kv.reads.Store(0)
			svc.Purge()
			if _, err := svc.Get(ctx, "alice", "main"); err != nil || kv.reads.Load() != 1 {
				t.Fatalf("Get after Purge: %v, %d reads, want 1", err, kv.reads.Load())
			}
		})
	}
}

// pausingKV runs after, once, between reading an account record and
// returning it: a write that lands while a reader holds the old value.
type pausingKV struct {
	storage.KV
	after func()
}

func (p *pausingKV) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := p.KV.Get(ctx, key)
	if f := p.after; f != nil && strings.HasPrefix(key, prefixAccounts) {
		p.after = nil
		f()
	}
	return b, err
}

// TestAccountCacheStaleRead: a Get that read the record before a revoke
// landed must not cache what it read after the revoke invalidated the
// entry; the next Get sees the revoke.
func TestAccountCacheStaleRead(t *testing.T) {
	ctx := context.Background()
	kv := &pausingKV{KV: openKV(t)}
	svc := New(kv, newSealer(t), rand.Reader, Options{ExclusiveStorage: true})
	if _, err := svc.Create(ctx, "alice", "main", nil); err != nil {
		t.Fatal(err)
	}
	if err := svc.Grant(ctx, "alice", "main", "bob"); err != nil {
		t.Fatal(err)
	}
	svc.Purge() // the next Get misses
	kv.after = func() {
		if err := svc.Revoke(ctx, "alice", "main", "bob"); err != nil {
			t.Error(err)
		}
	}
	a, err := svc.Get(ctx, "alice", "main")
	if err != nil || !slices.Equal(a.Grants, []string{"bob"}) {
		t.Fatalf("the paused Get: %+v, %v (it read before the revoke)", a, err)
	}
	a, err = svc.Get(ctx, "alice", "main")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Grants) != 0 {
		t.Fatalf("the revoked grant was cached by a read that began before the revoke: %v", a.Grants)
	}
}

// TestAccountCacheByAddress: JSON-RPC's address lookups are cached too, and
// an address that moves to another account (deleted, then imported under
// another name) or to none is followed at once.
func TestAccountCacheByAddress(t *testing.T) {
	ctx := context.Background()
	for _, exclusive := range []bool{false, true} {
		t.Run(fmt.Sprintf("exclusive=%v", exclusive), func(t *testing.T) {
			kv := &countingKV{KV: openKV(t)}
			svc := New(kv, newSealer(t), rand.Reader, Options{ExclusiveStorage: exclusive})
			key := secret.Bytes(crypto.Keccak256([]byte("by address")))
			a1, err := svc.Create(ctx, "alice", "first", key.Clone())
			if err != nil {
				t.Fatal(err)
			}
			addr := common.HexToAddress(a1.Address)
			for range 3 {
				if got, err := svc.ByAddress(ctx, addr); err != nil || got.Name != "first" {
					t.Fatalf("ByAddress = %+v, %v", got, err)
				}
			}
			if err := svc.Delete(ctx, "alice", "first"); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.ByAddress(ctx, addr); !errors.Is(err, ErrNotFound) {
				t.Fatalf("ByAddress after delete: %v", err)
			}
			if _, err := svc.Create(ctx, "bob", "second", key.Clone()); err != nil {
				t.Fatal(err)
			}
			if got, err := svc.ByAddress(ctx, addr); err != nil || got.Owner != "bob" || got.Name != "second" {
				t.Fatalf("ByAddress after re-import = %+v, %v; want bob/second", got, err)
			}
		})
	}
}
