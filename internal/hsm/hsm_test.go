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
	// Only what the seal needs: encrypt and decrypt; never wrap, unwrap or
	// sign (issue 13 item 7).
	want := hsm.KeyAttributes{Token: true, Private: true, Sensitive: true, Extractable: false, AlwaysSensitive: true,
		NeverExtractable: true, Encrypt: true, Decrypt: true, KeyType: pkcs11.CKK_AES, ValueLen: 32}
	if ka != want {
		t.Fatalf("attributes = %+v, want %+v", ka, want)
	}
	if _, err := m.EnsureKey(ctx, "hmac", hsm.KeyHMAC); err != nil {
		t.Fatal(err)
	}
	ka, err = m.KeyAttributes(ctx, "hmac")
	want = hsm.KeyAttributes{Token: true, Private: true, Sensitive: true, AlwaysSensitive: true, NeverExtractable: true,
		Sign: true, Verify: true, KeyType: pkcs11.CKK_GENERIC_SECRET, ValueLen: 32}
	if err != nil || ka != want {
		t.Fatalf("HMAC key attributes = %+v, %v; want %+v", ka, err, want)
	}
	if created, err := m.EnsureKey(ctx, "rsa", hsm.KeyRSA); err != nil || !created {
		t.Fatalf("EnsureKey RSA = %v, %v", created, err)
	}
	ka, err = m.PrivateKeyAttributes(ctx, "rsa")
	want = hsm.KeyAttributes{Token: true, Private: true, Sensitive: true, AlwaysSensitive: true, NeverExtractable: true,
		Decrypt: true, KeyType: pkcs11.CKK_RSA}
	if err != nil || ka != want {
		t.Fatalf("RSA private key attributes = %+v, %v; want %+v", ka, err, want)
	}
	if created, err := m.EnsureKey(ctx, "rsa", hsm.KeyRSA); err != nil || created {
		t.Fatalf("second EnsureKey RSA = %v, %v; want false, nil", created, err)
	}
	// The rsa_oaep signing key pair signs and nothing else.
	if created, err := m.EnsureKey(ctx, "rsa-sign", hsm.KeyRSASign); err != nil || !created {
		t.Fatalf("EnsureKey RSA signing = %v, %v", created, err)
	}
	ka, err = m.PrivateKeyAttributes(ctx, "rsa-sign")
	want = hsm.KeyAttributes{Token: true, Private: true, Sensitive: true, AlwaysSensitive: true, NeverExtractable: true,
		Sign: true, KeyType: pkcs11.CKK_RSA}
	if err != nil || ka != want {
		t.Fatalf("RSA signing key attributes = %+v, %v; want %+v", ka, err, want)
	}
	pub, err := m.RSAPublicKey(ctx, "rsa-sign")
	if err != nil || pub.N.BitLen() != 3072 || pub.E != 65537 {
		t.Fatalf("RSAPublicKey = %v, %v", pub, err)
	}
	if _, err := m.RSAPublicKey(ctx, "no-such-key"); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Fatalf("RSAPublicKey of a missing key: %v", err)
	}
}

// TestAdoptionChecks: a key found by its label is used only when it is
// sensitive, not extractable, and of the type and size the seal needs
// (issue 13 item 7); keys made by earlier versions, with CKA_WRAP set, are
// still adopted.
func TestAdoptionChecks(t *testing.T) {
	t.Parallel()
	m, _ := open(t)
	ctx := context.Background()
	for _, tc := range []struct {
		label                  string
		keyType                uint
		size                   int
		sensitive, extractable bool
		as                     hsm.KeyType
		refuse                 string // "" = adopted
	}{
		{"legacy-wrap-unwrap", pkcs11.CKK_AES, 32, true, false, hsm.KeyAES, ""},
		{"extractable", pkcs11.CKK_AES, 32, true, true, hsm.KeyAES, "CKA_EXTRACTABLE"},
		{"not-sensitive", pkcs11.CKK_AES, 32, false, false, hsm.KeyAES, "CKA_SENSITIVE"},
		{"aes-128", pkcs11.CKK_AES, 16, true, false, hsm.KeyAES, "AES key of 16 bytes"},
		{"aes-as-hmac", pkcs11.CKK_AES, 32, true, false, hsm.KeyHMAC, "want CKK_GENERIC_SECRET"},
		{"hmac-as-aes", pkcs11.CKK_GENERIC_SECRET, 32, true, false, hsm.KeyAES, "want CKK_AES"},
		{"short-hmac", pkcs11.CKK_GENERIC_SECRET, 16, true, false, hsm.KeyHMAC, "HMAC key of 16 bytes"},
	} {
		t.Run(tc.label, func(t *testing.T) {
			if err := m.CreateSecretKeyForTest(ctx, tc.label, tc.keyType, tc.size, tc.sensitive, tc.extractable); err != nil {
				t.Fatal(err)
			}
			created, err := m.EnsureKey(ctx, tc.label, tc.as)
			if tc.refuse == "" {
				if err != nil || created {
					t.Fatalf("EnsureKey = %v, %v; want the key adopted", created, err)
				}
				if _, err := m.EncryptGCM(ctx, tc.label, []byte("x"), nil); err != nil {
					t.Fatalf("adopted key does not encrypt: %v", err)
				}
				return
			}
			if !errors.Is(err, hsm.ErrKeyUnsafe) || !strings.Contains(err.Error(), tc.refuse) || created {
				t.Fatalf("EnsureKey = %v, %v; want ErrKeyUnsafe naming %q", created, err, tc.refuse)
			}
			// Using it is refused too, not only creating it.
			if tc.as == hsm.KeyAES {
				if _, err := m.EncryptGCM(ctx, tc.label, []byte("x"), nil); !errors.Is(err, hsm.ErrKeyUnsafe) {
					t.Fatalf("EncryptGCM with a refused key: %v", err)
				}
			}
		})
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
	if !errors.Is(err, hsm.ErrPINRejected) || !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("a refused PIN must match ErrPINRejected (callers stop retrying) and ErrUnavailable: %v", err)
	}
}

// TestPINClassification: the return codes that mean the token refused the
// PIN itself stop retries; an outage does not.
func TestPINClassification(t *testing.T) {
	for rv, rejected := range map[uint]bool{
		pkcs11.CKR_PIN_INCORRECT: true, pkcs11.CKR_PIN_LOCKED: true, pkcs11.CKR_PIN_EXPIRED: true,
		pkcs11.CKR_PIN_INVALID: true, pkcs11.CKR_PIN_LEN_RANGE: true,
		pkcs11.CKR_DEVICE_REMOVED: false, pkcs11.CKR_TOKEN_NOT_PRESENT: false, pkcs11.CKR_GENERAL_ERROR: false,
	} {
		err := fmt.Errorf("open: %w", &hsm.Error{Op: "login", RV: pkcs11.Error(rv)})
		if errors.Is(err, hsm.ErrPINRejected) != rejected {
			t.Errorf("%v: ErrPINRejected = %v, want %v", err, !rejected, rejected)
		}
	}
}

// TestPINMissing: an empty PIN is named as missing before C_Login, which
// would answer CKR_ARGUMENTS_BAD.
func TestPINMissing(t *testing.T) {
	t.Parallel()
	cfg := hsmtest.NewToken(t)
	cfg.PIN = ""
	_, err := hsm.Open(cfg, nil)
	if !errors.Is(err, hsm.ErrPINMissing) || strings.Contains(err.Error(), "CKR_ARGUMENTS_BAD") || !strings.Contains(err.Error(), cfg.TokenLabel) {
		t.Fatalf("err = %v, want ErrPINMissing naming the token", err)
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
	if b, err := m.GenerateRandom(ctx, 8); !errors.Is(err, context.Canceled) || b != nil {
		t.Fatalf("cancelled context: %x, %v; want context.Canceled and no bytes", b, err)
	}
}

// blockingAPI holds GenerateRandom until release is closed.
type blockingAPI struct {
	hsm.API
	entered chan struct{}
	release chan struct{}
}

func (b *blockingAPI) GenerateRandom(s pkcs11.SessionHandle, n int) ([]byte, error) {
	b.entered <- struct{}{}
	<-b.release
	return b.API.GenerateRandom(s, n)
}

// TestContextWhileWaitingForSession: with every session busy, a caller
// whose context ends gets its error instead of waiting.
func TestContextWhileWaitingForSession(t *testing.T) {
	t.Parallel()
	cfg := hsmtest.NewToken(t)
	cfg.PoolSize = 1
	blk := &blockingAPI{entered: make(chan struct{}, 1), release: make(chan struct{})}
	cfg.WrapAPI = func(a hsm.API) hsm.API { blk.API = a; return blk }
	m, err := hsm.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	done := make(chan error, 1)
	go func() {
		_, err := m.GenerateRandom(context.Background(), 8)
		done <- err
	}()
	<-blk.entered // the only session is now busy
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.GenerateRandom(ctx, 8); !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting for a session with a cancelled context: %v", err)
	}
	close(blk.release)
	if err := <-done; err != nil {
		t.Fatalf("the call holding the session: %v", err)
	}
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

// droppingAPI records the sessions opened through it, so that a test can
// close them in the real library behind the Module's back, as a token does
// when it drops sessions (a session timeout, a network HSM failing over):
// the library then answers CKR_SESSION_HANDLE_INVALID for them.
type droppingAPI struct {
	hsm.API
	mu   sync.Mutex
	open map[pkcs11.SessionHandle]bool
}

func (a *droppingAPI) OpenSession(slot, flags uint) (pkcs11.SessionHandle, error) {
	s, err := a.API.OpenSession(slot, flags)
	if err == nil {
		a.mu.Lock()
		a.open[s] = true
		a.mu.Unlock()
	}
	return s, err
}

func (a *droppingAPI) CloseSession(s pkcs11.SessionHandle) error {
	a.mu.Lock()
	delete(a.open, s)
	a.mu.Unlock()
	return a.API.CloseSession(s)
}

// dropAll closes every open session in the library and returns how many.
func (a *droppingAPI) dropAll(t *testing.T) int {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	n := len(a.open)
	for s := range a.open {
		if err := a.API.CloseSession(s); err != nil {
			t.Fatalf("drop session %d: %v", s, err)
		}
	}
	clear(a.open)
	return n
}

// TestDroppedSessionReplaced: a session the token dropped fails its next
// call and is then discarded, never put back in the pool; the calls after
// it work on a new session, logged in again. A Module that reused the
// session would fail every call from then on, and since the error is not
// one that reopens the Module (hsm.Gone), it would never recover (issue
// 21, mutation 7, at the session level).
func TestDroppedSessionReplaced(t *testing.T) {
	t.Parallel()
	cfg := hsmtest.NewToken(t)
	api := &droppingAPI{open: map[pkcs11.SessionHandle]bool{}}
	cfg.WrapAPI = func(a hsm.API) hsm.API { api.API = a; return api }
	m, err := hsm.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	if _, err := m.EnsureAESKey(ctx, cfg.KeyLabel); err != nil {
		t.Fatal(err)
	}
	ct, err := m.EncryptGCM(ctx, cfg.KeyLabel, []byte("v"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []struct {
		name string
		call func() error
	}{
		{"random", func() error { _, err := m.GenerateRandom(ctx, 8); return err }},
		{"encrypt", func() error { _, err := m.EncryptGCM(ctx, cfg.KeyLabel, []byte("v"), []byte("aad")); return err }},
		{"decrypt", func() error {
			pt, err := m.DecryptGCM(ctx, cfg.KeyLabel, ct, []byte("aad"))
			if err == nil && string(pt) != "v" {
				err = fmt.Errorf("decrypted %q", pt)
			}
			return err
		}},
	} {
		if err := op.call(); err != nil {
			t.Fatalf("%s before the sessions are dropped: %v", op.name, err)
		}
		dropped := api.dropAll(t)
		if dropped == 0 {
			t.Fatalf("%s: no open session to drop", op.name)
		}
		// Each dropped session in the pool fails at most one call.
		for i := 0; ; i++ {
			err := op.call()
			if err == nil {
				break
			}
			if !errors.Is(err, pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID)) || !errors.Is(err, hsm.ErrUnavailable) {
				t.Fatalf("%s on a dropped session: %v, want CKR_SESSION_HANDLE_INVALID", op.name, err)
			}
			if i >= dropped {
				t.Fatalf("%s: call %d after %d sessions were dropped still fails: a dropped session is reused: %v", op.name, i+1, dropped, err)
			}
		}
	}
}
