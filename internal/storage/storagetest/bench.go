package storagetest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/moonvault/moonvault/internal/storage"
)

// BenchAccountCreate measures one Batch of 3 keys, the shape of an account
// creation (account record, key, address index), from parallel writers;
// it reports accounts/s. Every backend runs the same workload.
func BenchAccountCreate(b *testing.B, be storage.Backend, parallelism int) {
	var n atomic.Int64
	b.SetParallelism(parallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			err := be.Batch(context.Background(), []storage.Op{
				{Key: fmt.Sprintf("wallet/accounts/owner/%012d", i), Value: make([]byte, 200)},
				{Key: fmt.Sprintf("wallet/keys/owner/%012d", i), Value: make([]byte, 120)},
				{Key: fmt.Sprintf("wallet/addresses/0x%040x", i), Value: make([]byte, 60)},
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "accounts/s")
}
