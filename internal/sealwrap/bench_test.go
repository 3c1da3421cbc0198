package sealwrap_test

import (
	"context"
	"testing"

	"github.com/moonvault/moonvault/internal/sealwrap"
)

func benchEnvelope(b *testing.B) (*sealwrap.Sealer, []byte) {
	w, _ := hsmSeal(b, "bench")
	s := sealwrap.New(w)
	env, err := s.Wrap(context.Background(), "wallet/keys/alice/main", make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	return s, env
}

// BenchmarkUnwrapSealWrapped unwraps a 32-byte key seal-wrapped via SoftHSM2.
func BenchmarkUnwrapSealWrapped(b *testing.B) {
	s, env := benchEnvelope(b)
	ctx := context.Background()
	for b.Loop() {
		k, err := s.Unwrap(ctx, "wallet/keys/alice/main", env)
		if err != nil {
			b.Fatal(err)
		}
		k.Destroy()
	}
}

func BenchmarkUnwrapSealWrappedParallel(b *testing.B) {
	s, env := benchEnvelope(b)
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k, err := s.Unwrap(ctx, "wallet/keys/alice/main", env)
			if err != nil {
				b.Error(err)
				return
			}
			k.Destroy()
		}
	})
}

func BenchmarkWrapSealWrapped(b *testing.B) {
	s, _ := benchEnvelope(b)
	ctx := context.Background()
	pt := make([]byte, 32)
	for b.Loop() {
		if _, err := s.Wrap(ctx, "wallet/keys/alice/main", pt); err != nil {
			b.Fatal(err)
		}
	}
}
