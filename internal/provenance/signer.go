package provenance

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sync"

	"github.com/moonvault/moonvault/internal/secret"
)

// SeedLoader returns the signing key's seed (an Ed25519 seed, RFC 8032
// §5.1.5), creating it on first use: a seal-wrapped CSP, loaded with
// sealwrap's LoadOrCreate so that nodes agree on one key.
type SeedLoader func(ctx context.Context) (secret.Bytes, error)

// Signer signs records with the vault's provenance key, loaded on first
// use and kept until Clear (on seal). Safe for concurrent use.
type Signer struct {
	load SeedLoader

	mu  sync.Mutex
	key ed25519.PrivateKey
}

// NewSigner returns a Signer over load.
func NewSigner(load SeedLoader) *Signer { return &Signer{load: load} }

func (s *Signer) privateKey(ctx context.Context) (ed25519.PrivateKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key != nil {
		return s.key, nil
	}
	seed, err := s.load(ctx)
	if err != nil {
		return nil, fmt.Errorf("provenance: signing key: %w", err)
	}
	defer seed.Destroy()
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("provenance: signing key seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	s.key = ed25519.NewKeyFromSeed(seed)
	return s.key, nil
}

// Sign signs r.
func (s *Signer) Sign(ctx context.Context, r *Record) (*Signed, error) {
	k, err := s.privateKey(ctx)
	if err != nil {
		return nil, err
	}
	return Sign(k, r)
}

// PublicKey returns the verification key and its id.
func (s *Signer) PublicKey(ctx context.Context) (ed25519.PublicKey, string, error) {
	k, err := s.privateKey(ctx)
	if err != nil {
		return nil, "", err
	}
	pub := k.Public().(ed25519.PublicKey)
	return pub, KeyID(pub), nil
}

// Clear wipes the key from memory (on seal); the next use loads it again.
func (s *Signer) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	secret.Wipe(s.key)
	s.key = nil
}
