// Package solana signs Solana transactions and messages for one Ed25519
// account. It is pure: no storage, no HTTP. Wire decoding is solana-go's
// (legacy and v0 messages); this package checks the untrusted bytes
// strictly first — canonical encoding, sane header and indexes, the account
// a required signer — and signs exactly the message bytes it was given.
package solana

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"

	"github.com/btcsuite/btcd/btcutil/base58"
	sol "github.com/gagliardetto/solana-go"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/hd"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/wallet/chain"
)

// CoinType is Solana's SLIP-0044 coin type.
const CoinType = 501

// DerivationPath is the default path of account index i: m/44'/501'/i'/0'
// (every level hardened: SLIP-0010 Ed25519; the layout Phantom and the
// Solana CLI use).
func DerivationPath(index uint32) hd.Path {
	return hd.Path{hd.H(44), hd.H(CoinType), hd.H(index), hd.H(0)}
}

// ErrPublicKey refuses a public key that is not 32 bytes.
var ErrPublicKey = errkind.New(errkind.Invalid, "invalid_public_key", "not a 32-byte Ed25519 public key")

// Address is the base58 form of an Ed25519 public key.
func Address(pub []byte) (string, error) {
	if len(pub) != ed25519.PublicKeySize {
		return "", ErrPublicKey
	}
	return base58.Encode(pub), nil
}

// Key is an account's prepared signing key.
type Key struct {
	priv ed25519.PrivateKey
	pub  sol.PublicKey
}

// NewKey expands raw (a 32-byte Ed25519 seed, RFC 8032 §5.1.5) and checks
// it against the account's public key. raw is not retained.
func NewKey(raw secret.Bytes, pub []byte) (*Key, error) {
	if len(raw) != ed25519.SeedSize {
		return nil, fmt.Errorf("solana: private key must be %d bytes", ed25519.SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(raw)
	if string(priv[ed25519.SeedSize:]) != string(pub) {
		secret.Wipe(priv)
		return nil, fmt.Errorf("solana: %w", chain.ErrKeyMismatch)
	}
	return &Key{priv: priv, pub: sol.PublicKeyFromBytes(pub)}, nil
}

// String, GoString and LogValue keep a key out of logs and error text.
func (*Key) String() string       { return "[redacted]" }
func (*Key) GoString() string     { return "[redacted]" }
func (*Key) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// Public returns the 32-byte public key.
func (k *Key) Public() []byte { return k.pub[:] }

// Destroy wipes the private key.
func (k *Key) Destroy() {
	if k != nil {
		secret.Wipe(k.priv)
	}
}

// encodeSig renders a signature in base58. btcutil's base58 is used for
// every encoding here: the same alphabet as solana-go's (mr-tron), an
// order of magnitude faster on 64 bytes.
func encodeSig(s sol.Signature) string { return base58.Encode(s[:]) }

// sign is Ed25519 over msg (RFC 8032, pure: no pre-hash).
func (k *Key) sign(msg []byte) sol.Signature {
	var s sol.Signature
	copy(s[:], ed25519.Sign(k.priv, msg))
	return s
}
