package hd

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/fips"
	"github.com/moonvault/moonvault/internal/secp"
	"github.com/moonvault/moonvault/internal/secret"
)

// ErrNotHardened refuses an Ed25519 path with a non-hardened level:
// SLIP-0010 defines only hardened derivation for Ed25519.
var ErrNotHardened = errkind.New(errkind.Invalid, "invalid_derivation_path", "Ed25519 derivation (SLIP-0010) needs every level hardened")

// Master is the root of an HD wallet: the BIP-39 seed, with the BIP-32
// secp256k1 master key computed once. Destroy wipes both.
type Master struct {
	seed secret.Bytes
	root *bip32Node
	fp   [4]byte
}

// Key is one derived key pair.
type Key struct {
	Path Path
	// Private is the 32-byte secp256k1 scalar, or the 32-byte Ed25519 seed
	// (RFC 8032 private key; ed25519.NewKeyFromSeed expands it).
	Private secret.Bytes
	// Public is the 33-byte compressed secp256k1 point, or the 32-byte
	// Ed25519 public key.
	Public []byte
}

// Destroy wipes the private key.
func (k *Key) Destroy() {
	if k != nil {
		k.Private.Destroy()
	}
}

// NewMaster computes the master keys of seed (16 to 64 bytes; a BIP-39
// seed is 64). The seed is copied; the caller still destroys its own.
func NewMaster(seed secret.Bytes) (*Master, error) {
	root, err := bip32Master(seed)
	if err != nil {
		return nil, fmt.Errorf("hd: master key: %w", err)
	}
	pub, err := secp.PublicKey(root.key[:])
	if err != nil {
		root.destroy()
		return nil, fmt.Errorf("hd: master key: %w", err)
	}
	m := &Master{seed: seed.Clone(), root: root}
	copy(m.fp[:], btcutil.Hash160(pub)[:4])
	return m, nil
}

// String, GoString and LogValue keep the master key out of logs.
func (*Master) String() string       { return "[redacted]" }
func (*Master) GoString() string     { return "[redacted]" }
func (*Master) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// Destroy wipes the seed and the master key.
func (m *Master) Destroy() {
	if m == nil {
		return
	}
	m.seed.Destroy()
	m.seed = nil
	if m.root != nil {
		m.root.destroy()
		m.root = nil
	}
}

// Fingerprint is the BIP-32 fingerprint of the master key: the first four
// bytes of HASH160 of its compressed public key, as hex ("73c5da0a").
func (m *Master) Fingerprint() string { return hex.EncodeToString(m.fp[:]) }

// FingerprintBytes is Fingerprint as bytes (as PSBT key origins carry it).
func (m *Master) FingerprintBytes() [4]byte { return m.fp }

// derive walks p from the master key, wiping every intermediate key. The
// caller destroys the result.
func (m *Master) derive(p Path) (*bip32Node, error) {
	if m == nil || m.root == nil || len(m.seed) == 0 {
		return nil, errors.New("hd: master key destroyed")
	}
	if len(p) > MaxDepth {
		return nil, fmt.Errorf("%w: deeper than %d levels", ErrInvalidPath, MaxDepth)
	}
	n := *m.root // a copy: the master is never wiped by a walk
	for _, i := range p {
		child, err := n.child(i)
		n.destroy()
		if err != nil {
			// ErrInvalidChild: probability < 2^-127 per level; the caller
			// takes the next index (BIP-32).
			return nil, fmt.Errorf("hd: derive %s: %w", p, err)
		}
		n = *child
		child.destroy()
	}
	return &n, nil
}

// Secp256k1 derives the BIP-32 key at p.
func (m *Master) Secp256k1(p Path) (*Key, error) {
	n, err := m.derive(p)
	if err != nil {
		return nil, err
	}
	defer n.destroy()
	pub, err := secp.PublicKey(n.key[:])
	if err != nil {
		return nil, fmt.Errorf("hd: %w", err)
	}
	return &Key{
		Path:    append(Path(nil), p...),
		Private: secret.Bytes(n.key[:]).Clone(),
		Public:  pub,
	}, nil
}

// XPub returns the BIP-32 extended public key at p (an account level such
// as m/84'/0'/0'), with mainnet "xpub" version bytes, or "tpub" when
// testnet is set (testnet, signet and regtest share them).
func (m *Master) XPub(p Path, testnet bool) (string, error) {
	n, err := m.derive(p)
	if err != nil {
		return "", err
	}
	defer n.destroy()
	pub, err := secp.PublicKey(n.key[:])
	if err != nil {
		return "", fmt.Errorf("hd: %w", err)
	}
	version := chaincfg.MainNetParams.HDPublicKeyID
	if testnet {
		version = chaincfg.TestNet3Params.HDPublicKeyID
	}
	return n.extended(version[:], pub, false).String(), nil
}

// bip32Node is a BIP-32 extended private key. Every multiplication of the
// base point by its key is constant time (internal/secp): btcutil's
// hdkeychain computes the parent's public key with btcec's variable-time
// multiplication at every derivation, hardened or not, so an HD wallet
// would replay the same key through it on every account derived.
type bip32Node struct {
	key      [32]byte // the private scalar k
	chain    [32]byte // the chain code c
	depth    uint8
	index    uint32
	parentFP [4]byte
}

// String, GoString and LogValue keep the node's key out of logs.
func (*bip32Node) String() string       { return "[redacted]" }
func (*bip32Node) GoString() string     { return "[redacted]" }
func (*bip32Node) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// bip32Master is BIP-32's master key generation: I = HMAC-SHA512(Key =
// "Bitcoin seed", Data = S); k = I_L (refused when 0 or ≥ n), c = I_R.
func bip32Master(seed []byte) (*bip32Node, error) {
	if len(seed) < hdkeychain.MinSeedBytes || len(seed) > hdkeychain.MaxSeedBytes {
		return nil, hdkeychain.ErrInvalidSeedLen
	}
	var i []byte
	// BIP-32's HMAC-SHA512 key "Bitcoin seed" is 96 bits, shorter than Go's
	// FIPS 140-only mode allows: HD derivation is outside the FIPS boundary
	// (docs/fips.md), like secp256k1 itself.
	fips.Outside(func() {
		mac := hmac.New(sha512.New, []byte("Bitcoin seed"))
		mac.Write(seed)
		i = mac.Sum(nil)
	})
	n := &bip32Node{}
	copy(n.key[:], i[:32])
	copy(n.chain[:], i[32:])
	secret.Wipe(i)
	var k btcec.ModNScalar
	overflow := k.SetBytes(&n.key)
	zero := k.IsZero()
	k.Zero()
	if overflow != 0 || zero {
		n.destroy()
		return nil, hdkeychain.ErrUnusableSeed // probability < 2^-127
	}
	return n, nil
}

// child is BIP-32's CKDpriv: I = HMAC-SHA512(Key = c_par, Data = 0x00 ‖
// ser256(k_par) ‖ ser32(i) when i is hardened, serP(point(k_par)) ‖
// ser32(i) otherwise); k_i = parse256(I_L) + k_par mod n, c_i = I_R. The
// child is invalid (ErrInvalidChild) when I_L ≥ n or k_i = 0.
func (n *bip32Node) child(i uint32) (*bip32Node, error) {
	pub, err := secp.PublicKey(n.key[:]) // for the fingerprint, and the data of a normal child
	if err != nil {
		return nil, err
	}
	var data [1 + 32 + 4]byte
	if i >= hdkeychain.HardenedKeyStart {
		copy(data[1:], n.key[:])
	} else {
		copy(data[:33], pub)
	}
	binary.BigEndian.PutUint32(data[33:], i)
	mac := hmac.New(sha512.New, n.chain[:])
	mac.Write(data[:])
	secret.Wipe(data[:])
	sum := mac.Sum(nil)
	defer secret.Wipe(sum)

	var il, kpar btcec.ModNScalar
	overflow := il.SetByteSlice(sum[:32])
	kpar.SetBytes(&n.key)
	il.Add(&kpar) // constant time
	kpar.Zero()
	defer il.Zero()
	if overflow || il.IsZero() {
		return nil, hdkeychain.ErrInvalidChild
	}
	c := &bip32Node{depth: n.depth + 1, index: i}
	il.PutBytes(&c.key)
	copy(c.chain[:], sum[32:])
	copy(c.parentFP[:], btcutil.Hash160(pub)[:4])
	return c, nil
}

// extended is the node as btcutil's ExtendedKey, for its serialisation
// (xprv/xpub): key is the private scalar (private) or the compressed
// public key.
func (n *bip32Node) extended(version, key []byte, private bool) *hdkeychain.ExtendedKey {
	return hdkeychain.NewExtendedKey(version, key, append([]byte(nil), n.chain[:]...),
		append([]byte(nil), n.parentFP[:]...), n.depth, n.index, private)
}

func (n *bip32Node) destroy() {
	secret.Wipe(n.key[:])
	secret.Wipe(n.chain[:])
}

// Ed25519 derives the SLIP-0010 Ed25519 key at p. Every level must be
// hardened.
func (m *Master) Ed25519(p Path) (*Key, error) {
	if m == nil || len(m.seed) == 0 {
		return nil, errors.New("hd: master key destroyed")
	}
	if len(p) > MaxDepth {
		return nil, fmt.Errorf("%w: deeper than %d levels", ErrInvalidPath, MaxDepth)
	}
	if !p.Hardened() {
		return nil, ErrNotHardened
	}
	node := slip10Master(m.seed)
	defer node.destroy()
	for _, i := range p {
		node.child(i)
	}
	priv := ed25519.NewKeyFromSeed(node.key[:])
	defer secret.Wipe(priv)
	return &Key{
		Path:    append(Path(nil), p...),
		Private: secret.Bytes(node.key[:]).Clone(),
		Public:  append([]byte(nil), priv[ed25519.SeedSize:]...),
	}, nil
}

// slip10Node is an Ed25519 extended private key (SLIP-0010): the private
// key (an RFC 8032 seed) and the chain code.
type slip10Node struct {
	key   [32]byte
	chain [32]byte
}

// slip10Master is I = HMAC-SHA512(Key = "ed25519 seed", Data = S).
func slip10Master(seed []byte) *slip10Node {
	var i []byte
	// A 96-bit HMAC key, like BIP-32's: outside the FIPS boundary.
	fips.Outside(func() {
		mac := hmac.New(sha512.New, []byte("ed25519 seed"))
		mac.Write(seed)
		i = mac.Sum(nil)
	})
	return splitI(i)
}

// child is CKDpriv for a hardened i: I = HMAC-SHA512(Key = c_par, Data =
// 0x00 ‖ k_par ‖ ser32(i)); k_i = I_L, c_i = I_R (SLIP-0010).
func (n *slip10Node) child(i uint32) {
	var data [1 + 32 + 4]byte
	copy(data[1:], n.key[:])
	binary.BigEndian.PutUint32(data[33:], i)
	mac := hmac.New(sha512.New, n.chain[:])
	mac.Write(data[:])
	secret.Wipe(data[:])
	c := splitI(mac.Sum(nil))
	*n = *c
	c.destroy()
}

func splitI(i []byte) *slip10Node {
	n := &slip10Node{}
	copy(n.key[:], i[:32])
	copy(n.chain[:], i[32:])
	secret.Wipe(i)
	return n
}

func (n *slip10Node) destroy() {
	secret.Wipe(n.key[:])
	secret.Wipe(n.chain[:])
}
