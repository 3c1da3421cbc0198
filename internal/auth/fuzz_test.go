package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"
)

func FuzzParseToken(f *testing.F) {
	e := newEnv(f, nil)
	e.user("alice", "user")
	good := e.login("alice").AccessToken
	f.Add("eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.eyJzdWIiOiJhbGljZSJ9.")
	f.Add(good[:len(good)-2] + "AA")
	f.Fuzz(func(t *testing.T, tok string) {
		if tok == good {
			return
		}
		p, err := e.svc.Authenticate(context.Background(), tok)
		if err == nil || p != nil {
			t.Fatalf("accepted a forged token %q", tok)
		}
		if !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("error not ErrUnauthenticated: %v", err)
		}
	})
}

func BenchmarkAuthenticateCached(b *testing.B) {
	e := newEnv(b, nil)
	e.user("alice", "user")
	tok := e.login("alice").AccessToken
	ctx := context.Background()
	if _, err := e.svc.Authenticate(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.svc.Authenticate(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAuthenticateUncached(b *testing.B) {
	e := newEnv(b, nil)
	e.user("alice", "user")
	tok := e.login("alice").AccessToken
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		e.svc.cacheMu.Lock()
		clear(e.svc.tokens)
		e.svc.cacheMu.Unlock()
		if _, err := e.svc.Authenticate(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSecp256k1Sign is the yardstick: one Ethereum signature, the
// work a sign request does anyway. The cached authentication path must
// cost far less.
func BenchmarkSecp256k1Sign(b *testing.B) {
	seed := sha256.Sum256([]byte("benchmark key"))
	key, err := crypto.ToECDSA(seed[:]) // not crypto.GenerateKey: it fails under GODEBUG=fips140=only
	if err != nil {
		b.Fatal(err)
	}
	h := sha256.Sum256([]byte("moon vault"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := crypto.Sign(h[:], key); err != nil {
			b.Fatal(err)
		}
	}
}
