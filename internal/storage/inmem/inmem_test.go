package inmem

import (
	"testing"

	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/storagetest"
)

func TestContract(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend { return New() })
}

func BenchmarkAccountCreate(b *testing.B) {
	storagetest.BenchAccountCreate(b, New(), 1)
}
