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

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/fips"
	"github.com/moonvault/moonvault/internal/secret"
)

// ErrNotHardened refuses an Ed25519 path with a non-hardened level:
// SLIP-0010 defines only hardened derivation for Ed25519.
var ErrNotHardened = errkind.New(errkind.Invalid, "invalid_derivation_path", "Ed25519 derivation (SLIP-0010) needs every level hardened")

// Master is the root of an HD wallet: the BIP-39 seed, with the BIP-32
// secp256k1 master key computed once. Destroy wipes both.
type Master struct {
	seed secret.Bytes
	xprv *hdkeychain.ExtendedKey
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
	var xprv *hdkeychain.ExtendedKey
	var err error
	// BIP-32's HMAC-SHA512 key "Bitcoin seed" is 96 bits, shorter than Go's
	// FIPS 140-only mode allows: HD derivation is outside the FIPS boundary
	// (docs/fips.md), like secp256k1 itself.
	fips.Outside(func() { xprv, err = hdkeychain.NewMaster(seed, &chaincfg.MainNetParams) })
	if err != nil {
		// ErrInvalidSeedLen, or ErrUnusableSeed (probability < 2^-127).
		return nil, fmt.Errorf("hd: master key: %w", err)
	}
	pub, err := xprv.ECPubKey()
	if err != nil {
		xprv.Zero()
		return nil, fmt.Errorf("hd: master key: %w", err)
	}
	m := &Master{seed: seed.Clone(), xprv: xprv}
	copy(m.fp[:], btcutil.Hash160(pub.SerializeCompressed())[:4])
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
	if m.xprv != nil {
		m.xprv.Zero()
		m.xprv = nil
	}
}

// Fingerprint is the BIP-32 fingerprint of the master key: the first four
// bytes of HASH160 of its compressed public key, as hex ("73c5da0a").
func (m *Master) Fingerprint() string { return hex.EncodeToString(m.fp[:]) }

// FingerprintBytes is Fingerprint as bytes (as PSBT key origins carry it).
func (m *Master) FingerprintBytes() [4]byte { return m.fp }

// derive walks p from the master key, wiping every intermediate key.
func (m *Master) derive(p Path) (*hdkeychain.ExtendedKey, error) {
	if m == nil || m.xprv == nil || len(m.seed) == 0 {
		return nil, errors.New("hd: master key destroyed")
	}
	if len(p) > MaxDepth {
		return nil, fmt.Errorf("%w: deeper than %d levels", ErrInvalidPath, MaxDepth)
	}
	if len(p) == 0 {
		return cloneKey(m.xprv)
	}
	k := m.xprv
	for _, i := range p {
		child, err := k.Derive(i)
		if k != m.xprv {
			k.Zero()
		}
		if err != nil {
			// ErrInvalidChild: probability < 2^-127 per level; the caller
			// takes the next index (BIP-32).
			return nil, fmt.Errorf("hd: derive %s: %w", p, err)
		}
		k = child
	}
	return k, nil
}

// cloneKey deep-copies a private extended key (CloneWithVersion shares
// the key's bytes, which the caller's Zero would then wipe in m.xprv).
func cloneKey(k *hdkeychain.ExtendedKey) (*hdkeychain.ExtendedKey, error) {
	priv, err := k.ECPrivKey()
	if err != nil {
		return nil, fmt.Errorf("hd: %w", err)
	}
	defer priv.Zero()
	fp := make([]byte, 4)
	binary.BigEndian.PutUint32(fp, k.ParentFingerprint())
	return hdkeychain.NewExtendedKey(k.Version(), priv.Serialize(), append([]byte(nil), k.ChainCode()...),
		fp, k.Depth(), k.ChildIndex(), true), nil
}

// Secp256k1 derives the BIP-32 key at p.
func (m *Master) Secp256k1(p Path) (*Key, error) {
	k, err := m.derive(p)
	if err != nil {
		return nil, err
	}
	defer k.Zero()
	priv, err := k.ECPrivKey()
	if err != nil {
		return nil, fmt.Errorf("hd: %w", err)
	}
	defer priv.Zero()
	return &Key{
		Path:    append(Path(nil), p...),
		Private: secret.Bytes(priv.Serialize()), // 32 bytes, left-padded
		Public:  priv.PubKey().SerializeCompressed(),
	}, nil
}

// XPub returns the BIP-32 extended public key at p (an account level such
// as m/84'/0'/0'), with mainnet "xpub" version bytes, or "tpub" when
// testnet is set (testnet, signet and regtest share them).
func (m *Master) XPub(p Path, testnet bool) (string, error) {
	k, err := m.derive(p)
	if err != nil {
		return "", err
	}
	defer k.Zero()
	pub, err := k.Neuter()
	if err != nil {
		return "", fmt.Errorf("hd: %w", err)
	}
	if testnet {
		if pub, err = pub.CloneWithVersion(chaincfg.TestNet3Params.HDPublicKeyID[:]); err != nil {
			return "", fmt.Errorf("hd: %w", err)
		}
	}
	return pub.String(), nil
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
