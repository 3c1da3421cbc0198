// Package secp does the secp256k1 operations that take a secret scalar,
// in constant time: a private key's public key, and BIP-340 (Schnorr) and
// BIP-341 (Taproot) signing.
//
// btcec (decred's secp256k1) multiplies the base point by a scalar with
// ScalarBaseMultNonConst: a table lookup indexed by each byte of the
// scalar, then point additions that branch on their inputs. Its own
// documentation says that its signing "should not be used in situations
// where there is the possibility of someone having EM field/cache/etc
// access". A vault that runs in a confidential VM has exactly such a
// neighbour, the host, and a cache trace of R = k·G leaks nonce bits:
// a few bits per signature are enough for a lattice attack on the key.
//
// So every multiplication of the base point by a secret here runs in
// libsecp256k1 (Bitcoin Core's library, which go-ethereum builds with
// cgo and which already makes every ECDSA signature here):
// secp256k1_ecmult_const, constant time in the scalar. The arithmetic
// modulo the group order uses btcec's ModNScalar, which is constant time,
// and conditional negations select without a branch. btcec still parses
// and verifies, where every input is public.
package secp

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	gsecp "github.com/ethereum/go-ethereum/crypto/secp256k1"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/secret"
)

// ErrInvalidKey refuses a secret scalar that is not 32 bytes, or is zero
// or not below the group order (an imported key, as chain.ErrBadKey).
var ErrInvalidKey = errkind.New(errkind.Invalid, "invalid_private_key", "not a valid secp256k1 private key")

// ScalarSize is the size of a secret scalar.
const ScalarSize = 32

// point computes k·G in constant time in k and returns its affine
// coordinates (public values), or ErrInvalidKey for k = 0 or k ≥ n (a
// check libsecp256k1 makes without a branch on k's value).
func point(k []byte) (x, y [32]byte, err error) {
	if len(k) != ScalarSize {
		return x, y, ErrInvalidKey
	}
	// go-ethereum's BitCurve.ScalarBaseMult is ScalarMult(G, k), which is
	// secp256k1_ext_scalar_mul: secp256k1_ecmult_const. It copies k into
	// a buffer it clears afterwards.
	px, py := gsecp.S256().ScalarBaseMult(k)
	if px == nil || py == nil {
		return x, y, ErrInvalidKey
	}
	px.FillBytes(x[:])
	py.FillBytes(y[:])
	return x, y, nil
}

// PublicKey returns the 33-byte compressed public key of the 32-byte
// private key priv.
func PublicKey(priv []byte) ([]byte, error) {
	x, y, err := point(priv)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 33)
	out[0] = 2 | y[31]&1
	copy(out[1:], x[:])
	return out, nil
}

// condNegate replaces s by n - s when odd is 1, without a branch on odd.
func condNegate(s *btcec.ModNScalar, odd byte) {
	neg := *s
	neg.Negate()
	a, b := s.Bytes(), neg.Bytes()
	subtle.ConstantTimeCopy(int(odd&1), a[:], b[:])
	s.SetBytes(&a)
	neg.Zero()
	secret.Wipe(a[:])
	secret.Wipe(b[:])
}

// SchnorrKey is a BIP-340 signing key: the private scalar, negated where
// needed so that its point has an even Y (BIP-340 "Default Signing" step
// 5, done once), and that point's X, the x-only public key.
type SchnorrKey struct {
	d  [32]byte
	px [32]byte
}

// NewSchnorrKey prepares the 32-byte private key priv for BIP-340
// signing. The caller still wipes priv.
func NewSchnorrKey(priv []byte) (*SchnorrKey, error) {
	x, y, err := point(priv)
	if err != nil {
		return nil, err
	}
	var d btcec.ModNScalar
	d.SetByteSlice(priv) // below n: point checked it
	condNegate(&d, y[31])
	k := &SchnorrKey{px: x}
	d.PutBytes(&k.d)
	d.Zero()
	return k, nil
}

// String, GoString and LogValue keep the key out of logs and error text.
func (*SchnorrKey) String() string       { return "[redacted]" }
func (*SchnorrKey) GoString() string     { return "[redacted]" }
func (*SchnorrKey) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// XOnly returns the 32-byte x-only public key (BIP-340).
func (k *SchnorrKey) XOnly() []byte { return append([]byte(nil), k.px[:]...) }

// Zero wipes the private scalar.
func (k *SchnorrKey) Zero() {
	if k != nil {
		secret.Wipe(k.d[:])
	}
}

// TweakTaproot returns the key that signs for the Taproot output key of
// k's point with script tree root (nil for none: BIP-86): BIP-341's
// taproot_tweak_seckey, d' = d + int(hash_TapTweak(bytes(P) ‖ root)), with
// d already even-Y. A tweak of n or more fails, as BIP-341 says.
func (k *SchnorrKey) TweakTaproot(root []byte) (*SchnorrKey, error) {
	h := chainhash.TaggedHash(chainhash.TagTapTweak, k.px[:], root)
	var t, d btcec.ModNScalar
	if t.SetBytes((*[32]byte)(h)) != 0 {
		return nil, errors.New("secp: taproot tweak is not below the group order")
	}
	d.SetBytes(&k.d)
	d.Add(&t)
	b := d.Bytes()
	d.Zero()
	defer secret.Wipe(b[:])
	tk, err := NewSchnorrKey(b[:])
	if err != nil {
		return nil, fmt.Errorf("secp: taproot tweak: %w", err)
	}
	return tk, nil
}

// rfc6979ExtraData is btcec's domain separation for BIP-340 nonces drawn
// with RFC 6979: SHA-256("BIP-340"). With it, Sign without aux makes the
// same signatures as btcec's schnorr.Sign, which the account's known-answer
// tests pin.
var rfc6979ExtraData = [32]byte{
	0xa3, 0xeb, 0x4c, 0x18, 0x2f, 0xae, 0x7e, 0xf4,
	0xe8, 0x10, 0xc6, 0xee, 0x13, 0xb0, 0xe9, 0x26,
	0x68, 0x6d, 0x71, 0xe8, 0x7f, 0x39, 0x4f, 0x79,
	0x9c, 0x00, 0xa5, 0x21, 0x03, 0xcb, 0x4e, 0x17,
}

// Sign makes the 64-byte BIP-340 signature of the 32-byte hash. With aux,
// the nonce is BIP-340's (auxiliary randomness a = *aux); without, it is
// RFC 6979's over the key and hash (deterministic, as btcec's default).
// The signature is verified before it is returned (BIP-340 recommends it
// against fault attacks).
func (k *SchnorrKey) Sign(hash []byte, aux *[32]byte) ([]byte, error) {
	if len(hash) != 32 {
		return nil, fmt.Errorf("secp: BIP-340 signs a 32-byte hash, got %d bytes", len(hash))
	}
	if aux != nil {
		// t = bytes(d) xor hash_BIP0340/aux(a);
		// k' = int(hash_BIP0340/nonce(t ‖ bytes(P) ‖ m)) mod n.
		t := chainhash.TaggedHash(chainhash.TagBIP0340Aux, aux[:])
		subtle.XORBytes(t[:], t[:], k.d[:])
		rand := chainhash.TaggedHash(chainhash.TagBIP0340Nonce, t[:], k.px[:], hash)
		secret.Wipe(t[:])
		var nonce btcec.ModNScalar
		nonce.SetBytes((*[32]byte)(rand))
		secret.Wipe(rand[:])
		defer nonce.Zero()
		if nonce.IsZero() {
			return nil, errors.New("secp: BIP-340 nonce is zero")
		}
		return k.sign(&nonce, hash)
	}
	var err error
	for iteration := range uint32(8) {
		nonce := btcec.NonceRFC6979(k.d[:], hash, rfc6979ExtraData[:], nil, iteration)
		var sig []byte
		sig, err = k.sign(nonce, hash)
		nonce.Zero()
		if err == nil {
			return sig, nil
		}
	}
	return nil, err
}

// sign is BIP-340 steps 10 to 14 for the nonce k'.
func (k *SchnorrKey) sign(nonce *btcec.ModNScalar, hash []byte) ([]byte, error) {
	kb := nonce.Bytes()
	rx, ry, err := point(kb[:]) // R = k'·G, constant time in k'
	secret.Wipe(kb[:])
	if err != nil {
		return nil, err
	}
	kk := *nonce
	defer kk.Zero()
	condNegate(&kk, ry[31]) // k = k' if has_even_y(R), else n - k'
	// e = int(hash_BIP0340/challenge(bytes(R) ‖ bytes(P) ‖ m)) mod n
	var e btcec.ModNScalar
	e.SetBytes((*[32]byte)(chainhash.TaggedHash(chainhash.TagBIP0340Challenge, rx[:], k.px[:], hash)))
	var d btcec.ModNScalar
	d.SetBytes(&k.d)
	s := new(btcec.ModNScalar).Mul2(&e, &d).Add(&kk)
	d.Zero()
	sig := make([]byte, 64)
	copy(sig, rx[:])
	s.PutBytesUnchecked(sig[32:])
	s.Zero()
	// Verify before releasing: a fault in the computation must not
	// publish a signature that could leak d.
	pub, err := schnorr.ParsePubKey(k.px[:])
	if err != nil {
		return nil, fmt.Errorf("secp: %w", err)
	}
	parsed, err := schnorr.ParseSignature(sig)
	if err != nil || !parsed.Verify(hash, pub) {
		return nil, errors.New("secp: BIP-340 signature failed verification")
	}
	return sig, nil
}
