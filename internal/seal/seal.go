// Package seal protects the root key: with a key held in an HSM (PKCS11,
// auto-unseal) or, for seal wrap in Shamir mode, with a key held in memory
// (Software). Both produce self-describing AES-256-GCM ciphertexts.
package seal

import (
	"context"
	"errors"
	"fmt"

	"github.com/moonvault/moonvault/internal/errkind"

	"github.com/moonvault/moonvault/internal/hsm"
)

// RootKeyAAD is the associated data under which the root key is wrapped.
const RootKeyAAD = "moonvault root key"

// ErrDecrypt means a ciphertext did not authenticate: wrong key, wrong
// associated data, or tampered bytes. Other errors (HSM unavailable) do not
// wrap it.
var ErrDecrypt = errkind.New(errkind.Integrity, "integrity_error", "seal: decryption failed")

// PKCS11 wraps with an AES-256 key that never leaves the HSM.
type PKCS11 struct {
	m     *hsm.Module
	label string
}

// NewPKCS11 returns a seal using the key keyLabel on m.
func NewPKCS11(m *hsm.Module, keyLabel string) *PKCS11 {
	return &PKCS11{m: m, label: keyLabel}
}

// Type is the seal type recorded in the seal configuration.
func (s *PKCS11) Type() string { return "pkcs11" }

// KeyID names the wrapping key, "pkcs11:<label>".
func (s *PKCS11) KeyID() string { return "pkcs11:" + s.label }

// EnsureKey creates the HSM key unless it exists.
func (s *PKCS11) EnsureKey(ctx context.Context) (bool, error) {
	created, err := s.m.EnsureAESKey(ctx, s.label)
	if err != nil {
		return false, fmt.Errorf("seal: ensure key %q: %w", s.label, err)
	}
	return created, nil
}

// Encrypt encrypts plaintext bound to aad with CKM_AES_GCM in the HSM.
func (s *PKCS11) Encrypt(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	ct, err := s.m.EncryptGCM(ctx, s.label, plaintext, aad)
	if err != nil {
		return nil, fmt.Errorf("seal: encrypt with %s: %w", s.KeyID(), err)
	}
	return ct, nil
}

// Decrypt reverses Encrypt; a ciphertext that does not authenticate
// returns an error wrapping ErrDecrypt.
func (s *PKCS11) Decrypt(ctx context.Context, ciphertext, aad []byte) ([]byte, error) {
	pt, err := s.m.DecryptGCM(ctx, s.label, ciphertext, aad)
	if errors.Is(err, hsm.ErrDecrypt) {
		return nil, fmt.Errorf("%w: %s: %w", ErrDecrypt, s.KeyID(), err)
	}
	if err != nil {
		return nil, fmt.Errorf("seal: decrypt with %s: %w", s.KeyID(), err)
	}
	return pt, nil
}
