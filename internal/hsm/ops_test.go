package hsm_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/hsm/hsmtest"
)

// tokens are the two PKCS#11 implementations of the suite.
var tokens = []struct {
	name string
	cfg  func(testing.TB) hsm.Config
}{
	{"softhsm2", hsmtest.NewToken},
	{"opencryptoki", func(t testing.TB) hsm.Config { return hsmtest.OpenCryptoki(t, "rsa", "hmac", "rsa-sign") }},
}

var mechNames = map[uint]string{
	pkcs11.CKM_AES_GCM: "CKM_AES_GCM", pkcs11.CKM_AES_CBC_PAD: "CKM_AES_CBC_PAD",
	pkcs11.CKM_SHA256_HMAC: "CKM_SHA256_HMAC", pkcs11.CKM_RSA_PKCS_OAEP: "CKM_RSA_PKCS_OAEP",
	pkcs11.CKM_AES_KEY_GEN: "CKM_AES_KEY_GEN", pkcs11.CKM_GENERIC_SECRET_KEY_GEN: "CKM_GENERIC_SECRET_KEY_GEN",
	pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN: "CKM_RSA_PKCS_KEY_PAIR_GEN", pkcs11.CKM_SHA256_RSA_PKCS_PSS: "CKM_SHA256_RSA_PKCS_PSS",
}

// TestMechanismOps runs every operation the seal uses on both tokens,
// as far as the token offers the mechanism (C_GetMechanismList), and
// logs what it offers.
func TestMechanismOps(t *testing.T) {
	for _, tok := range tokens {
		t.Run(tok.name, func(t *testing.T) {
			cfg := tok.cfg(t)
			m, err := hsm.Open(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			ctx := context.Background()
			mechs, err := m.Mechanisms(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var offered []string
			for _, mc := range []uint{pkcs11.CKM_AES_GCM, pkcs11.CKM_AES_CBC_PAD, pkcs11.CKM_SHA256_HMAC, pkcs11.CKM_RSA_PKCS_OAEP,
				pkcs11.CKM_AES_KEY_GEN, pkcs11.CKM_GENERIC_SECRET_KEY_GEN, pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKM_SHA256_RSA_PKCS_PSS} {
				if slices.Contains(mechs, mc) {
					offered = append(offered, mechNames[mc])
				}
			}
			t.Logf("%s (slot %d) offers %v", tok.name, m.Slot(), offered)
			has := func(ms ...uint) bool {
				for _, mc := range ms {
					if !slices.Contains(mechs, mc) {
						return false
					}
				}
				return true
			}
			ran := 0
			if has(pkcs11.CKM_AES_GCM) {
				ran++
				t.Run("gcm", func(t *testing.T) { testGCM(t, m, cfg.KeyLabel) })
			}
			if has(pkcs11.CKM_AES_CBC_PAD, pkcs11.CKM_SHA256_HMAC) {
				ran++
				t.Run("cbc-hmac", func(t *testing.T) { testCBCHMAC(t, m, cfg.KeyLabel, "hmac") })
			}
			if has(pkcs11.CKM_RSA_PKCS_OAEP) {
				ran++
				t.Run("oaep", func(t *testing.T) { testOAEP(t, m, "rsa", tok.name == "softhsm2") })
			}
			if has(pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.CKM_SHA256_RSA_PKCS_PSS) {
				t.Run("pss", func(t *testing.T) { testPSS(t, m, "rsa-sign", "rsa") })
			} else if tok.name == "softhsm2" {
				t.Fatal("SoftHSM2 must offer CKM_SHA256_RSA_PKCS_PSS")
			}
			if ran == 0 {
				t.Fatalf("%s offers none of the seal's mechanisms", tok.name)
			}
			r, err := m.GenerateRandom(ctx, 32)
			if err != nil || len(r) != 32 {
				t.Fatalf("C_GenerateRandom: %d bytes, %v", len(r), err)
			}
		})
	}
}

func testGCM(t *testing.T, m *hsm.Module, label string) {
	ctx := context.Background()
	if _, err := m.EnsureKey(ctx, label, hsm.KeyAES); err != nil {
		t.Fatal(err)
	}
	ct, err := m.EncryptGCM(ctx, label, []byte("gcm"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := m.DecryptGCM(ctx, label, ct, []byte("aad")); err != nil || string(pt) != "gcm" {
		t.Fatalf("round trip = %q, %v", pt, err)
	}
}

func testCBCHMAC(t *testing.T, m *hsm.Module, aesLabel, macLabel string) {
	ctx := context.Background()
	if _, err := m.EnsureKey(ctx, aesLabel, hsm.KeyAES); err != nil {
		t.Fatal(err)
	}
	if _, err := m.EnsureKey(ctx, macLabel, hsm.KeyHMAC); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 15, 16, 17, 32, 1000} {
		pt := bytes.Repeat([]byte{byte(n)}, n)
		ivct, err := m.EncryptCBC(ctx, aesLabel, pt)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if len(ivct) != hsm.CBCIVLen+(n/16+1)*16 {
			t.Fatalf("%d bytes: ciphertext of %d bytes", n, len(ivct))
		}
		got, err := m.DecryptCBC(ctx, aesLabel, ivct)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("%d bytes: round trip = %x, %v", n, got, err)
		}
	}
	a, _ := m.EncryptCBC(ctx, aesLabel, []byte("same"))
	b, _ := m.EncryptCBC(ctx, aesLabel, []byte("same"))
	if bytes.Equal(a[:hsm.CBCIVLen], b[:hsm.CBCIVLen]) {
		t.Fatal("two encryptions used the same IV")
	}
	mac, err := m.SignHMAC(ctx, macLabel, []byte("data"))
	if err != nil || len(mac) != hsm.HMACLen {
		t.Fatalf("HMAC = %x, %v", mac, err)
	}
	if err := m.VerifyHMAC(ctx, macLabel, []byte("data"), mac); err != nil {
		t.Fatalf("verify: %v", err)
	}
	for _, tc := range []struct {
		data, mac []byte
	}{
		{[]byte("datb"), mac},
		{[]byte("data"), append(bytes.Clone(mac[:31]), mac[31]^1)},
		{[]byte("data"), mac[:16]},
	} {
		if err := m.VerifyHMAC(ctx, macLabel, tc.data, tc.mac); !errors.Is(err, hsm.ErrDecrypt) {
			t.Fatalf("verify %q/%x: %v, want ErrDecrypt", tc.data, tc.mac, err)
		}
	}
	// The keys do only their job.
	if _, err := m.EncryptCBC(ctx, macLabel, []byte("x")); err == nil {
		t.Fatal("the HMAC key encrypts")
	}
}

func testOAEP(t *testing.T, m *hsm.Module, label string, softhsm bool) {
	ctx := context.Background()
	if _, err := m.EnsureKey(ctx, label, hsm.KeyRSA); err != nil {
		t.Fatal(err)
	}
	hashes := map[string]hsm.OAEPHash{"sha256": hsm.OAEPSHA256, "sha1": hsm.OAEPSHA1}
	worked := 0
	for name, h := range hashes {
		dek := bytes.Repeat([]byte{7}, 32)
		ct, err := m.EncryptOAEP(ctx, label, h, dek)
		if err != nil {
			// SoftHSM2 2.6 supports OAEP with SHA-1 only.
			if softhsm && name == "sha256" && errors.Is(err, pkcs11.Error(pkcs11.CKR_ARGUMENTS_BAD)) {
				t.Logf("OAEP-%s not offered: %v", name, err)
				continue
			}
			t.Fatalf("OAEP-%s: %v", name, err)
		}
		worked++
		if len(ct) != 3072/8 {
			t.Fatalf("OAEP-%s ciphertext of %d bytes", name, len(ct))
		}
		pt, err := m.DecryptOAEP(ctx, label, h, ct)
		if err != nil || !bytes.Equal(pt, dek) {
			t.Fatalf("OAEP-%s round trip = %x, %v", name, pt, err)
		}
		bad := bytes.Clone(ct)
		bad[10] ^= 1
		if _, err := m.DecryptOAEP(ctx, label, h, bad); !errors.Is(err, hsm.ErrDecrypt) {
			t.Fatalf("OAEP-%s tampered: %v, want ErrDecrypt", name, err)
		}
	}
	if worked == 0 {
		t.Fatal("no OAEP hash works")
	}
}

// TestOpenCryptokiBySlot: opencryptoki's soft token has no label; it is
// found by slot alone, and a label given with the slot must match.
func TestOpenCryptokiBySlot(t *testing.T) {
	cfg := hsmtest.OpenCryptoki(t)
	if cfg.TokenLabel != "" || cfg.Slot == nil {
		t.Fatalf("config %+v", cfg)
	}
	m, err := hsm.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Slot() != *cfg.Slot {
		t.Fatalf("slot %d, want %d", m.Slot(), *cfg.Slot)
	}
	cfg.TokenLabel = "not-this-one"
	if _, err := hsm.Open(cfg, nil); !errors.Is(err, hsm.ErrTokenNotFound) {
		t.Fatalf("label mismatch: %v", err)
	}
}

// testPSS: the rsa_oaep seal's signing key pair signs and verifies with
// CKM_SHA256_RSA_PKCS_PSS on the token; altered data, an altered or
// made-up signature fail with ErrDecrypt; the signing key only signs and
// the OAEP key pair only encrypts.
func testPSS(t *testing.T, m *hsm.Module, label, oaepLabel string) {
	ctx := context.Background()
	if _, err := m.EnsureKey(ctx, label, hsm.KeyRSASign); err != nil {
		t.Fatal(err)
	}
	if _, err := m.EnsureKey(ctx, oaepLabel, hsm.KeyRSA); err != nil {
		t.Fatal(err)
	}
	ka, err := m.PrivateKeyAttributes(ctx, label)
	if err != nil || !ka.Token || !ka.Sensitive || ka.Extractable || !ka.Sign || ka.Decrypt || ka.Unwrap {
		t.Fatalf("signing key attributes %+v, %v", ka, err)
	}
	data := bytes.Repeat([]byte("signed data "), 500)
	sig, err := m.SignPSS(ctx, label, data)
	if err != nil || len(sig) != 3072/8 {
		t.Fatalf("SignPSS = %d bytes, %v", len(sig), err)
	}
	if err := m.VerifyPSS(ctx, label, data, sig); err != nil {
		t.Fatalf("VerifyPSS: %v", err)
	}
	sig2, _ := m.SignPSS(ctx, label, data)
	if bytes.Equal(sig, sig2) {
		t.Fatal("two PSS signatures are equal: no salt")
	}
	madeUp := make([]byte, len(sig))
	for i := range madeUp {
		madeUp[i] = byte(i*7 + 1)
	}
	for name, tc := range map[string]struct{ data, sig []byte }{
		"altered data":      {append(bytes.Clone(data[:len(data)-1]), 'X'), sig},
		"altered signature": {data, append(bytes.Clone(sig[:len(sig)-1]), sig[len(sig)-1]^1)},
		"made-up signature": {data, madeUp},
		"short signature":   {data, sig[:len(sig)-1]},
		"empty signature":   {data, nil},
	} {
		if err := m.VerifyPSS(ctx, label, tc.data, tc.sig); !errors.Is(err, hsm.ErrDecrypt) {
			t.Errorf("%s: %v, want ErrDecrypt", name, err)
		}
	}
	if _, err := m.SignPSS(ctx, oaepLabel, data); err == nil {
		t.Error("the OAEP key pair signs")
	}
	if _, err := m.EncryptOAEP(ctx, label, hsm.OAEPSHA1, []byte("dek")); err == nil {
		t.Error("the signing key pair encrypts")
	}
}
