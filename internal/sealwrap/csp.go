package sealwrap

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

// LoadOrCreate returns the CSP stored at path, seal-unwrapped. On first use
// it draws size bytes from rand (the entropy mixer: it fails closed), wraps
// and stores them with compare-and-swap, so that nodes creating the same
// CSP at once agree on one value: the losers read the winner's.
func (s *Sealer) LoadOrCreate(ctx context.Context, kv storage.KV, rand io.Reader, path string, size int) (secret.Bytes, error) {
	env, err := kv.Get(ctx, path)
	if err == nil {
		return s.Unwrap(ctx, path, env)
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("sealwrap: read %s: %w", path, err)
	}
	k := make(secret.Bytes, size)
	defer k.Destroy()
	if _, err := io.ReadFull(rand, k); err != nil {
		return nil, fmt.Errorf("sealwrap: generate %s: %w", path, err)
	}
	if env, err = s.Wrap(ctx, path, k); err != nil {
		return nil, err
	}
	err = kv.CompareAndSwap(ctx, path, nil, env)
	switch {
	case err == nil:
		return k.Clone(), nil
	case errors.Is(err, storage.ErrConflict): // another node created it first
		if env, err = kv.Get(ctx, path); err != nil {
			return nil, fmt.Errorf("sealwrap: read %s: %w", path, err)
		}
		return s.Unwrap(ctx, path, env)
	}
	return nil, fmt.Errorf("sealwrap: store %s: %w", path, err)
}
