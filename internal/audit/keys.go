package audit

import (
	"context"
	"crypto/ed25519"
	"fmt"

	"github.com/moonvault/moonvault/internal/secret"
)

// CSPPrefix holds the audit keys: critical security parameters, kept behind
// the barrier and seal-wrapped.
const CSPPrefix = "audit/keys/"

const (
	hmacKeyPath    = CSPPrefix + "hmac"
	signingKeyPath = CSPPrefix + "signing"
)

// LoadOrCreate returns the CSP at path, creating size random bytes on first
// use (sealwrap.Sealer.LoadOrCreate over the barrier).
type LoadOrCreate func(ctx context.Context, path string, size int) (secret.Bytes, error)

// LoadKeys loads the audit HMAC key and checkpoint signing key (creating
// them on first unseal) and installs them. Call it once the vault is
// unsealed; ClearKeys wipes them on seal.
func (l *Log) LoadKeys(ctx context.Context, load LoadOrCreate) error {
	hk, err := load(ctx, hmacKeyPath, 32)
	if err != nil {
		return fmt.Errorf("audit: hmac key: %w", err)
	}
	defer hk.Destroy()
	seed, err := load(ctx, signingKeyPath, ed25519.SeedSize)
	if err != nil {
		return fmt.Errorf("audit: signing key: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	seed.Destroy()
	defer secret.Wipe(priv)
	pub := priv.Public().(ed25519.PublicKey)
	l.SetKeys(hk, priv, fmt.Sprintf("audit-%x", pub[:8]))
	return nil
}
