package sealwrap_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/hsm/hsmtest"
	"github.com/moonvault/moonvault/internal/seal"
	"github.com/moonvault/moonvault/internal/seal/sealtest"
	"github.com/moonvault/moonvault/internal/sealwrap"
	"github.com/moonvault/moonvault/internal/storage/bolt"
)

func hsmSeal(t testing.TB, label string) (*seal.PKCS11, hsm.Config) {
	t.Helper()
	cfg := hsmtest.NewToken(t)
	s, err := seal.NewPKCS11(seal.Config{HSM: cfg, KeyLabel: label}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if _, err := s.EnsureKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, cfg
}

func software(_ testing.TB, b byte, id string) *sealtest.Software {
	return sealtest.NewWithKey(id, bytes.Repeat([]byte{b}, 32))
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
	if err != nil || !wrapped || id != "pkcs11:aes_gcm:seal-wrap" {
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
	check(s1, "pkcs11:aes_gcm:sw-1")
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
	check(s2, "test:shamir:2")
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

// TestContract: seal wrap on SoftHSM2 and opencryptoki with every
// mechanism each offers: path binding, tamper evidence, and a rewrap of
// plain values under the seal.
func TestContract(t *testing.T) {
	sealtest.Each(t, func(t *testing.T, cfg seal.Config) {
		ctx := context.Background()
		w, err := seal.NewPKCS11(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if _, err := w.EnsureKey(ctx); err != nil {
			t.Fatal(err)
		}
		s := sealwrap.New(w)
		const path = "wallet/keys/alice/main"
		key := []byte("0123456789abcdef0123456789abcdef")
		env, err := s.Wrap(ctx, path, key)
		if err != nil {
			t.Fatal(err)
		}
		if wrapped, id, err := sealwrap.Inspect(env); err != nil || !wrapped || id != w.KeyID() || bytes.Contains(env, key) {
			t.Fatalf("Inspect = %v %q %v", wrapped, id, err)
		}
		if got, err := s.Unwrap(ctx, path, env); err != nil || !bytes.Equal(got, key) {
			t.Fatalf("Unwrap = %x, %v", got, err)
		}
		if _, err := s.Unwrap(ctx, "wallet/keys/mallory/main", env); !errors.Is(err, sealwrap.ErrIntegrity) {
			t.Fatalf("moved to another path: %v", err)
		}
		for i := range env {
			bad := bytes.Clone(env)
			bad[i] ^= 0x04
			if _, err := s.Unwrap(ctx, path, bad); err == nil {
				t.Fatalf("tampered byte %d accepted", i)
			}
		}
		kv, err := bolt.Open(filepath.Join(t.TempDir(), "vault.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer kv.Close()
		for i := range 5 {
			penv, _ := sealwrap.New(nil).Wrap(ctx, fmt.Sprintf("auth/totp/u%d", i), []byte{byte(i)})
			if err := kv.Put(ctx, fmt.Sprintf("auth/totp/u%d", i), penv); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := s.Rewrap(ctx, kv, []string{"auth/totp/"}); err != nil || n != 5 {
			t.Fatalf("Rewrap = %d, %v", n, err)
		}
		for i := range 5 {
			k := fmt.Sprintf("auth/totp/u%d", i)
			got, err := s.Unwrap(ctx, k, mustGet(t, kv, k))
			if err != nil || !bytes.Equal(got, []byte{byte(i)}) {
				t.Fatalf("%s after rewrap = %x, %v", k, got, err)
			}
		}
	})
}

// TestRewrapAcrossMechanismsAndKeys: what operator rewrap does after
// hsm_mechanism or hsm_key_label changed. Values wrapped under aes_gcm
// with key "a" are rewrapped under aes_cbc_pad_hmac with key "b" by a
// Sealer that knows only the new configuration (the envelope records the
// old one, and the old key is still on the token); afterwards the old key
// can be retired: deleting it loses nothing.
func TestRewrapAcrossMechanismsAndKeys(t *testing.T) {
	ctx := context.Background()
	old, hc := hsmSeal(t, "a")
	kv, err := bolt.Open(filepath.Join(t.TempDir(), "vault.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	before := sealwrap.New(old)
	for i := range 10 {
		k := fmt.Sprintf("wallet/keys/u/k%d", i)
		env, err := before.Wrap(ctx, k, []byte{byte(i)})
		if err != nil {
			t.Fatal(err)
		}
		if err := kv.Put(ctx, k, env); err != nil {
			t.Fatal(err)
		}
	}
	next, err := seal.NewPKCS11(seal.Config{HSM: hc, Mechanism: seal.AESCBCPadHMAC, KeyLabel: "b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	if _, err := next.EnsureKey(ctx); err != nil {
		t.Fatal(err)
	}
	after := sealwrap.New(next)
	// Before the rewrap, the new Sealer reads old values.
	if got, err := after.Unwrap(ctx, "wallet/keys/u/k3", mustGet(t, kv, "wallet/keys/u/k3")); err != nil || !bytes.Equal(got, []byte{3}) {
		t.Fatalf("old value through the new configuration: %x, %v", got, err)
	}
	if n, err := after.Rewrap(ctx, kv, []string{"wallet/keys/"}); err != nil || n != 10 {
		t.Fatalf("Rewrap = %d, %v", n, err)
	}
	// Retire the old key.
	m, err := hsm.Open(hc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.DestroyKey(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	fresh, err := seal.NewPKCS11(seal.Config{HSM: hc, Mechanism: seal.AESCBCPadHMAC, KeyLabel: "b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	for i := range 10 {
		k := fmt.Sprintf("wallet/keys/u/k%d", i)
		env := mustGet(t, kv, k)
		if _, id, _ := sealwrap.Inspect(env); id != "pkcs11:aes_cbc_pad_hmac:b:b-hmac" {
			t.Fatalf("%s still under %q", k, id)
		}
		if got, err := sealwrap.New(fresh).Unwrap(ctx, k, env); err != nil || !bytes.Equal(got, []byte{byte(i)}) {
			t.Fatalf("%s after the old key was retired: %x, %v", k, got, err)
		}
	}
}

// TestForgedRSAOAEPEnvelopeRefused: with hsm_mechanism = rsa_oaep, a
// storage-only attacker who knows the public key writes a CSP envelope of
// its own (a wallet key or a signing key it knows) where a genuine one
// was. Unwrap fails with an integrity error naming the path.
func TestForgedRSAOAEPEnvelopeRefused(t *testing.T) {
	for _, tok := range sealtest.Tokens {
		t.Run(tok.Name, func(t *testing.T) {
			ctx := context.Background()
			cfg := tok.Config(t, seal.RSAOAEP)
			w, err := seal.NewPKCS11(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if _, err := w.EnsureKey(ctx); err != nil {
				t.Fatal(err)
			}
			m, err := hsm.Open(cfg.HSM, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			pub, err := m.RSAPublicKey(ctx, cfg.KeyLabel)
			if err != nil {
				t.Fatal(err)
			}
			s := sealwrap.New(w)
			const path = "wallet/keys/alice/main"
			genuine, err := s.Wrap(ctx, path, []byte("the real wallet key"))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := s.Unwrap(ctx, path, genuine); err != nil || string(got) != "the real wallet key" {
				t.Fatalf("genuine envelope: %q, %v", got, err)
			}
			for _, unsigned := range []bool{true, false} {
				f := &sealtest.Forger{Pub: pub, KeyLabel: cfg.KeyLabel, SignLabel: cfg.KeyLabel + "-sign", SHA1: cfg.OAEPHash == seal.OAEPSHA1, Unsigned: unsigned}
				forged, err := sealwrap.New(f).Wrap(ctx, path, []byte("a wallet key the attacker knows"))
				if err != nil {
					t.Fatal(err)
				}
				got, err := s.Unwrap(ctx, path, forged)
				if err == nil {
					t.Fatalf("%s: forged envelope accepted: %q", f.KeyID(), string(got))
				}
				if !errors.Is(err, sealwrap.ErrIntegrity) || !strings.Contains(err.Error(), path) {
					t.Fatalf("%s: %v; want ErrIntegrity naming the path", f.KeyID(), err)
				}
			}
		})
	}
}

// Describe names the key id, which names the mechanism and key(s)
// ("pkcs11:aes_gcm:<label>").
func TestDescribe(t *testing.T) {
	ctx := context.Background()
	s := sealwrap.New(software(t, 7, "soft:k1"))
	env, err := s.Wrap(ctx, "wallet/keys/a/b", []byte("key"))
	if err != nil {
		t.Fatal(err)
	}
	wrapped, mech, err := s.Describe(env)
	if err != nil || !wrapped || mech != "test:soft:k1" {
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
