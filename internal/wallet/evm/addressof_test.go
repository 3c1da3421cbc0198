package evm

import (
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/moonvault/moonvault/internal/fips"
)

// TestAddressOfMatchesGeth: AddressOf (btcec's point check) gives
// go-ethereum's address for both encodings of real keys, and accepts
// exactly the random encodings go-ethereum accepts (about half of the
// compressed ones are points; almost no uncompressed one is). go-ethereum's
// reference (crypto/ecdsa on a custom curve) is outside the FIPS boundary
// (docs/fips.md), so it runs with enforcement lifted.
func TestAddressOfMatchesGeth(t *testing.T) {
	fips.Outside(func() { testAddressOfMatchesGeth(t) })
}

func testAddressOfMatchesGeth(t *testing.T) {
	for range 200 {
		k, err := crypto.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		want := crypto.PubkeyToAddress(k.PublicKey)
		for _, pub := range [][]byte{crypto.FromECDSAPub(&k.PublicKey), crypto.CompressPubkey(&k.PublicKey)} {
			got, err := AddressOf(pub)
			if err != nil || got != want {
				t.Fatalf("AddressOf(%x) = %s %v, want %s", pub, got, err, want)
			}
		}
	}
	for range 2000 {
		for _, n := range []int{33, 65, 64, 32} {
			b := make([]byte, n)
			if _, err := rand.Read(b); err != nil {
				t.Fatal(err)
			}
			var gerr error
			switch n {
			case 65:
				b[0] = 4
				_, gerr = crypto.UnmarshalPubkey(b)
			case 33:
				b[0] = 2 + b[1]&1
				_, gerr = crypto.DecompressPubkey(b)
			default:
				gerr = errWrongLength
			}
			_, err := AddressOf(b)
			if (err == nil) != (gerr == nil) {
				t.Fatalf("%x: ours %v, geth %v", b, err, gerr)
			}
		}
	}
}

var errWrongLength = errors.New("wrong length")

func BenchmarkAddressOf(b *testing.B) {
	var k *ecdsa.PrivateKey
	var err error
	fips.Outside(func() { k, err = crypto.GenerateKey() })
	if err != nil {
		b.Fatal(err)
	}
	pub := crypto.FromECDSAPub(&k.PublicKey)
	for b.Loop() {
		if _, err := AddressOf(pub); err != nil {
			b.Fatal(err)
		}
	}
}
