package chain

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/hd"
	"github.com/moonvault/moonvault/internal/secp"
	"github.com/moonvault/moonvault/internal/secret"
)

// PrivateKeySize is the size of a raw private key of either type: a
// secp256k1 scalar or an Ed25519 seed (RFC 8032 §5.1.5).
const PrivateKeySize = 32

// ErrBadKey refuses raw key bytes that are not a valid private key.
var ErrBadKey = errkind.New(errkind.Invalid, "invalid_private_key", "not a valid private key")

// GenerateKey draws a private key of type kt from r (the CSP entropy
// source) and returns it with its public key. For secp256k1 a value that is
// not a valid scalar (probability ~2^-128) is drawn again (SEC 1 §3.2.1).
func GenerateKey(kt KeyType, r io.Reader) (secret.Bytes, []byte, error) {
	buf := make(secret.Bytes, PrivateKeySize)
	for range 16 {
		if _, err := io.ReadFull(r, buf); err != nil {
			buf.Destroy()
			return nil, nil, fmt.Errorf("chain: generate key: %w", err)
		}
		pub, err := PublicKey(kt, buf)
		if err == nil {
			return buf, pub, nil
		}
		if !errors.Is(err, ErrBadKey) {
			buf.Destroy()
			return nil, nil, err
		}
	}
	buf.Destroy()
	return nil, nil, errors.New("chain: generate key: entropy source returns invalid scalars")
}

// PublicKey returns the public key of a raw private key: the 33-byte
// compressed point for secp256k1, the 32-byte key for Ed25519.
func PublicKey(kt KeyType, raw secret.Bytes) ([]byte, error) {
	if len(raw) != PrivateKeySize {
		return nil, ErrBadKey
	}
	switch kt {
	case Secp256k1:
		// In constant time in the key (libsecp256k1), not btcec's
		// variable-time base-point multiplication (internal/secp).
		pub, err := secp.PublicKey(raw)
		if err != nil {
			return nil, ErrBadKey
		}
		return pub, nil
	case Ed25519:
		k := ed25519.NewKeyFromSeed(raw)
		defer secret.Wipe(k)
		return append([]byte(nil), k[ed25519.SeedSize:]...), nil
	}
	return nil, fmt.Errorf("chain: unknown key type %q", kt)
}

// DeriveKey derives the key of type kt at path p from an HD wallet:
// BIP-32 for secp256k1, SLIP-0010 for Ed25519.
func DeriveKey(m *hd.Master, kt KeyType, p hd.Path) (*hd.Key, error) {
	switch kt {
	case Secp256k1:
		return m.Secp256k1(p)
	case Ed25519:
		return m.Ed25519(p)
	}
	return nil, fmt.Errorf("chain: unknown key type %q", kt)
}

// Errors a chain package returns when stored data disagrees with itself:
// a bug or tampering, never the caller's fault.
var (
	// ErrAccountMismatch: an account's address is not its public key's.
	ErrAccountMismatch = errkind.New(errkind.Integrity, "", "the account's address does not match its public key")
	// ErrKeyMismatch: a private key is not the account's (or the key given
	// to Sign is another chain's or account's).
	ErrKeyMismatch = errkind.New(errkind.Integrity, "", "the private key is not the account's")
)
