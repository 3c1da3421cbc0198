// Package provenance makes and checks the vault's signed statement of how
// an account's key came to be: generated in the vault (and from which
// entropy), imported, or derived from an HD wallet; whether it is
// seal-wrapped; and when. The record is written once, when the key is
// made, so it says what happened then, not what is true now.
//
// The vault signs the record's exact JSON bytes with an Ed25519 key that is
// a seal-wrapped CSP; the public key is published at
// GET /v1/sys/provenance/public-key. Verify needs nothing else, so a
// client can check a record offline against a pinned key.
package provenance

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
)

// Version is the record format written today.
const Version = 1

// signContext prefixes the payload under the signature, so that a
// provenance signature can never be taken for one of another protocol
// made with the same key (RFC 8032 has no context for pure Ed25519).
const signContext = "moonvault provenance v1\x00"

// Algorithm names the signature scheme.
const Algorithm = "Ed25519"

// Origins of a key.
const (
	Generated = "generated" // drawn from the vault's entropy
	Imported  = "imported"  // given to the vault by its owner
	Derived   = "derived"   // derived from an HD wallet's seed
)

// Entropy modes besides entropy.ModeAugmentation and entropy.ModeOff.
const (
	// EntropyExternal: the key (or the wallet's mnemonic) was made outside
	// the vault; the vault drew nothing for it.
	EntropyExternal = "external"
)

// Record is the statement. Field names are the API's.
type Record struct {
	Version     int       `json:"version"`
	Account     string    `json:"account"` // "owner/name"
	Chain       string    `json:"chain"`
	Network     string    `json:"network,omitempty"`
	AddressType string    `json:"address_type,omitempty"`
	KeyType     string    `json:"key_type"`
	Address     string    `json:"address"`
	PublicKey   string    `json:"public_key"` // hex, as the account shows it
	Origin      string    `json:"origin"`     // Generated, Imported or Derived
	Wallet      *Wallet   `json:"wallet,omitempty"`
	Entropy     Entropy   `json:"entropy"`
	SealWrap    SealWrap  `json:"seal_wrap"`
	CreatedAt   time.Time `json:"created_at"`
}

// Wallet is the HD origin of a derived key.
type Wallet struct {
	Name           string `json:"name"`
	Fingerprint    string `json:"fingerprint"` // BIP-32 master key fingerprint, hex
	DerivationPath string `json:"derivation_path"`
	Origin         string `json:"origin"` // the wallet's seed: Generated or Imported
}

// Entropy is the randomness the key was made from. For a derived key it is
// the wallet's: its mnemonic's entropy was drawn when the wallet was made.
type Entropy struct {
	Mode     string `json:"mode"`             // "augmentation", "off" or EntropyExternal
	Source   string `json:"source,omitempty"` // "pkcs11" or "os"
	HSMBytes uint64 `json:"hsm_bytes"`        // HSM bytes mixed into this key (or seed)
	// Health is the SP 800-90B health-test state of the HSM stream the
	// bytes came from: "passed", or "not_applicable" without an HSM.
	Health         string `json:"health"`
	HealthFailures uint64 `json:"health_failures"` // failed draws since the node started, at that time
	DrawnFor       string `json:"drawn_for,omitempty"`
}

// What the entropy was drawn for.
const (
	DrawnForKey    = "key"
	DrawnForWallet = "wallet"
)

// SealWrap says how the stored private key is protected beyond the barrier.
type SealWrap struct {
	Wrapped   bool   `json:"wrapped"`
	Mechanism string `json:"mechanism,omitempty"`
}

// Signed is a record as the vault signed it: Payload is the record's exact
// JSON, Signature the Ed25519 signature over signContext ‖ Payload.
type Signed struct {
	Payload   []byte `json:"payload"`   // base64 in JSON
	Signature []byte `json:"signature"` // base64 in JSON
	KeyID     string `json:"key_id"`
}

// ErrInvalid: a signature or payload that does not verify.
var ErrInvalid = errkind.New(errkind.Invalid, "invalid_provenance", "the provenance record does not verify")

// KeyID names a verification key: "ed25519:" and the first 8 bytes of the
// SHA-256 of the key, hex.
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(h[:8])
}

// Sign encodes r and signs it with key.
func Sign(key ed25519.PrivateKey, r *Record) (*Signed, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("provenance: bad signing key")
	}
	payload, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("provenance: encode: %w", err)
	}
	return &Signed{
		Payload:   payload,
		Signature: ed25519.Sign(key, message(payload)),
		KeyID:     KeyID(key.Public().(ed25519.PublicKey)),
	}, nil
}

func message(payload []byte) []byte {
	m := make([]byte, 0, len(signContext)+len(payload))
	return append(append(m, signContext...), payload...)
}

// Verify checks s against pub and returns the record it signs. The key id
// must be pub's; the payload must be one JSON object of the known fields.
func Verify(pub ed25519.PublicKey, s *Signed) (*Record, error) {
	if s == nil || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: no record or key", ErrInvalid)
	}
	if s.KeyID != KeyID(pub) {
		return nil, fmt.Errorf("%w: signed by key %q, not by %q", ErrInvalid, s.KeyID, KeyID(pub))
	}
	if len(s.Signature) != ed25519.SignatureSize || !ed25519.Verify(pub, message(s.Payload), s.Signature) {
		return nil, fmt.Errorf("%w: bad signature", ErrInvalid)
	}
	var r Record
	dec := json.NewDecoder(bytes.NewReader(s.Payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil || dec.More() {
		return nil, fmt.Errorf("%w: payload is not a provenance record", ErrInvalid)
	}
	if r.Version != Version {
		return nil, fmt.Errorf("%w: unknown version %d", ErrInvalid, r.Version)
	}
	return &r, nil
}
