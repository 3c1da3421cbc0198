package hsm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/hsm/hsmtest"
	"github.com/moonvault/moonvault/internal/secret"
)

func open(t testing.TB) (*hsm.Module, hsm.Config) {
	t.Helper()
	cfg := hsmtest.NewToken(t)
	m, err := hsm.Open(cfg, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m, cfg
}

func TestKeyAttributes(t *testing.T) {
	t.Parallel()
	m, cfg := open(t)
	ctx := context.Background()
	if ok, err := m.HasKey(ctx, cfg.KeyLabel); err != nil || ok {
		t.Fatalf("HasKey before create = %v, %v", ok, err)
	}
	if _, err := m.KeyAttributes(ctx, cfg.KeyLabel); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Fatalf("KeyAttributes of missing key: %v, want ErrKeyNotFound", err)
	}
	created, err := m.EnsureAESKey(ctx, cfg.KeyLabel)
	if err != nil || !created {
		t.Fatalf("EnsureAESKey = %v, %v", created, err)
	}
	if created, err := m.EnsureAESKey(ctx, cfg.KeyLabel); err != nil || created {
		t.Fatalf("second EnsureAESKey = %v, %v; want false, nil", created, err)
	}
	ka, err := m.KeyAttributes(ctx, cfg.KeyLabel)
	if err != nil {
		t.Fatal(err)
	}
	want := hsm.KeyAttributes{Token: true, Private: true, Sensitive: true, Extractable: false, AlwaysSensitive: true, NeverExtractable: true, ValueLen: 32}
	if ka != want {
		t.Fatalf("attributes = %+v, want %+v", ka, want)
	}
}

func TestKeyPersistsAcrossOpen(t *testing.T) {
	t.Parallel()
	cfg := hsmtest.NewToken(t)
	ctx := context.Background()
	m1, err := hsm.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m1.EnsureAESKey(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	ct, err := m1.EncryptGCM(ctx, "k", []byte("persist"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m1.Close(); !errors.Is(err, hsm.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := m1.GenerateRandom(ctx, 4); !errors.Is(err, hsm.ErrClosed) {
		t.Fatalf("use after Close: %v", err)
	}
	m2, err := hsm.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	pt, err := m2.DecryptGCM(ctx, "k", ct, nil)
	if err != nil || string(pt) != "persist" {
		t.Fatalf("decrypt after reopen = %q, %v", pt, err)
	}
}

func TestGCMRoundTripAndTamper(t *testing.T) {
	t.Parallel()
	m, cfg := open(t)
	ctx := context.Background()
	if _, err := m.EncryptGCM(ctx, cfg.KeyLabel, []byte("x"), nil); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Fatalf("encrypt with missing key: %v", err)
	}
	if _, err := m.EnsureAESKey(ctx, cfg.KeyLabel); err != nil {
		t.Fatal(err)
	}
	pt := []byte("moonvault root key material 32b!")
	aad := []byte("moonvault root key")
	ct, err := m.EncryptGCM(ctx, cfg.KeyLabel, pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	if len(ct) != len(pt)+hsm.GCMOverhead || ct[0] != 1 {
		t.Fatalf("ciphertext len %d version %d", len(ct), ct[0])
	}
	ct2, _ := m.EncryptGCM(ctx, cfg.KeyLabel, pt, aad)
	if bytes.Equal(ct[1:13], ct2[1:13]) {
		t.Fatal("two encryptions reused the IV")
	}
	got, err := m.DecryptGCM(ctx, cfg.KeyLabel, ct, aad)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("round trip = %q, %v", got, err)
	}
	for i := range ct {
		bad := bytes.Clone(ct)
		bad[i] ^= 0x01
		if _, err := m.DecryptGCM(ctx, cfg.KeyLabel, bad, aad); !errors.Is(err, hsm.ErrDecrypt) {
			t.Fatalf("flip byte %d: err = %v, want ErrDecrypt", i, err)
		}
	}
	if _, err := m.DecryptGCM(ctx, cfg.KeyLabel, ct, []byte("other aad")); !errors.Is(err, hsm.ErrDecrypt) {
		t.Fatalf("wrong aad: %v", err)
	}
	if _, err := m.DecryptGCM(ctx, cfg.KeyLabel, ct[:10], aad); !errors.Is(err, hsm.ErrDecrypt) {
		t.Fatalf("short: %v", err)
	}
	// The pool survives failed operations.
	if got, err := m.DecryptGCM(ctx, cfg.KeyLabel, ct, aad); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("after tamper = %q, %v", got, err)
	}
}

func TestWrongPIN(t *testing.T) {
	t.Parallel()
	cfg := hsmtest.NewToken(t)
	const bad = "wrong-pin-4711-secret"
	cfg.PIN = secret.String(bad)
	_, err := hsm.Open(cfg, nil)
	var he *hsm.Error
	if !errors.As(err, &he) || he.RV != pkcs11.CKR_PIN_INCORRECT {
		t.Fatalf("err = %v, want *hsm.Error CKR_PIN_INCORRECT", err)
	}
	if !strings.Contains(err.Error(), "pkcs11 login: CKR_PIN_INCORRECT") || strings.Contains(err.Error(), bad) {
		t.Fatalf("error text %q", err.Error())
	}
	if !errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)) {
		t.Fatal("errors.Is on the return code failed")
	}
}

// A second Open of a token the process is logged in to must still check
// the PIN, although C_Login answers CKR_USER_ALREADY_LOGGED_IN.
func TestWrongPINWhileLoggedIn(t *testing.T) {
	t.Parallel()
	_, cfg := open(t)
	cfg.PIN = "not-the-pin"
	if _, err := hsm.Open(cfg, nil); !errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)) {
		t.Fatalf("err = %v, want CKR_PIN_INCORRECT", err)
	}
}

func TestTokenNotFound(t *testing.T) {
	t.Parallel()
	cfg := hsmtest.NewToken(t)
	cfg.TokenLabel = "no-such-token"
	if _, err := hsm.Open(cfg, nil); !errors.Is(err, hsm.ErrTokenNotFound) {
		t.Fatalf("err = %v, want ErrTokenNotFound", err)
	}
	slot := uint(987654)
	cfg.Slot = &slot
	if _, err := hsm.Open(cfg, nil); !errors.Is(err, hsm.ErrTokenNotFound) {
		t.Fatalf("bad slot: err = %v, want ErrTokenNotFound", err)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []hsm.Config{{}, {Lib: "/nonexistent/lib.so", TokenLabel: "x"}, {Lib: "/x.so"}} {
		if _, err := hsm.Open(cfg, nil); err == nil {
			t.Fatalf("Open(%+v) succeeded", cfg)
		}
	}
}

func TestGenerateRandom(t *testing.T) {
	t.Parallel()
	m, _ := open(t)
	a, err := m.GenerateRandom(context.Background(), 64)
	if err != nil || len(a) != 64 {
		t.Fatalf("GenerateRandom = %d bytes, %v", len(a), err)
	}
	b, _ := m.GenerateRandom(context.Background(), 64)
	if bytes.Equal(a, b) {
		t.Fatal("two draws are equal")
	}
	if _, err := m.GenerateRandom(context.Background(), 0); err == nil {
		t.Fatal("n=0 accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// With sessions free the call may proceed; a cancelled context must at
	// least never hang or panic.
	_, _ = m.GenerateRandom(ctx, 8)
}

func TestConcurrentPool(t *testing.T) {
	t.Parallel()
	m, cfg := open(t)
	ctx := context.Background()
	if _, err := m.EnsureAESKey(ctx, cfg.KeyLabel); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				pt := []byte(fmt.Sprintf("g%d-i%d", g, i))
				ct, err := m.EncryptGCM(ctx, cfg.KeyLabel, pt, []byte("aad"))
				if err != nil {
					errs <- err
					return
				}
				got, err := m.DecryptGCM(ctx, cfg.KeyLabel, ct, []byte("aad"))
				if err != nil || !bytes.Equal(got, pt) {
					errs <- fmt.Errorf("round trip %q: %q, %v", pt, got, err)
					return
				}
				if _, err := m.GenerateRandom(ctx, 32); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestErrorMessage(t *testing.T) {
	e := &hsm.Error{Op: "login", RV: pkcs11.CKR_PIN_INCORRECT}
	if e.Error() != "pkcs11 login: CKR_PIN_INCORRECT" {
		t.Fatal(e.Error())
	}
	if got := (&hsm.Error{Op: "x", RV: 0x7ffffff1}).Error(); !strings.HasPrefix(got, "pkcs11 x: CKR_0x") {
		t.Fatal(got)
	}
}
