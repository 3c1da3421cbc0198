package hsm_test

import (
	"context"
	"testing"
)

func BenchmarkEncryptGCM(b *testing.B) {
	m, cfg := open(b)
	ctx := context.Background()
	if _, err := m.EnsureAESKey(ctx, cfg.KeyLabel); err != nil {
		b.Fatal(err)
	}
	pt := make([]byte, 32)
	for b.Loop() {
		if _, err := m.EncryptGCM(ctx, cfg.KeyLabel, pt, []byte("aad")); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncryptGCMParallel(b *testing.B) {
	m, cfg := open(b)
	ctx := context.Background()
	if _, err := m.EnsureAESKey(ctx, cfg.KeyLabel); err != nil {
		b.Fatal(err)
	}
	pt := make([]byte, 32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.EncryptGCM(ctx, cfg.KeyLabel, pt, []byte("aad")); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkDecryptGCM(b *testing.B) {
	m, cfg := open(b)
	ctx := context.Background()
	if _, err := m.EnsureAESKey(ctx, cfg.KeyLabel); err != nil {
		b.Fatal(err)
	}
	ct, err := m.EncryptGCM(ctx, cfg.KeyLabel, make([]byte, 32), []byte("aad"))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := m.DecryptGCM(ctx, cfg.KeyLabel, ct, []byte("aad")); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGenerateRandom64(b *testing.B) {
	m, _ := open(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := m.GenerateRandom(ctx, 64); err != nil {
			b.Fatal(err)
		}
	}
}
