package seal

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	"github.com/moonvault/moonvault/internal/errkind"

	"github.com/moonvault/moonvault/internal/secret"
)

const (
	softVersion  = 0x01
	softNonceLen = 12
	// SoftwareOverhead is the size Software.Encrypt adds to a plaintext.
	SoftwareOverhead = 1 + softNonceLen + 16
)

// ErrDestroyed is returned after Destroy.
var ErrDestroyed = errkind.New(errkind.Sealed, "sealed", "seal: key destroyed")

// Software is AES-256-GCM keyed by a secret held in memory: the seal-wrap
// key in Shamir mode, which the core derives from the root key with HKDF.
// No HSM. Output: version || nonce(12) || ciphertext || tag(16); the
// version byte is authenticated with the caller's AAD. Nonces are random
// (SP 800-38D §8.2.2), so one key may encrypt at most 2^32 values.
type Software struct {
	mu    sync.RWMutex
	key   secret.Bytes
	keyID string
}

// NewSoftware copies key (32 bytes); the caller may destroy its copy.
func NewSoftware(key secret.Bytes, keyID string) (*Software, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("seal: key must be 32 bytes, got %d", len(key))
	}
	if keyID == "" {
		return nil, errors.New("seal: key id is empty")
	}
	return &Software{key: key.Clone(), keyID: keyID}, nil
}

// KeyID names the key.
func (s *Software) KeyID() string { return s.keyID }

// Destroy zeroizes the key; every later call fails with ErrDestroyed.
func (s *Software) Destroy() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.key.Destroy()
	s.key = nil
}

// aead builds the cipher per call, so that no expanded key schedule
// outlives Destroy.
func (s *Software) aead() (cipher.AEAD, error) {
	if s.key == nil {
		return nil, ErrDestroyed
	}
	b, err := aes.NewCipher(s.key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// Encrypt encrypts plaintext bound to aad.
func (s *Software) Encrypt(_ context.Context, plaintext, aad []byte) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	g, err := s.aead()
	if err != nil {
		return nil, fmt.Errorf("seal: encrypt with %s: %w", s.keyID, err)
	}
	out := make([]byte, 1+softNonceLen, SoftwareOverhead+len(plaintext))
	out[0] = softVersion
	_, _ = rand.Read(out[1:]) // crypto/rand never fails (Go 1.24+)
	return g.Seal(out, out[1:], plaintext, softAAD(aad)), nil
}

// Decrypt reverses Encrypt; failures wrap ErrDecrypt.
func (s *Software) Decrypt(_ context.Context, ciphertext, aad []byte) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	g, err := s.aead()
	if err != nil {
		return nil, fmt.Errorf("seal: decrypt with %s: %w", s.keyID, err)
	}
	if len(ciphertext) < SoftwareOverhead || ciphertext[0] != softVersion {
		return nil, fmt.Errorf("%w: %s: malformed ciphertext", ErrDecrypt, s.keyID)
	}
	pt, err := g.Open(nil, ciphertext[1:1+softNonceLen], ciphertext[1+softNonceLen:], softAAD(aad))
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrDecrypt, s.keyID)
	}
	return pt, nil
}

func softAAD(aad []byte) []byte {
	b := make([]byte, 0, 1+len(aad))
	return append(append(b, softVersion), aad...)
}
