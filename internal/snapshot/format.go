// Package snapshot is the backup file format: a consistent copy of storage
// as stored (barrier ciphertext and the core's records, never decrypted),
// which restores into either backend.
//
// A file is, in order:
//
//	magic      "MVSNAP\x00" and one format version byte (1)
//	header     uint32 big-endian length, then a JSON Header
//	records    each: 0x01, uvarint key length, key, uvarint value length, value;
//	           keys in strictly ascending byte order
//	end        0x00
//	trailer    uint32 big-endian length, then a JSON Trailer
//
// The trailer holds the SHA-256 of every byte before it and an Ed25519
// signature over that digest by the vault's snapshot key, whose public key
// is in the header. Read refuses a file that is truncated, altered, of
// another version, or carries trailing bytes, before the caller commits
// anything.
package snapshot

import (
	"crypto/ed25519"
	"crypto/sha256"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
)

// Version is the format version this package writes and reads.
const Version = 1

const (
	magic = "MVSNAP\x00"
	// sigContext separates snapshot signatures from every other use of an
	// Ed25519 key.
	sigContext = "moonvault snapshot v1\n"

	tagRecord byte = 0x01
	tagEnd    byte = 0x00

	maxHeader  = 64 << 10
	maxTrailer = 4 << 10
	// MaxKeyLen and MaxValueLen bound one record (storage keys are at most
	// 1024 bytes; barrier values are small, seal-wrapped CSPs smaller).
	MaxKeyLen   = 1024
	MaxValueLen = 64 << 20
)

// Header describes a snapshot. It is covered by the digest and signature.
type Header struct {
	Format int `json:"format"`
	// Storage is the backend the snapshot was taken from: bolt or postgres.
	Storage string `json:"storage"`
	Records int64  `json:"records"`
	// Term is the barrier keyring's active term when the snapshot was taken.
	Term uint32 `json:"term"`
	// Seal is the seal type the vault used: shamir or pkcs11. A restored
	// vault unseals the same way.
	Seal      string    `json:"seal"`
	CreatedAt time.Time `json:"created_at"`
	// PublicKey is the vault's snapshot signing key (Ed25519, 32 bytes).
	PublicKey []byte `json:"public_key"`
}

// Trailer closes a snapshot.
type Trailer struct {
	SHA256    []byte `json:"sha256"`
	Signature []byte `json:"signature"`
}

// Errors. Every refusal wraps ErrInvalid (or ErrForeign) with a sentence
// that names what is wrong.
var (
	// ErrInvalid: the file is not a complete, unaltered snapshot of a
	// version this build reads. Nothing was changed.
	ErrInvalid = errkind.New(errkind.Invalid, "invalid_snapshot", "snapshot refused")
	// ErrForeign: the snapshot was signed by another vault's key than the
	// running vault's; restoring it over this vault needs force.
	ErrForeign = errkind.New(errkind.Conflict, "snapshot_from_other_vault",
		"the snapshot was made by another vault (its signing key differs from this vault's); restore it with force to replace this vault's data")
)

func signedMessage(sum []byte) []byte {
	return append([]byte(sigContext), sum...)
}

// sign returns the trailer for a digest.
func sign(sum [sha256.Size]byte, key ed25519.PrivateKey) Trailer {
	return Trailer{SHA256: sum[:], Signature: ed25519.Sign(key, signedMessage(sum[:]))}
}
