package provenance

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/secret"
)

func testRecord() *Record {
	return &Record{
		Version: Version, Account: "alice/btc0", Chain: "bitcoin", Network: "mainnet", AddressType: "p2wpkh",
		KeyType: "secp256k1", Address: "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu", PublicKey: "0x0330d5",
		Origin: Derived, Wallet: &Wallet{Name: "w", Fingerprint: "73c5da0a", DerivationPath: "m/84'/0'/0'/0/0", Origin: Imported},
		Entropy:   Entropy{Mode: EntropyExternal, Health: "not_applicable", DrawnFor: DrawnForWallet},
		SealWrap:  SealWrap{Wrapped: true, Mechanism: "pkcs11:aes_gcm:k"},
		CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func TestSignVerify(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := Sign(priv, testRecord())
	if err != nil {
		t.Fatal(err)
	}
	r, err := Verify(pub, s)
	if err != nil {
		t.Fatal(err)
	}
	if r.Address != testRecord().Address || r.Wallet.DerivationPath != "m/84'/0'/0'/0/0" || !r.CreatedAt.Equal(testRecord().CreatedAt) {
		t.Fatalf("record = %+v", r)
	}
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	tampered := func(f func(*Signed)) *Signed {
		c := &Signed{Payload: bytes.Clone(s.Payload), Signature: bytes.Clone(s.Signature), KeyID: s.KeyID}
		f(c)
		return c
	}
	cases := map[string]struct {
		pub ed25519.PublicKey
		s   *Signed
	}{
		"payload edited": {pub, tampered(func(c *Signed) {
			c.Payload = bytes.Replace(c.Payload, []byte(`"derived"`), []byte(`"imported"`), 1)
		})},
		"signature flipped": {pub, tampered(func(c *Signed) { c.Signature[0] ^= 1 })},
		"signature short":   {pub, tampered(func(c *Signed) { c.Signature = c.Signature[:10] })},
		"other key":         {other, s},
		"other key id":      {pub, tampered(func(c *Signed) { c.KeyID = KeyID(other) })},
		"nil":               {pub, nil},
	}
	for name, c := range cases {
		if _, err := Verify(c.pub, c.s); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	// A signature over the bare payload (no context) is not accepted.
	bare := &Signed{Payload: s.Payload, Signature: ed25519.Sign(priv, s.Payload), KeyID: s.KeyID}
	if _, err := Verify(pub, bare); !errors.Is(err, ErrInvalid) {
		t.Fatalf("context-free signature verifies: %v", err)
	}
	// A validly signed payload with an unknown field is refused.
	odd := &Record{Version: 2}
	s2, _ := Sign(priv, odd)
	if _, err := Verify(pub, s2); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown version verifies: %v", err)
	}
}

func TestSigner(t *testing.T) {
	seed := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(seed)
	loads := 0
	s := NewSigner(func(context.Context) (secret.Bytes, error) {
		loads++
		return secret.Bytes(seed).Clone(), nil
	})
	ctx := context.Background()
	pub, id, err := s.PublicKey(ctx)
	if err != nil || id != KeyID(pub) {
		t.Fatal(err)
	}
	sig, err := s.Sign(ctx, testRecord())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(pub, sig); err != nil {
		t.Fatal(err)
	}
	s.Clear()
	if _, _, err := s.PublicKey(ctx); err != nil || loads != 2 {
		t.Fatalf("after Clear: loads = %d, %v", loads, err)
	}
	bad := NewSigner(func(context.Context) (secret.Bytes, error) { return secret.Bytes{1}, nil })
	if _, err := bad.Sign(ctx, testRecord()); err == nil {
		t.Fatal("short seed accepted")
	}
	failing := NewSigner(func(context.Context) (secret.Bytes, error) { return nil, errors.New("hsm down") })
	if _, err := failing.Sign(ctx, testRecord()); err == nil {
		t.Fatal("signed without a key")
	}
}
