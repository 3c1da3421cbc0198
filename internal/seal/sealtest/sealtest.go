// Package sealtest gives tests a software seal.Seal: AES-256-GCM under a
// key held in memory. It stands in for the HSM where a test is about the
// layers above the seal; tests of the seal itself use real tokens
// (hsmtest).
package sealtest

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"sync/atomic"

	"github.com/moonvault/moonvault/internal/seal"
)

// Software is a seal.Seal with an in-memory AES-256 key. Its ciphertext is
// nonce || ciphertext || tag (cipher.NewGCMWithRandomNonce, so it also
// runs under GODEBUG=fips140=only).
type Software struct {
	id   string
	aead cipher.AEAD
	// Fail, when set, is returned by Encrypt and Decrypt (fault injection).
	Fail atomic.Pointer[error]
}

var _ seal.Seal = (*Software)(nil)

// New returns a seal with a random key and key id "test:<name>".
func New(name string) *Software {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand never fails (Go 1.24+)
	return NewWithKey(name, key)
}

// NewWithKey returns a seal with key (32 bytes): two seals with the same
// key and name decrypt each other's ciphertexts.
func NewWithKey(name string, key []byte) *Software {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic(fmt.Sprintf("sealtest: %v", err))
	}
	g, err := cipher.NewGCMWithRandomNonce(b)
	if err != nil {
		panic(fmt.Sprintf("sealtest: %v", err))
	}
	return &Software{id: "test:" + name, aead: g}
}

// Type is "test".
func (s *Software) Type() string { return "test" }

// KeyID is "test:<name>".
func (s *Software) KeyID() string { return s.id }

// EnsureKey does nothing: the key exists.
func (s *Software) EnsureKey(context.Context) (bool, error) { return false, nil }

func (s *Software) failure() error {
	if p := s.Fail.Load(); p != nil {
		return *p
	}
	return nil
}

// Encrypt binds plaintext to aad.
func (s *Software) Encrypt(_ context.Context, plaintext, aad []byte) ([]byte, error) {
	if err := s.failure(); err != nil {
		return nil, err
	}
	return s.aead.Seal(nil, nil, plaintext, aad), nil // #nosec G407 -- NewGCMWithRandomNonce draws the nonce; it must be nil
}

// Decrypt reverses Encrypt; a ciphertext that does not authenticate wraps
// seal.ErrDecrypt.
func (s *Software) Decrypt(_ context.Context, ciphertext, aad []byte) ([]byte, error) {
	if err := s.failure(); err != nil {
		return nil, err
	}
	pt, err := s.aead.Open(nil, nil, ciphertext, aad)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", seal.ErrDecrypt, s.id)
	}
	return pt, nil
}
