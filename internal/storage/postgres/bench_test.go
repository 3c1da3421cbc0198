package postgres_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/postgres/pgtest"
	"github.com/moonvault/moonvault/internal/storage/storagetest"
)

const writeParallelism = 16

func BenchmarkGet(b *testing.B) {
	be := open(b, pgtest.NewDatabase(b))
	ops := make([]storage.Op, 1000)
	for i := range ops {
		ops[i] = storage.Op{Key: fmt.Sprintf("bench/%06d", i), Value: make([]byte, 256)}
	}
	if err := be.Batch(context.Background(), ops); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i = (i + 7) % len(ops)
			if _, err := be.Get(context.Background(), ops[i].Key); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkPutParallel(b *testing.B) {
	be := open(b, pgtest.NewDatabase(b))
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

// BenchmarkAccountCreate is one Batch of 3 keys, as an account creation.
func BenchmarkAccountCreate(b *testing.B) {
	be := open(b, pgtest.NewDatabase(b))
	storagetest.BenchAccountCreate(b, be, writeParallelism)
}

// BenchmarkNotifyLatency is the time from a Put on one node to the
// notification on another: ns/op = commit + NOTIFY delivery.
func BenchmarkNotifyLatency(b *testing.B) {
	url := pgtest.NewDatabase(b)
	writer, watcher := open(b, url), open(b, url)
	got := make(chan string, 1)
	defer watcher.Subscribe(func(k string) {
		if k != "" {
			got <- k
		}
	})()
	for i := 0; b.Loop(); i++ {
		key := fmt.Sprintf("notify/%d", i)
		if err := writer.Put(context.Background(), key, nil); err != nil {
			b.Fatal(err)
		}
		select {
		case k := <-got:
			if k != key {
				b.Fatalf("got %q, want %q", k, key)
			}
		case <-time.After(5 * time.Second):
			b.Fatal("no notification")
		}
	}
}
