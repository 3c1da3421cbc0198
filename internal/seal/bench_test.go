package seal_test

import (
	"context"
	"testing"

	"github.com/moonvault/moonvault/internal/seal"
	"github.com/moonvault/moonvault/internal/seal/sealtest"
)

// BenchmarkWrap is the cost of one seal wrap (Encrypt) and unwrap
// (Decrypt) of a 32-byte CSP (a wallet key) per token and mechanism, as
// the vault pays it for every account created and every key not in the
// cache. Mechanisms a token does not offer are left out.
//
//	go test -run '^$' -bench BenchmarkWrap -benchtime 2s ./internal/seal/
func BenchmarkWrap(b *testing.B) {
	ctx := context.Background()
	aad := []byte("moonvault seal wrap\x00wallet/keys/alice/main")
	pt := make([]byte, 32)
	for _, tok := range sealtest.Tokens {
		for _, mech := range seal.Mechanisms {
			if !tok.Offers(b, mech) {
				continue
			}
			cfg := tok.Config(b, mech)
			s, err := seal.NewPKCS11(cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.EnsureKey(ctx); err != nil {
				b.Fatal(err)
			}
			ct, err := s.Encrypt(ctx, pt, aad)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(tok.Name+"/"+string(mech)+"/wrap", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.Encrypt(ctx, pt, aad); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(tok.Name+"/"+string(mech)+"/unwrap", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.Decrypt(ctx, ct, aad); err != nil {
						b.Fatal(err)
					}
				}
			})
			s.Close()
		}
	}
}
