package wallet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/moonvault/moonvault/internal/entropy"
	"github.com/moonvault/moonvault/internal/provenance"
	"github.com/moonvault/moonvault/internal/storage"
)

// drawReader is implemented by the entropy mixer: a read that says what
// it drew.
type drawReader interface {
	ReadDraw(p []byte) (entropy.Draw, error)
}

// drawRecorder reads CSP randomness from the service's source and sums
// what the draws took, for the provenance record.
type drawRecorder struct {
	s     *Service
	draw  entropy.Draw
	known bool
}

func (r *drawRecorder) Read(p []byte) (int, error) {
	if dr, ok := r.s.rand.(drawReader); ok {
		d, err := dr.ReadDraw(p)
		if err != nil {
			return 0, err
		}
		hsm := r.draw.HSMBytes + d.HSMBytes
		r.draw, r.draw.HSMBytes, r.known = d, hsm, true
		return len(p), nil
	}
	return io.ReadFull(r.s.rand, p)
}

// entropy is the record's statement of the draws (mode "unknown" for a
// source that cannot say, which only tests use).
func (r *drawRecorder) entropy(drawnFor string) provenance.Entropy {
	if !r.known {
		return provenance.Entropy{Mode: "unknown", Health: "unknown", DrawnFor: drawnFor}
	}
	return provenance.Entropy{
		Mode: r.draw.Mode, Source: r.draw.Source, HSMBytes: r.draw.HSMBytes,
		Health: r.draw.Health, HealthFailures: r.draw.HealthFailures, DrawnFor: drawnFor,
	}
}

// signProvenance makes and signs the record of a new account, as stored.
func (s *Service) signProvenance(ctx context.Context, a *Account, km *keyMaterial, envelope []byte) ([]byte, error) {
	r := km.prov
	r.Version = provenance.Version
	r.Account = a.ID().String()
	r.Chain, r.Network, r.AddressType, r.KeyType = a.Chain, a.Network, a.AddressType, string(a.KeyType)
	r.Address, r.PublicKey = a.Address, hexutil.Encode(a.PublicKey)
	r.CreatedAt = a.CreatedAt
	if d, ok := s.sealer.(sealDescriber); ok {
		wrapped, mech, err := d.Describe(envelope)
		if err != nil {
			return nil, fmt.Errorf("wallet: describe seal wrap: %w", err)
		}
		r.SealWrap = provenance.SealWrap{Wrapped: wrapped, Mechanism: mech}
	}
	signed, err := s.prov.Sign(ctx, &r)
	if err != nil {
		return nil, fmt.Errorf("wallet: sign provenance: %w", err)
	}
	b, err := json.Marshal(signed)
	if err != nil {
		return nil, fmt.Errorf("wallet: encode provenance: %w", err)
	}
	return b, nil
}

// Provenance returns the signed provenance record of owner's account
// name, as written when its key was made.
func (s *Service) Provenance(ctx context.Context, owner, name string) (*provenance.Signed, error) {
	if _, err := s.getRecord(ctx, owner, name); err != nil {
		return nil, err
	}
	b, err := s.kv.Get(ctx, provenanceKey(owner, name))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrNoProvenance
	}
	if err != nil {
		return nil, fmt.Errorf("wallet: read provenance: %w", err)
	}
	var signed provenance.Signed
	if err := json.Unmarshal(b, &signed); err != nil {
		return nil, fmt.Errorf("wallet: decode provenance of %s/%s: %w", owner, name, err)
	}
	return &signed, nil
}
