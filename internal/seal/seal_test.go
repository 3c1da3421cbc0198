package seal_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/hsm/hsmtest"
	"github.com/moonvault/moonvault/internal/seal"
	"github.com/moonvault/moonvault/internal/seal/sealtest"
)

func newSeal(t testing.TB, cfg seal.Config) *seal.PKCS11 {
	t.Helper()
	s, err := seal.NewPKCS11(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestContract is the seal contract, on SoftHSM2 and opencryptoki with
// every mechanism each offers.
func TestContract(t *testing.T) {
	sealtest.Each(t, func(t *testing.T, cfg seal.Config) {
		ctx := context.Background()
		s := newSeal(t, cfg)
		if created, err := s.EnsureKey(ctx); err != nil || !created {
			t.Fatalf("EnsureKey = %v, %v", created, err)
		}
		if created, err := s.EnsureKey(ctx); err != nil || created {
			t.Fatalf("second EnsureKey = %v, %v; want false, nil", created, err)
		}
		if s.Type() != "pkcs11" || !strings.HasPrefix(s.KeyID(), "pkcs11:"+string(cfg.Mechanism)) || !strings.Contains(s.KeyID(), cfg.KeyLabel) {
			t.Fatalf("type %q key id %q", s.Type(), s.KeyID())
		}
		checkKeys(t, cfg)
		aad := []byte("moonvault root key v1")
		for _, n := range []int{0, 1, 32, 33, 4096} {
			pt := bytes.Repeat([]byte{0x5A}, n)
			ct, err := s.Encrypt(ctx, pt, aad)
			if err != nil {
				t.Fatalf("%d bytes: %v", n, err)
			}
			if n >= 16 && bytes.Contains(ct, pt) {
				t.Fatalf("%d bytes: plaintext visible in the ciphertext", n)
			}
			got, err := s.Decrypt(ctx, ct, aad)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("%d bytes: round trip = %x, %v", n, got, err)
			}
		}
		root := bytes.Repeat([]byte{0x42}, 32)
		ct, err := s.Encrypt(ctx, root, aad)
		if err != nil {
			t.Fatal(err)
		}
		ct2, _ := s.Encrypt(ctx, root, aad)
		if bytes.Equal(ct, ct2) {
			t.Fatal("two encryptions of one value are equal")
		}
		if _, err := s.Decrypt(ctx, ct, []byte("other aad")); !errors.Is(err, seal.ErrDecrypt) {
			t.Fatalf("wrong aad: %v, want ErrDecrypt", err)
		}
		// Any change fails closed: ErrDecrypt, or a key that is not on the
		// token when a label byte changed, never a plaintext.
		for i := range ct {
			bad := bytes.Clone(ct)
			bad[i] ^= 0x01
			pt, err := s.Decrypt(ctx, bad, aad)
			if err == nil {
				t.Fatalf("flipped byte %d: decrypted to %x", i, pt)
			}
			if !errors.Is(err, seal.ErrDecrypt) && !errors.Is(err, hsm.ErrKeyNotFound) {
				t.Fatalf("flipped byte %d: %v", i, err)
			}
		}
		for _, n := range []int{0, 1, 5, len(ct) - 1} {
			if _, err := s.Decrypt(ctx, ct[:n], aad); err == nil {
				t.Fatalf("truncated to %d bytes: accepted", n)
			}
		}
		// A second seal on the same token (another process, a restart)
		// opens it.
		if got, err := newSeal(t, cfg).Decrypt(ctx, ct, aad); err != nil || !bytes.Equal(got, root) {
			t.Fatalf("second seal: %x, %v", got, err)
		}
		if r, err := s.GenerateRandom(ctx, 32); err != nil || len(r) != 32 {
			t.Fatalf("GenerateRandom = %d bytes, %v", len(r), err)
		}
	})
}

// checkKeys reads back the key attributes: sensitive, never extractable,
// and only the usages the mechanism needs (no wrap or unwrap).
func checkKeys(t *testing.T, cfg seal.Config) {
	t.Helper()
	m, err := hsm.Open(cfg.HSM, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	var ka hsm.KeyAttributes
	switch cfg.Mechanism {
	case seal.RSAOAEP:
		sig, err := m.PrivateKeyAttributes(ctx, cfg.KeyLabel+"-sign")
		if err != nil || !sig.Token || !sig.Sensitive || sig.Extractable || !sig.NeverExtractable || !sig.Sign || sig.Decrypt || sig.Unwrap {
			t.Fatalf("RSA signing key %+v, %v", sig, err)
		}
		ka, err = m.PrivateKeyAttributes(ctx, cfg.KeyLabel)
		if err == nil && (ka.Sign || !ka.Decrypt) {
			t.Fatalf("RSA private key usages %+v", ka)
		}
	case seal.AESCBCPadHMAC:
		mac, err := m.KeyAttributes(ctx, cfg.KeyLabel+"-hmac")
		if err != nil || !mac.Sensitive || mac.Extractable || mac.Encrypt || mac.Decrypt || !mac.Sign || !mac.Verify || mac.Wrap || mac.Unwrap {
			t.Fatalf("HMAC key %+v, %v", mac, err)
		}
		fallthrough
	default:
		ka, err = m.KeyAttributes(ctx, cfg.KeyLabel)
		if err == nil && (!ka.Encrypt || !ka.Decrypt || ka.Sign || ka.Wrap) {
			t.Fatalf("AES key usages %+v", ka)
		}
	}
	if err != nil || !ka.Token || !ka.Sensitive || ka.Extractable || !ka.NeverExtractable || ka.Unwrap {
		t.Fatalf("key attributes %+v, %v", ka, err)
	}
}

// TestDecryptAcrossMechanisms: a seal configured for one mechanism opens
// what another mechanism (or another key label) made on the same token,
// which is what lets operator rewrap move a vault between them.
func TestDecryptAcrossMechanisms(t *testing.T) {
	hc := hsmtest.NewToken(t)
	ctx := context.Background()
	aad := []byte("aad")
	var cts [][]byte
	var seals []*seal.PKCS11
	for i, c := range []seal.Config{
		{Mechanism: seal.AESGCM, KeyLabel: "gcm"},
		{Mechanism: seal.AESCBCPadHMAC, KeyLabel: "cbc", HMACKeyLabel: "cbc-mac"},
		{Mechanism: seal.RSAOAEP, KeyLabel: "rsa", OAEPHash: seal.OAEPSHA1},
		{Mechanism: seal.AESGCM, KeyLabel: "gcm-2"},
	} {
		c.HSM = hc
		s := newSeal(t, c)
		if _, err := s.EnsureKey(ctx); err != nil {
			t.Fatal(err)
		}
		ct, err := s.Encrypt(ctx, []byte{byte(i)}, aad)
		if err != nil {
			t.Fatal(err)
		}
		seals, cts = append(seals, s), append(cts, ct)
	}
	for _, s := range seals {
		for i, ct := range cts {
			if pt, err := s.Decrypt(ctx, ct, aad); err != nil || !bytes.Equal(pt, []byte{byte(i)}) {
				t.Fatalf("%s opening a ciphertext of #%d: %x, %v", s.KeyID(), i, pt, err)
			}
		}
	}
}

// TestLegacyCiphertext: a root key wrapped before ciphertexts recorded
// their key (bare hsm.EncryptGCM output) still opens with the configured
// key label.
func TestLegacyCiphertext(t *testing.T) {
	hc := hsmtest.NewToken(t)
	ctx := context.Background()
	m, err := hsm.Open(hc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.EnsureAESKey(ctx, "moonvault-root"); err != nil {
		t.Fatal(err)
	}
	legacy, err := m.EncryptGCM(ctx, "moonvault-root", []byte("root"), []byte("moonvault root key v1"))
	if err != nil {
		t.Fatal(err)
	}
	s := newSeal(t, seal.Config{HSM: hc, KeyLabel: "moonvault-root"})
	if pt, err := s.Decrypt(ctx, legacy, []byte("moonvault root key v1")); err != nil || string(pt) != "root" {
		t.Fatalf("legacy ciphertext = %q, %v", pt, err)
	}
	other := newSeal(t, seal.Config{HSM: hc, KeyLabel: "another-key"})
	if _, err := other.Decrypt(ctx, legacy, []byte("moonvault root key v1")); err == nil || !strings.Contains(err.Error(), "operator rewrap") {
		t.Fatalf("legacy ciphertext under a changed key label: %v; want an error that says to rewrap first", err)
	}
}

// TestPINNotRetried: a refused PIN is tried once; every later call fails
// at once without logging in again (a real HSM locks after a few wrong
// PINs), naming the token and the setting to fix. A missing PIN is named
// as missing.
func TestPINNotRetried(t *testing.T) {
	hc := hsmtest.NewToken(t)
	hc.PIN = "wrong-pin-0000"
	f := hsmtest.NewFaults()
	hc.WrapAPI = f.Wrap
	s := newSeal(t, seal.Config{HSM: hc, KeyLabel: "k"})
	ctx := context.Background()
	_, err := s.Encrypt(ctx, []byte("x"), nil)
	if !errors.Is(err, seal.ErrNoRetry) || !errors.Is(err, hsm.ErrPINRejected) || !strings.Contains(err.Error(), "CKR_PIN_INCORRECT") ||
		!strings.Contains(err.Error(), "hsm_pin") || !strings.Contains(err.Error(), hc.TokenLabel) || strings.Contains(err.Error(), "wrong-pin-0000") {
		t.Fatalf("wrong PIN: %v", err)
	}
	if errkind.CodeOf(err) != "hsm_unavailable" {
		t.Fatalf("code %q", errkind.CodeOf(err))
	}
	logins := f.Calls("Login")
	for range 3 {
		if _, err := s.GenerateRandom(ctx, 8); !errors.Is(err, seal.ErrNoRetry) {
			t.Fatalf("after a refused PIN: %v", err)
		}
		if _, err := s.Decrypt(ctx, bytes.Repeat([]byte{1}, 40), nil); !errors.Is(err, seal.ErrNoRetry) {
			t.Fatalf("after a refused PIN: %v", err)
		}
	}
	if f.Calls("Login") != logins || f.Opens() != 1 {
		t.Fatalf("logged in again after a refused PIN: %d logins (was %d), %d opens", f.Calls("Login"), logins, f.Opens())
	}

	// CKR_PIN_LOCKED from the token: stopped at once too.
	hc2 := hsmtest.NewToken(t)
	f2 := hsmtest.NewFaults()
	f2.FailNext("Login", 0xA4) // CKR_PIN_LOCKED
	hc2.WrapAPI = f2.Wrap
	s2 := newSeal(t, seal.Config{HSM: hc2, KeyLabel: "k"})
	if _, err := s2.GenerateRandom(ctx, 8); !errors.Is(err, seal.ErrNoRetry) || !strings.Contains(err.Error(), "CKR_PIN_LOCKED") {
		t.Fatalf("locked PIN: %v", err)
	}
	if _, err := s2.GenerateRandom(ctx, 8); !errors.Is(err, seal.ErrNoRetry) || f2.Opens() != 1 {
		t.Fatalf("after a locked PIN: %v, %d opens", err, f2.Opens())
	}

	hc4 := hsmtest.NewToken(t)
	hc4.Lib = "/nonexistent/libpkcs11.so"
	s4 := newSeal(t, seal.Config{HSM: hc4, KeyLabel: "k"})
	if _, err := s4.GenerateRandom(ctx, 8); !errors.Is(err, seal.ErrNoRetry) || !errors.Is(err, hsm.ErrLibrary) || !strings.Contains(err.Error(), "hsm_lib") {
		t.Fatalf("missing library: %v", err)
	}

	hc3 := hsmtest.NewToken(t)
	hc3.PIN = ""
	s3 := newSeal(t, seal.Config{HSM: hc3, KeyLabel: "k"})
	if _, err := s3.EnsureKey(ctx); !errors.Is(err, seal.ErrNoRetry) || !errors.Is(err, hsm.ErrPINMissing) ||
		!strings.Contains(err.Error(), "no HSM PIN is configured") || strings.Contains(err.Error(), "CKR_ARGUMENTS_BAD") {
		t.Fatalf("missing PIN: %v", err)
	}
}

// TestReconnect: a token that disappears mid-operation fails that call
// (hsm_unavailable, retry later); the seal opens the token again on a
// later call once it is back, for the seal (encrypt, decrypt) and the RNG.
func TestReconnect(t *testing.T) {
	hc := hsmtest.NewToken(t)
	f := hsmtest.NewFaults()
	hc.WrapAPI = f.Wrap
	s := newSeal(t, seal.Config{HSM: hc, KeyLabel: "k"})
	ctx := context.Background()
	if _, err := s.EnsureKey(ctx); err != nil {
		t.Fatal(err)
	}
	ct, err := s.Encrypt(ctx, []byte("v"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []struct {
		name, at string
		call     func() error
	}{
		{"encrypt", "Encrypt", func() error { _, err := s.Encrypt(ctx, []byte("v"), nil); return err }},
		{"decrypt", "Decrypt", func() error { _, err := s.Decrypt(ctx, ct, nil); return err }},
		{"random", "GenerateRandom", func() error { _, err := s.GenerateRandom(ctx, 8); return err }},
	} {
		opens := f.Opens()
		f.UnplugAt(op.at)
		err := op.call()
		if err == nil || !errors.Is(err, hsm.ErrUnavailable) || errkind.CodeOf(err) != "hsm_unavailable" || errors.Is(err, seal.ErrNoRetry) {
			t.Fatalf("%s while the token goes away: %v", op.name, err)
		}
		// Still away: fails again, as an outage.
		if err := op.call(); err == nil || !strings.Contains(err.Error(), "waiting for the HSM") {
			t.Fatalf("%s while away: %v", op.name, err)
		}
		f.Plug()
		if err := op.call(); err != nil {
			t.Fatalf("%s after the token is back: %v", op.name, err)
		}
		if f.Opens() <= opens {
			t.Fatalf("%s: the token was not opened again", op.name)
		}
	}
}

func TestConfig(t *testing.T) {
	hc := hsmtest.NewToken(t)
	for _, tc := range []struct {
		cfg  seal.Config
		want string
	}{
		{seal.Config{HSM: hc}, "key label is empty"},
		{seal.Config{HSM: hc, KeyLabel: "k", Mechanism: "aes_ctr"}, "unknown mechanism"},
		{seal.Config{HSM: hc, KeyLabel: "k", Mechanism: seal.AESCBCPadHMAC, HMACKeyLabel: "k"}, "must differ"},
		{seal.Config{HSM: hc, KeyLabel: "k", Mechanism: seal.RSAOAEP, OAEPHash: "md5"}, "use sha256 or sha1"},
		{seal.Config{HSM: hc, KeyLabel: "k", Mechanism: seal.RSAOAEP, SigningKeyLabel: "k"}, "must differ"},
		{seal.Config{HSM: hc, KeyLabel: strings.Repeat("k", 200)}, "limited to"},
	} {
		if _, err := seal.NewPKCS11(tc.cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg.Mechanism, err, tc.want)
		}
	}
	s := newSeal(t, seal.Config{HSM: hc, KeyLabel: "k", Mechanism: seal.AESCBCPadHMAC})
	if s.KeyID() != "pkcs11:aes_cbc_pad_hmac:k:k-hmac" {
		t.Fatalf("key id %q", s.KeyID())
	}
	for _, tc := range []struct {
		cfg  seal.Config
		want string
	}{
		{seal.Config{HSM: hc, KeyLabel: "k", Mechanism: seal.RSAOAEP}, "pkcs11:rsa_oaep_sha256_pss:k:k-sign"},
		{seal.Config{HSM: hc, KeyLabel: "k", Mechanism: seal.RSAOAEP, OAEPHash: seal.OAEPSHA1, SigningKeyLabel: "s"}, "pkcs11:rsa_oaep_sha1_pss:k:s"},
	} {
		if id := newSeal(t, tc.cfg).KeyID(); id != tc.want {
			t.Fatalf("key id %q, want %q", id, tc.want)
		}
	}
}

// TestRSAOAEPForgeryRefused: a storage-only attacker (threat model T4)
// reads the public key of the rsa_oaep key pair and makes ciphertexts of
// plaintexts it chose: a root key of its own, or a CSP it knows. The seal
// refuses them with an integrity error, before decrypting anything,
// whether they use the unsigned layout rsa_oaep had or the signed one
// with a signature the attacker made up; genuine ciphertexts still open.
func TestRSAOAEPForgeryRefused(t *testing.T) {
	for _, tok := range sealtest.Tokens {
		t.Run(tok.Name, func(t *testing.T) {
			ctx := context.Background()
			cfg := tok.Config(t, seal.RSAOAEP)
			s := newSeal(t, cfg)
			if _, err := s.EnsureKey(ctx); err != nil {
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
			aad := []byte("moonvault root key v1")
			attackerRoot := bytes.Repeat([]byte{0xA7}, 32)
			for _, unsigned := range []bool{true, false} {
				f := &sealtest.Forger{Pub: pub, KeyLabel: cfg.KeyLabel, SignLabel: cfg.KeyLabel + "-sign", SHA1: cfg.OAEPHash == seal.OAEPSHA1, Unsigned: unsigned}
				forged, err := f.Encrypt(ctx, attackerRoot, aad)
				if err != nil {
					t.Fatal(err)
				}
				pt, err := s.Decrypt(ctx, forged, aad)
				if err == nil {
					t.Fatalf("%s: a ciphertext made with the public key alone opened, to %x", f.KeyID(), pt)
				}
				if !errors.Is(err, seal.ErrDecrypt) || errkind.CodeOf(err) != "integrity_error" {
					t.Fatalf("%s: %v; want an integrity error", f.KeyID(), err)
				}
			}
			ct, err := s.Encrypt(ctx, attackerRoot, aad)
			if err != nil {
				t.Fatal(err)
			}
			if pt, err := s.Decrypt(ctx, ct, aad); err != nil || !bytes.Equal(pt, attackerRoot) {
				t.Fatalf("genuine ciphertext: %x, %v", pt, err)
			}
		})
	}
}

// countingRand counts the bytes drawn from it, or fails every draw.
type countingRand struct {
	n    int
	fail bool
}

var errNoEntropy = errors.New("entropy source failed its health test")

func (r *countingRand) Read(p []byte) (int, error) {
	if r.fail {
		return 0, errNoEntropy
	}
	r.n += len(p)
	return len(p), nil
}

// TestRSAOAEPDataKeyFromTheVaultsEntropy: rsa_oaep's per-value data key is
// a CSP, so it is drawn from the source SetRand installs (the vault's
// OS+HSM mixer), and a failing source fails the encryption closed: no
// ciphertext under a key the source did not vouch for.
func TestRSAOAEPDataKeyFromTheVaultsEntropy(t *testing.T) {
	for _, tok := range sealtest.Tokens {
		t.Run(tok.Name, func(t *testing.T) {
			ctx := context.Background()
			s := newSeal(t, tok.Config(t, seal.RSAOAEP))
			if _, err := s.EnsureKey(ctx); err != nil {
				t.Fatal(err)
			}
			src := &countingRand{}
			s.SetRand(src)
			aad := []byte("wallet/keys/alice/main")
			ct, err := s.Encrypt(ctx, []byte("a csp"), aad)
			if err != nil {
				t.Fatal(err)
			}
			if src.n != 32 {
				t.Fatalf("the data key drew %d bytes from the vault's source, want 32", src.n)
			}
			if pt, err := s.Decrypt(ctx, ct, aad); err != nil || string(pt) != "a csp" {
				t.Fatalf("round trip: %q, %v", pt, err)
			}
			src.fail = true
			if ct, err := s.Encrypt(ctx, []byte("a csp"), aad); !errors.Is(err, errNoEntropy) || ct != nil {
				t.Fatalf("Encrypt with a failing entropy source = %x, %v; want nothing and the source's error", ct, err)
			}
		})
	}
}
