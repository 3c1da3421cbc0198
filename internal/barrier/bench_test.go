package barrier

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// 200 bytes is about a wallet key record (seal-wrapped key + metadata).
var benchValue = make([]byte, 200)

func BenchmarkGet(b *testing.B) {
	br, _ := unsealed(b, newMem(), nil)
	ctx := context.Background()
	if err := br.Put(ctx, "wallet/keys/alice/main", benchValue); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchValue)))
	for b.Loop() {
		if _, err := br.Get(ctx, "wallet/keys/alice/main"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetParallel(b *testing.B) {
	br, _ := unsealed(b, newMem(), nil)
	ctx := context.Background()
	if err := br.Put(ctx, "wallet/keys/alice/main", benchValue); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := br.Get(ctx, "wallet/keys/alice/main"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkPut(b *testing.B) {
	br, _ := unsealed(b, newMem(), nil)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(benchValue)))
	for b.Loop() {
		if err := br.Put(ctx, "wallet/keys/alice/main", benchValue); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenBySize is the decrypt cost alone, without a backend.
func BenchmarkOpenBySize(b *testing.B) {
	kr := fixedKeyring(b)
	for _, size := range []int{32, 1024, 64 * 1024} {
		rec := kr.seal("wallet/keys/alice/main", make([]byte, size))
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := kr.open("wallet/keys/alice/main", rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkGetBolt(b *testing.B) {
	db := openBolt(b, filepath.Join(b.TempDir(), "vault.db"))
	b.Cleanup(func() { _ = db.Close() })
	br, _ := unsealed(b, db, nil)
	ctx := context.Background()
	if err := br.Put(ctx, "wallet/keys/alice/main", benchValue); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := br.Get(ctx, "wallet/keys/alice/main"); err != nil {
			b.Fatal(err)
		}
	}
}
