package seal_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/hsm/hsmtest"
	"github.com/moonvault/moonvault/internal/seal"
	"github.com/moonvault/moonvault/internal/secret"
)

type cipherSeal interface {
	Encrypt(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	Decrypt(ctx context.Context, ciphertext, aad []byte) ([]byte, error)
	KeyID() string
}

func newPKCS11(t *testing.T) *seal.PKCS11 {
	t.Helper()
	cfg := hsmtest.NewToken(t)
	m, err := hsm.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	s := seal.NewPKCS11(m, cfg.KeyLabel)
	created, err := s.EnsureKey(context.Background())
	if err != nil || !created {
		t.Fatalf("EnsureKey = %v, %v", created, err)
	}
	return s
}

func newSoftware(t *testing.T) *seal.Software {
	t.Helper()
	s, err := seal.NewSoftware(secret.Bytes(bytes.Repeat([]byte{7}, 32)), "shamir:seal-wrap:1")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSeals(t *testing.T) {
	for name, mk := range map[string]func(*testing.T) cipherSeal{
		"pkcs11":   func(t *testing.T) cipherSeal { return newPKCS11(t) },
		"software": func(t *testing.T) cipherSeal { return newSoftware(t) },
	} {
		t.Run(name, func(t *testing.T) {
			s := mk(t)
			ctx := context.Background()
			root := bytes.Repeat([]byte{0x5A}, 32)
			ct, err := s.Encrypt(ctx, root, []byte(seal.RootKeyAAD))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(ct, root) {
				t.Fatal("plaintext visible in ciphertext")
			}
			pt, err := s.Decrypt(ctx, ct, []byte(seal.RootKeyAAD))
			if err != nil || !bytes.Equal(pt, root) {
				t.Fatalf("round trip = %x, %v", pt, err)
			}
			bad := bytes.Clone(ct)
			bad[len(bad)-1] ^= 1
			if _, err := s.Decrypt(ctx, bad, []byte(seal.RootKeyAAD)); !errors.Is(err, seal.ErrDecrypt) {
				t.Fatalf("tampered: %v", err)
			}
			if _, err := s.Decrypt(ctx, ct, []byte("other")); !errors.Is(err, seal.ErrDecrypt) {
				t.Fatalf("wrong aad: %v", err)
			}
		})
	}
}

func TestPKCS11Identity(t *testing.T) {
	s := newPKCS11(t)
	if s.Type() != "pkcs11" || s.KeyID() != "pkcs11:test-key" {
		t.Fatalf("type %q key id %q", s.Type(), s.KeyID())
	}
	if created, err := s.EnsureKey(context.Background()); err != nil || created {
		t.Fatalf("second EnsureKey = %v, %v", created, err)
	}
}

func TestSoftware(t *testing.T) {
	if _, err := seal.NewSoftware(make(secret.Bytes, 16), "x"); err == nil {
		t.Fatal("16-byte key accepted")
	}
	if _, err := seal.NewSoftware(make(secret.Bytes, 32), ""); err == nil {
		t.Fatal("empty key id accepted")
	}
	s := newSoftware(t)
	other, _ := seal.NewSoftware(secret.Bytes(bytes.Repeat([]byte{8}, 32)), "other")
	ctx := context.Background()
	ct, _ := s.Encrypt(ctx, []byte("v"), nil)
	if _, err := other.Decrypt(ctx, ct, nil); !errors.Is(err, seal.ErrDecrypt) {
		t.Fatalf("other key: %v", err)
	}
	s.Destroy()
	if _, err := s.Encrypt(ctx, []byte("v"), nil); !errors.Is(err, seal.ErrDestroyed) {
		t.Fatalf("after Destroy: %v", err)
	}
	if _, err := s.Decrypt(ctx, ct, nil); !errors.Is(err, seal.ErrDestroyed) {
		t.Fatalf("after Destroy: %v", err)
	}
}
