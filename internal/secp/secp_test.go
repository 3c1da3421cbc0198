package secp

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/txscript"

	"github.com/moonvault/moonvault/internal/vectors"
)

// TestBIP340Vectors signs BIP-340's test vectors that carry a secret key
// (the others only verify), and btcec's vector for its default RFC 6979
// nonce, which Sign without aux reproduces.
func TestBIP340Vectors(t *testing.T) {
	var f struct {
		Vectors []struct {
			SecretKey string `json:"secret_key"`
			PublicKey string `json:"public_key"`
			AuxRand   string `json:"aux_rand"`
			Message   string `json:"message"`
			Signature string `json:"signature"`
			Nonce     string `json:"nonce"`
		}
	}
	vectors.Read(t, "testdata/good_bip340_sign.json", &f)
	if len(f.Vectors) != 5 {
		t.Fatalf("%d vectors", len(f.Vectors))
	}
	for i, v := range f.Vectors {
		k, err := NewSchnorrKey(vectors.Hex(t, v.SecretKey))
		if err != nil {
			t.Fatalf("vector %d: %v", i, err)
		}
		if got := hex.EncodeToString(k.XOnly()); got != v.PublicKey {
			t.Errorf("vector %d: public key %s, want %s", i, got, v.PublicKey)
		}
		var aux *[32]byte
		if v.Nonce == "bip340" {
			aux = (*[32]byte)(vectors.Hex(t, v.AuxRand))
		}
		sig, err := k.Sign(vectors.Hex(t, v.Message), aux)
		if err != nil {
			t.Fatalf("vector %d: %v", i, err)
		}
		if got := hex.EncodeToString(sig); got != v.Signature {
			t.Errorf("vector %d: signature %s, want %s", i, got, v.Signature)
		}
		k.Zero()
	}
}

// TestAgreesWithBtcec holds every operation to btcec's variable-time one
// on random keys: the same public keys, Taproot tweaks and signatures
// (with and without auxiliary randomness), and the signatures verify.
func TestAgreesWithBtcec(t *testing.T) {
	for i := range 200 {
		raw := make([]byte, 32)
		hash := make([]byte, 32)
		var aux [32]byte
		_, _ = rand.Read(raw)
		_, _ = rand.Read(hash)
		_, _ = rand.Read(aux[:])
		if i == 0 {
			raw = append(make([]byte, 31), 1) // the scalar 1: the generator
		}
		priv, pub := btcec.PrivKeyFromBytes(raw)

		got, err := PublicKey(raw)
		if err != nil || !bytes.Equal(got, pub.SerializeCompressed()) {
			t.Fatalf("key %x: public key %x (%v), want %x", raw, got, err, pub.SerializeCompressed())
		}
		k, err := NewSchnorrKey(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(k.XOnly(), schnorr.SerializePubKey(pub)) {
			t.Fatalf("key %x: x-only key differs", raw)
		}
		for _, aux := range []*[32]byte{nil, &aux} {
			var opts []schnorr.SignOption
			if aux != nil {
				opts = append(opts, schnorr.CustomNonce(*aux))
			}
			want, err := schnorr.Sign(priv, hash, opts...)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := k.Sign(hash, aux)
			if err != nil || !bytes.Equal(sig, want.Serialize()) {
				t.Fatalf("key %x, aux %v: signature %x (%v), want %x", raw, aux != nil, sig, err, want.Serialize())
			}
		}

		root := []byte(nil)
		if i%2 == 1 {
			root = hash // a script tree root
		}
		tk, err := k.TweakTaproot(root)
		if err != nil {
			t.Fatal(err)
		}
		wantTweaked := txscript.TweakTaprootPrivKey(*priv, root)
		if !bytes.Equal(tk.d[:], evenY(wantTweaked)) {
			t.Fatalf("key %x: tweaked key differs", raw)
		}
		if !bytes.Equal(tk.XOnly(), schnorr.SerializePubKey(txscript.ComputeTaprootOutputKey(pub, root))) {
			t.Fatalf("key %x: tweaked key's point is not the output key", raw)
		}
		k.Zero()
		tk.Zero()
	}
}

// evenY is btcec's private key negated where its point has an odd Y, the
// form a SchnorrKey keeps.
func evenY(p *btcec.PrivateKey) []byte {
	s := p.Key
	if p.PubKey().SerializeCompressed()[0] == 3 {
		s.Negate()
	}
	b := s.Bytes()
	return b[:]
}

// TestInvalidKeys refuses what is no private key: zero, the group order
// and above, and a wrong length, with ErrInvalidKey and nothing else.
func TestInvalidKeys(t *testing.T) {
	n := "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
	for _, tc := range []struct{ name, hex string }{
		{"zero", "0000000000000000000000000000000000000000000000000000000000000000"},
		{"the order n", n},
		{"n+1", "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364142"},
		{"all ones", "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"},
		{"31 bytes", "01" + n[:60]},
		{"33 bytes", "00" + n[:62] + "00"},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := vectors.Hex(t, tc.hex)
			if _, err := PublicKey(raw); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("PublicKey: %v", err)
			}
			if _, err := NewSchnorrKey(raw); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("NewSchnorrKey: %v", err)
			}
		})
	}
	// n-1 is the largest valid key.
	nm1 := vectors.Hex(t, n[:62]+"40")
	if _, err := PublicKey(nm1); err != nil {
		t.Fatalf("n-1: %v", err)
	}
}

func TestSignRefusesOtherHashSizes(t *testing.T) {
	k, err := NewSchnorrKey(append(make([]byte, 31), 7))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Zero()
	for _, n := range []int{0, 31, 33, 64} {
		if _, err := k.Sign(make([]byte, n), nil); err == nil {
			t.Errorf("a %d-byte hash was signed", n)
		}
	}
}

func TestZeroWipes(t *testing.T) {
	k, err := NewSchnorrKey(append(make([]byte, 31), 9))
	if err != nil {
		t.Fatal(err)
	}
	k.Zero()
	if k.d != [32]byte{} {
		t.Fatal("Zero left the scalar")
	}
	(*SchnorrKey)(nil).Zero() // no panic
}

func BenchmarkPublicKey(b *testing.B) {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	for b.Loop() {
		if _, err := PublicKey(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSchnorrSign(b *testing.B) {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	k, err := NewSchnorrKey(raw)
	if err != nil {
		b.Fatal(err)
	}
	hash := make([]byte, 32)
	for b.Loop() {
		if _, err := k.Sign(hash, nil); err != nil {
			b.Fatal(err)
		}
	}
}
