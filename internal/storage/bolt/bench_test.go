package bolt_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/moonvault/moonvault/internal/storage/bolt"
	"github.com/moonvault/moonvault/internal/storage/storagetest"
)

// Parallel write benchmarks run with many goroutines per CPU, as an HTTP
// server does, so that group commit has writers to coalesce.
const writeParallelism = 32

func BenchmarkPutParallel(b *testing.B) {
	be := openTemp(b)
	defer be.Close()
	var n atomic.Int64
	val := make([]byte, 256)
	b.SetParallelism(writeParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := be.Put(context.Background(), fmt.Sprintf("bench/%012d", n.Add(1)), val); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkPutSerial(b *testing.B) {
	be := openTemp(b)
	defer be.Close()
	val := make([]byte, 256)
	for i := 0; b.Loop(); i++ {
		if err := be.Put(context.Background(), fmt.Sprintf("bench/%012d", i), val); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAccountCreate is one Batch of 3 keys, the shape of an account
// creation (account record, key, address index). ops/s = accounts/s.
func BenchmarkAccountCreate(b *testing.B) {
	be := openTemp(b)
	defer be.Close()
	storagetest.BenchAccountCreate(b, be, writeParallelism)
}

var sizes = []int{1_000, 100_000, 1_000_000}

// sizeKey spreads n keys over 1000 owners in contiguous, sorted blocks so
// that filling appends in key order.
func sizeKey(n, i int) string {
	return fmt.Sprintf("wallet/accounts/o%03d/%09d", i/(n/1000), i)
}

// filled builds a database of n keys through bbolt directly in large
// transactions (a million individually fsynced Puts would take minutes).
func filled(b *testing.B, n int) *bolt.Backend {
	b.Helper()
	path := filepath.Join(b.TempDir(), "vault.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	const perTx = 100_000
	for start := 0; start < n; start += perTx {
		err := db.Update(func(tx *bbolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("moonvault_kv"))
			if err != nil {
				return err
			}
			bk.FillPercent = 0.9 // sequential appends
			for i := start; i < min(n, start+perTx); i++ {
				if err := bk.Put([]byte(sizeKey(n, i)), make([]byte, 100)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	be, err := bolt.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.Close() })
	return be
}

// BenchmarkLookupBySize measures Get of a random key and List of a 20-key
// page in one owner's prefix (n/1000 keys) as the database grows: both must
// stay flat, List being a cursor Seek plus limit steps.
func BenchmarkLookupBySize(b *testing.B) {
	for _, n := range sizes {
		be := filled(b, n)
		b.Run(fmt.Sprintf("keys=%d/Get", n), func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i = (i + 7919) % n
					if _, err := be.Get(context.Background(), sizeKey(n, i)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		b.Run(fmt.Sprintf("keys=%d/List", n), func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i = (i + 7919) % n
					owner := sizeKey(n, i)[:len("wallet/accounts/o000/")]
					keys, err := be.List(context.Background(), owner, "", 20)
					if err != nil || len(keys) != min(20, n/1000) {
						b.Error("List:", len(keys), err)
						return
					}
				}
			})
		})
	}
}
