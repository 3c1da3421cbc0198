package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"
)

func TestDecodeLoginRequest(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		field string // "" = ok
	}{
		{"ok", `{"username":"alice","password":"correct horse battery"}`, ""},
		{"ok with totp", `{"username":"alice","password":"pw","totp":"123456"}`, ""},
		{"unknown field", `{"username":"alice","password":"pw","admin":true}`, "body"},
		{"trailing", `{"username":"alice","password":"pw"} {}`, "body"},
		{"not json", `username=alice`, "body"},
		{"array", `[]`, "body"},
		{"no username", `{"password":"pw"}`, "username"},
		{"no password", `{"username":"alice"}`, "password"},
		{"long username", `{"username":"` + strings.Repeat("a", 65) + `","password":"pw"}`, "username"},
		{"too big", `{"username":"alice","password":"` + strings.Repeat("p", 5000) + `"}`, "body"},
		{"wrong type", `{"username":1,"password":"pw"}`, "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := DecodeLoginRequest([]byte(tt.body))
			if tt.field == "" {
				if err != nil || in.Username != "alice" || in.Password == "" {
					t.Fatalf("DecodeLoginRequest = %+v, %v", in, err)
				}
				return
			}
			var ie *InvalidInputError
			if !errors.As(err, &ie) || ie.Field != tt.field {
				t.Fatalf("DecodeLoginRequest = %v, want field %s", err, tt.field)
			}
		})
	}
}

func FuzzLoginBody(f *testing.F) {
	f.Add([]byte(`{"username":"alice","password":"correct horse battery","totp":"123456"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := DecodeLoginRequest(body)
		if err == nil && (in.Username == "" || in.Password == "" || len(body) > MaxLoginBody) {
			t.Fatalf("accepted an invalid body: %q", body)
		}
		if err != nil && !errors.Is(err, ErrInvalidInput) {
			t.Fatalf("error not ErrInvalidInput: %v", err)
		}
	})
}

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
