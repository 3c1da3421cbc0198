package hd

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/fips"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/vectors"
)

// TestBIP32Vectors runs BIP-32 test vectors 1-4 (3 and 4 test the
// retention of leading zeros that broke some implementations).
func TestBIP32Vectors(t *testing.T) {
	var f struct {
		Vectors []struct {
			Name   string
			Seed   string
			Chains []struct{ Path, Xpub, Xprv string }
		}
	}
	vectors.Read(t, "testdata/good_bip32_vectors.json", &f)
	if len(f.Vectors) != 4 {
		t.Fatalf("%d vectors", len(f.Vectors))
	}
	for _, v := range f.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			m, err := NewMaster(vectors.Hex(t, v.Seed))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Destroy()
			for _, c := range v.Chains {
				p, err := ParsePath(c.Path)
				if err != nil {
					t.Fatal(err)
				}
				k, err := m.derive(p)
				if err != nil {
					t.Fatal(err)
				}
				if xprv(k) != c.Xprv {
					t.Errorf("%s: xprv %s, want %s", c.Path, xprv(k), c.Xprv)
				}
				xpub, err := m.XPub(p, false)
				if err != nil || xpub != c.Xpub {
					t.Errorf("%s: xpub %s (%v), want %s", c.Path, xpub, err, c.Xpub)
				}
				// Secp256k1 returns the same key pair as the extended keys.
				key, err := m.Secp256k1(p)
				if err != nil {
					t.Fatal(err)
				}
				want, _ := hdkeychain.NewKeyFromString(c.Xprv)
				wantPriv, _ := want.ECPrivKey()
				wantPub, _ := want.ECPubKey()
				if !bytes.Equal(key.Private, wantPriv.Serialize()) || len(key.Private) != 32 {
					t.Errorf("%s: private key differs", c.Path)
				}
				if !bytes.Equal(key.Public, wantPub.SerializeCompressed()) {
					t.Errorf("%s: public key differs", c.Path)
				}
				if key.Path.String() != p.String() {
					t.Errorf("%s: key path %s", c.Path, key.Path)
				}
				key.Destroy()
			}
			// The master survives the derivations (intermediates are wiped,
			// never the master).
			k, _ := m.derive(Path{})
			if xprv(k) != v.Chains[0].Xprv {
				t.Fatal("the master key changed while deriving")
			}
		})
	}
}

// xprv serialises a derived node as BIP-32's xprv (in tests only: a
// String method would print a private key wherever a node is formatted).
func xprv(n *bip32Node) string {
	return n.extended(chaincfg.MainNetParams.HDPrivateKeyID[:], append([]byte(nil), n.key[:]...), true).String()
}

// TestAgreesWithHdkeychain holds the constant-time derivation to btcutil's
// hdkeychain (variable time, here only the oracle) on random seeds and
// paths that mix hardened and normal levels, for private keys, public
// keys and extended public keys.
func TestAgreesWithHdkeychain(t *testing.T) {
	for range 30 {
		seed := make(secret.Bytes, 16+int(randUint32()%49))
		_, _ = rand.Read(seed)
		m, err := NewMaster(seed)
		if err != nil {
			t.Fatal(err)
		}
		var want *hdkeychain.ExtendedKey
		fips.Outside(func() { want, err = hdkeychain.NewMaster(seed, &chaincfg.MainNetParams) })
		if err != nil {
			t.Fatal(err)
		}
		var p Path
		for range 1 + randUint32()%6 {
			i := randUint32() % (1 << 20)
			if randUint32()%2 == 0 {
				i = H(i)
			}
			p = append(p, i)
			if want, err = want.Derive(i); err != nil {
				t.Fatal(err)
			}
			key, err := m.Secp256k1(p)
			if err != nil {
				t.Fatal(err)
			}
			wantPriv, _ := want.ECPrivKey()
			wantPub, _ := want.ECPubKey()
			if !bytes.Equal(key.Private, wantPriv.Serialize()) || !bytes.Equal(key.Public, wantPub.SerializeCompressed()) {
				t.Fatalf("%s: key differs from hdkeychain's", p)
			}
			n, _ := m.derive(p)
			if xprv(n) != want.String() {
				t.Fatalf("%s: xprv differs from hdkeychain's", p)
			}
			n.destroy()
			xpub, err := m.XPub(p, false)
			wantXpub, _ := want.Neuter()
			if err != nil || xpub != wantXpub.String() {
				t.Fatalf("%s: xpub %s (%v), want %s", p, xpub, err, wantXpub)
			}
			key.Destroy()
		}
		m.Destroy()
	}
}

func randUint32() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

func TestFingerprint(t *testing.T) {
	// "abandon ×11 about", no passphrase: master fingerprint 73c5da0a
	// (the BIP-84/86 reference wallet).
	seed, err := Seed("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about", "")
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMaster(seed)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Destroy()
	if m.Fingerprint() != "73c5da0a" {
		t.Fatalf("fingerprint %s", m.Fingerprint())
	}
	// BIP-84 account xpub (BIP-84 "Test vectors", account 0 root: zpub;
	// the same key with xpub version bytes).
	xpub, err := m.XPub(Path{H(84), H(0), H(0)}, false)
	if err != nil {
		t.Fatal(err)
	}
	k, err := hdkeychain.NewKeyFromString(xpub)
	if err != nil {
		t.Fatal(err)
	}
	zpub, _ := k.CloneWithVersion([]byte{0x04, 0xb2, 0x47, 0x46})
	if zpub.String() != "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs" {
		t.Fatalf("BIP-84 account key %s", zpub.String())
	}
	tpub, err := m.XPub(Path{H(84), H(1), H(0)}, true)
	if err != nil || tpub[:4] != "tpub" {
		t.Fatalf("testnet account key %q (%v)", tpub, err)
	}
	if xpub[:4] != "xpub" {
		t.Fatalf("mainnet account key %q", xpub)
	}
}

func TestSeedLength(t *testing.T) {
	for _, n := range []int{0, 15, 65} {
		if _, err := NewMaster(make([]byte, n)); err == nil {
			t.Errorf("NewMaster(%d bytes) succeeded", n)
		}
	}
}

func TestDestroy(t *testing.T) {
	seed := secret.Bytes(bytes.Repeat([]byte{7}, 64))
	m, err := NewMaster(seed)
	if err != nil {
		t.Fatal(err)
	}
	k, err := m.Secp256k1(Path{H(0)})
	if err != nil {
		t.Fatal(err)
	}
	priv := k.Private
	k.Destroy()
	if !bytes.Equal(priv, make([]byte, 32)) {
		t.Fatal("Key.Destroy did not wipe")
	}
	inner := m.seed
	m.Destroy()
	if !bytes.Equal(inner, make([]byte, 64)) {
		t.Fatal("Master.Destroy did not wipe the seed")
	}
	if seed[0] != 7 {
		t.Fatal("NewMaster aliases the caller's seed")
	}
	if _, err := m.Secp256k1(Path{H(0)}); err == nil {
		t.Fatal("derived from a destroyed master")
	}
	if _, err := m.Ed25519(Path{H(0)}); err == nil {
		t.Fatal("derived from a destroyed master")
	}
}

// TestSLIP10Vectors runs the SLIP-0010 Ed25519 vectors 1 and 2.
func TestSLIP10Vectors(t *testing.T) {
	var f struct {
		Vectors []struct {
			Name   string
			Seed   string
			Chains []struct {
				Path, Fingerprint, Private, Public string
				ChainCode                          string `json:"chain_code"`
			}
		}
	}
	vectors.Read(t, "testdata/good_slip10_ed25519.json", &f)
	if len(f.Vectors) != 2 {
		t.Fatalf("%d vectors", len(f.Vectors))
	}
	for _, v := range f.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			seed := vectors.Hex(t, v.Seed)
			m, err := NewMaster(seed)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Destroy()
			for _, c := range v.Chains {
				p, err := ParsePath(c.Path)
				if err != nil {
					t.Fatal(err)
				}
				// The extended key, level by level, with the parent's
				// fingerprint: HASH160(0x00 ‖ parent public key)[:4].
				n, parentFP := slip10Master(seed), "00000000"
				for _, i := range p {
					pub := ed25519.NewKeyFromSeed(n.key[:]).Public().(ed25519.PublicKey)
					parentFP = hex.EncodeToString(btcutil.Hash160(append([]byte{0}, pub...))[:4])
					n.child(i)
				}
				if got := hex.EncodeToString(n.chain[:]); got != c.ChainCode {
					t.Errorf("%s: chain code %s, want %s", c.Path, got, c.ChainCode)
				}
				if parentFP != c.Fingerprint {
					t.Errorf("%s: fingerprint %s, want %s", c.Path, parentFP, c.Fingerprint)
				}
				k, err := m.Ed25519(p)
				if err != nil {
					t.Fatal(err)
				}
				if got := hex.EncodeToString(k.Private); got != c.Private {
					t.Errorf("%s: private %s, want %s", c.Path, got, c.Private)
				}
				if got := "00" + hex.EncodeToString(k.Public); got != c.Public {
					t.Errorf("%s: public %s, want %s", c.Path, got, c.Public)
				}
				k.Destroy()
			}
		})
	}
}

func TestEd25519NeedsHardened(t *testing.T) {
	m, err := NewMaster(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Destroy()
	_, err = m.Ed25519(Path{H(44), H(501), 0})
	if !errors.Is(err, ErrNotHardened) || errkind.Of(err) != errkind.Invalid {
		t.Fatalf("non-hardened Ed25519 path: %v", err)
	}
	if _, err := m.Secp256k1(make(Path, MaxDepth+1)); !errors.Is(err, ErrInvalidPath) {
		t.Fatalf("over-deep path: %v", err)
	}
}

// TestConcurrentDerivation: one Master serves concurrent derivations (the
// pipeline derives accounts of one wallet in parallel).
func TestConcurrentDerivation(t *testing.T) {
	m, err := NewMaster(bytes.Repeat([]byte{3}, 64))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Destroy()
	want, err := m.Secp256k1(Path{H(84), H(0), H(0), 0, 0})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range 20 {
				k, err := m.Secp256k1(Path{H(84), H(0), H(0), 0, 0})
				if err == nil && !bytes.Equal(k.Public, want.Public) {
					err = errors.New("a different key")
				}
				if err == nil {
					_, err = m.Secp256k1(Path{0, uint32(g), uint32(i)})
				}
				if err == nil {
					_, err = m.Ed25519(Path{H(44), H(501), H(uint32(i)), H(0)})
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
