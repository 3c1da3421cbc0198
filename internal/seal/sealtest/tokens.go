package sealtest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/hsm/hsmtest"
	"github.com/moonvault/moonvault/internal/seal"
)

// Token is one PKCS#11 implementation of the contract tests.
type Token struct {
	Name string
	// New returns a fresh token (SoftHSM2) or fresh key labels on the
	// shared one (opencryptoki), cleaned up when the test ends.
	New func(testing.TB) hsm.Config
	// OAEPHash is the RSA-OAEP hash the token offers: SoftHSM2 2.6
	// supports CKM_RSA_PKCS_OAEP with SHA-1 only.
	OAEPHash string
}

// Tokens are SoftHSM2 and the opencryptoki software token (slot 3).
var Tokens = []Token{
	{Name: "softhsm2", New: hsmtest.NewToken, OAEPHash: seal.OAEPSHA1},
	{Name: "opencryptoki", New: func(t testing.TB) hsm.Config { return hsmtest.OpenCryptoki(t) }, OAEPHash: seal.OAEPSHA256},
}

var needs = map[seal.Mechanism][]uint{
	seal.AESGCM:        {pkcs11.CKM_AES_GCM},
	seal.AESCBCPadHMAC: {pkcs11.CKM_AES_CBC_PAD, pkcs11.CKM_SHA256_HMAC},
	seal.RSAOAEP:       {pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.CKM_SHA256_RSA_PKCS_PSS},
}

// Config returns a seal configuration for mech on a fresh token of tok.
func (tok Token) Config(t testing.TB, mech seal.Mechanism) seal.Config {
	hc := tok.New(t)
	c := seal.Config{HSM: hc, Mechanism: mech, KeyLabel: hc.KeyLabel}
	if mech == seal.RSAOAEP {
		c.OAEPHash = tok.OAEPHash
	}
	return c
}

// Offers reports whether tok offers what mech needs (C_GetMechanismList).
func (tok Token) Offers(t testing.TB, mech seal.Mechanism) bool {
	t.Helper()
	hc := tok.New(t)
	m, err := hsm.Open(hc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	mechs, err := m.Mechanisms(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range needs[mech] {
		if !slices.Contains(mechs, n) {
			return false
		}
	}
	return true
}

// Each runs fn in a subtest for every token and mechanism: SoftHSM2 with
// aes_gcm, aes_cbc_pad_hmac and rsa_oaep, and the opencryptoki soft token
// with every mechanism it offers. For a mechanism a token lacks (the soft
// token of opencryptoki 3.8 has no CKM_AES_GCM), the subtest checks
// instead that the seal refuses it at once (seal.ErrNoRetry), naming the
// missing mechanism and the ones the token offers.
func Each(t *testing.T, fn func(t *testing.T, cfg seal.Config)) {
	for _, tok := range Tokens {
		for _, mech := range seal.Mechanisms {
			t.Run(tok.Name+"/"+string(mech), func(t *testing.T) {
				cfg := tok.Config(t, mech)
				if tok.Offers(t, mech) {
					fn(t, cfg)
					return
				}
				if tok.Name == "softhsm2" {
					t.Fatalf("SoftHSM2 must offer %s", mech)
				}
				s, err := seal.NewPKCS11(cfg, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				_, err = s.EnsureKey(context.Background())
				if !errors.Is(err, seal.ErrNoRetry) || !strings.Contains(err.Error(), "does not offer") || !strings.Contains(err.Error(), "the token offers") {
					t.Fatalf("%s on a token without it: %v; want ErrNoRetry naming the mechanism", mech, err)
				}
				t.Logf("%s does not offer %s: %v", tok.Name, mech, err)
			})
		}
	}
}
