package sealwrap_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/hsm/hsmtest"
	"github.com/moonvault/moonvault/internal/seal"
	"github.com/moonvault/moonvault/internal/sealwrap"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage/bolt"
)

func hsmSeal(t testing.TB, label string) (*seal.PKCS11, *hsm.Module) {
	t.Helper()
	cfg := hsmtest.NewToken(t)
	m, err := hsm.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	s := seal.NewPKCS11(m, label)
	if _, err := s.EnsureKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, m
}

func software(t testing.TB, b byte, id string) *seal.Software {
	s, err := seal.NewSoftware(secret.Bytes(bytes.Repeat([]byte{b}, 32)), id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRoundTripAndPathBinding(t *testing.T) {
	w, _ := hsmSeal(t, "seal-wrap")
	s := sealwrap.New(w)
	ctx := context.Background()
	key := []byte("0123456789abcdef0123456789abcdef")
	const path = "wallet/keys/alice/main"
	env, err := s.Wrap(ctx, path, key)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(env, key) {
		t.Fatal("plaintext in envelope")
	}
	wrapped, id, err := sealwrap.Inspect(env)
	if err != nil || !wrapped || id != "pkcs11:seal-wrap" {
		t.Fatalf("Inspect = %v %q %v", wrapped, id, err)
	}
	got, err := s.Unwrap(ctx, path, env)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unwrap = %x, %v", got, err)
	}
	// Moved to another path: fails, naming the path.
	const other = "wallet/keys/mallory/main"
	_, err = s.Unwrap(ctx, other, env)
	if !errors.Is(err, sealwrap.ErrIntegrity) || !bytes.Contains([]byte(err.Error()), []byte(other)) {
		t.Fatalf("path swap: %v", err)
	}
	// Tampering anywhere fails closed.
	for i := range env {
		bad := bytes.Clone(env)
		bad[i] ^= 0x80
		if _, err := s.Unwrap(ctx, path, bad); err == nil {
			t.Fatalf("tampered byte %d accepted", i)
		}
	}
	// Another key id.
	s2 := sealwrap.New(software(t, 1, "shamir:1"))
	if _, err := s2.Unwrap(ctx, path, env); !errors.Is(err, sealwrap.ErrWrongKey) {
		t.Fatalf("wrong key: %v", err)
	}
	// Same key id string, different key material: integrity failure.
	envSoft, _ := s2.Wrap(ctx, path, key)
	s3 := sealwrap.New(software(t, 2, "shamir:1"))
	if _, err := s3.Unwrap(ctx, path, envSoft); !errors.Is(err, sealwrap.ErrIntegrity) {
		t.Fatalf("same id, other key: %v", err)
	}
}

func TestPlain(t *testing.T) {
	ctx := context.Background()
	off := sealwrap.New(nil)
	env, err := off.Wrap(ctx, "auth/totp/bob", []byte("seed"))
	if err != nil {
		t.Fatal(err)
	}
	if wrapped, id, err := sealwrap.Inspect(env); err != nil || wrapped || id != "" {
		t.Fatalf("Inspect plain = %v %q %v", wrapped, id, err)
	}
	if got, err := off.Unwrap(ctx, "auth/totp/bob", env); err != nil || string(got) != "seed" {
		t.Fatalf("plain Unwrap = %q, %v", got, err)
	}
	on := sealwrap.New(software(t, 1, "k1"))
	if _, err := on.Unwrap(ctx, "auth/totp/bob", env); !errors.Is(err, sealwrap.ErrNotWrapped) {
		t.Fatalf("plain under enabled seal wrap: %v", err)
	}
	wenv, _ := on.Wrap(ctx, "auth/totp/bob", []byte("seed"))
	if _, err := off.Unwrap(ctx, "auth/totp/bob", wenv); !errors.Is(err, sealwrap.ErrWrongKey) {
		t.Fatalf("wrapped under disabled seal wrap: %v", err)
	}
	if _, err := off.Wrap(ctx, "", nil); err == nil {
		t.Fatal("empty path accepted")
	}
}

func TestInspectMalformed(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":          nil,
		"bad magic":      []byte("XXXX\x01\x00\x00"),
		"bad version":    []byte("MVSW\x02\x00\x00"),
		"bad flags":      []byte("MVSW\x01\x02\x00"),
		"truncated id":   []byte("MVSW\x01\x01\x05ab"),
		"wrapped no id":  []byte("MVSW\x01\x01\x00ct"),
		"plain with id":  []byte("MVSW\x01\x00\x01kv"),
		"header too big": []byte("MVSW\x01"),
	} {
		if _, _, err := sealwrap.Inspect(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := sealwrap.New(nil).Unwrap(context.Background(), "p", b); !errors.Is(err, sealwrap.ErrIntegrity) {
			t.Errorf("%s: Unwrap err = %v", name, err)
		}
	}
}

func TestRewrap(t *testing.T) {
	ctx := context.Background()
	kv, err := bolt.Open(filepath.Join(t.TempDir(), "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	plain := sealwrap.New(nil)
	want := map[string]string{}
	for i := range 600 { // more than one page
		k := fmt.Sprintf("wallet/keys/u%03d/k", i)
		want[k] = fmt.Sprintf("secret-%d", i)
		env, _ := plain.Wrap(ctx, k, []byte(want[k]))
		if err := kv.Put(ctx, k, env); err != nil {
			t.Fatal(err)
		}
	}
	other, _ := plain.Wrap(ctx, "auth/users/x", []byte("not a CSP"))
	kv.Put(ctx, "auth/users/x", other)

	// Enable seal wrap with the HSM key: plain -> wrapped.
	w1, _ := hsmSeal(t, "sw-1")
	s1 := sealwrap.New(w1)
	n, err := s1.Rewrap(ctx, kv, []string{"wallet/keys/"})
	if err != nil || n != 600 {
		t.Fatalf("Rewrap = %d, %v", n, err)
	}
	check := func(s *sealwrap.Sealer, keyID string) {
		t.Helper()
		for k, v := range want {
			env, err := kv.Get(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			if _, id, _ := sealwrap.Inspect(env); id != keyID {
				t.Fatalf("%s key id %q, want %q", k, id, keyID)
			}
			got, err := s.Unwrap(ctx, k, env)
			if err != nil || string(got) != v {
				t.Fatalf("%s = %q, %v", k, got, err)
			}
		}
	}
	check(s1, "pkcs11:sw-1")
	if n, err := s1.Rewrap(ctx, kv, []string{"wallet/keys/"}); err != nil || n != 0 {
		t.Fatalf("second Rewrap = %d, %v (want idempotent)", n, err)
	}
	env, _ := kv.Get(ctx, "auth/users/x")
	if wrapped, _, _ := sealwrap.Inspect(env); wrapped {
		t.Fatal("value outside the prefixes was rewrapped")
	}

	// Rotate to a new key: the previous wrapper unwraps, the new one wraps.
	w2 := software(t, 9, "shamir:2")
	s2 := sealwrap.New(w2, w1)
	if n, err := s2.Rewrap(ctx, kv, []string{"wallet/keys/"}); err != nil || n != 600 {
		t.Fatalf("rotate Rewrap = %d, %v", n, err)
	}
	check(s2, "shamir:2")
	if _, err := sealwrap.New(w2).Unwrap(ctx, "wallet/keys/u000/k", mustGet(t, kv, "wallet/keys/u000/k")); err != nil {
		t.Fatalf("after rotation the old key is not needed: %v", err)
	}

	// A corrupted value stops Rewrap with an error naming it.
	kv.Put(ctx, "wallet/keys/zzz", []byte("garbage"))
	if _, err := s2.Rewrap(ctx, kv, []string{"wallet/keys/"}); !errors.Is(err, sealwrap.ErrIntegrity) {
		t.Fatalf("garbage: %v", err)
	}
}

func mustGet(t *testing.T, kv *bolt.Backend, k string) []byte {
	t.Helper()
	v, err := kv.Get(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func FuzzUnwrap(f *testing.F) {
	ctx := context.Background()
	s := sealwrap.New(software(f, 3, "fuzz"))
	env, _ := s.Wrap(ctx, "p", []byte("v"))
	f.Add(env)
	f.Add([]byte("MVSW\x01\x00\x00plain"))
	f.Fuzz(func(t *testing.T, b []byte) {
		wrapped, id, err := sealwrap.Inspect(b)
		if err == nil && wrapped != (id != "") {
			t.Fatalf("wrapped=%v id=%q", wrapped, id)
		}
		if got, err := s.Unwrap(ctx, "p", b); err == nil && !bytes.Equal(got, []byte("v")) {
			t.Fatalf("forged envelope accepted: %q", got)
		}
	})
}

func TestDescribe(t *testing.T) {
	ctx := context.Background()
	w := software(t, 7, "soft:k1")
	s := sealwrap.New(w)
	env, err := s.Wrap(ctx, "wallet/keys/a/b", []byte("key"))
	if err != nil {
		t.Fatal(err)
	}
	wrapped, mech, err := s.Describe(env)
	if err != nil || !wrapped || mech != "AES-256-GCM (software) with soft:k1" {
		t.Fatalf("wrapped envelope: %v %q %v", wrapped, mech, err)
	}
	plain := sealwrap.New(nil)
	env, _ = plain.Wrap(ctx, "wallet/keys/a/b", []byte("key"))
	if wrapped, mech, err := plain.Describe(env); err != nil || wrapped || mech != "" {
		t.Fatalf("plain envelope: %v %q %v", wrapped, mech, err)
	}
	if _, _, err := s.Describe([]byte("junk")); err == nil {
		t.Fatal("junk described")
	}
}
