package wallet

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/moonvault/moonvault/internal/storage"
)

// BenchmarkRawCryptoSign is the floor BenchmarkSignMessageCached compares
// with: go-ethereum's crypto.Sign over an EIP-191 digest.
func BenchmarkRawCryptoSign(b *testing.B) {
	k := testKey(b)
	h := accounts.TextHash([]byte("hello"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := crypto.Sign(h, k); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignMessageCached(b *testing.B) {
	ctx := context.Background()
	svc, _, _ := newService(b, Options{})
	a, err := svc.Create(ctx, "alice", "w", nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := svc.SignMessage(ctx, a, []byte("warm")); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := svc.SignMessage(ctx, a, []byte("hello")); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignMessageCachedParallel(b *testing.B) {
	ctx := context.Background()
	svc, _, _ := newService(b, Options{})
	a, err := svc.Create(ctx, "alice", "w", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := svc.SignMessage(ctx, a, []byte("hello")); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCreate includes key generation, seal wrap and one fsynced bbolt
// batch per account.
func BenchmarkCreate(b *testing.B) {
	ctx := context.Background()
	svc, _, _ := newService(b, Options{})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := svc.Create(ctx, "alice", "", nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkByAddressLookup should be flat from 1k to 100k accounts: one
// index read and one record read.
func BenchmarkByAddressLookup(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("accounts=%d", n), func(b *testing.B) {
			ctx := context.Background()
			svc, kv, _ := newService(b, Options{})
			addrs := populate(b, kv, n)
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if _, err := svc.ByAddress(ctx, addrs[i%len(addrs)]); err != nil {
					b.Fatal(err)
				}
				i += 7919
			}
		})
	}
}

// populate writes n account records and index entries directly, in large
// batches (keys are not needed for lookups).
func populate(b *testing.B, kv storage.KV, n int) []common.Address {
	ctx := context.Background()
	addrs := make([]common.Address, n)
	var ops []storage.Op
	for i := range n {
		rand.Read(addrs[i][:])
		name := fmt.Sprintf("a%07d", i)
		rec, _ := json.Marshal(&record{Name: name, Owner: "alice", Address: addrs[i].Hex()})
		ops = append(ops,
			storage.Op{Key: accountKey("alice", name), Value: rec},
			storage.Op{Key: ethAddressKey(addrs[i]), Value: []byte("alice/" + name)})
		if len(ops) >= 10_000 || i == n-1 {
			if err := kv.Batch(ctx, ops); err != nil {
				b.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	return addrs
}
