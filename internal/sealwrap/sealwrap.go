// Package sealwrap adds a second layer of encryption to critical security
// parameters (wallet keys, signing keys, TOTP secrets, audit keys, the
// barrier keyring): each value is encrypted by the seal (seal.Seal, a key
// held in the HSM) before the barrier encrypts it, so that a barrier
// compromise alone reveals no CSP. Each value is bound to its storage path.
// Seal wrap needs an HSM, as in Vault: with the Shamir seal there is no
// HSM-held key, and values are stored in plain envelopes that record it
// (the barrier alone protects them). The envelope records the seal's key
// id (mechanism and key labels), so Rewrap can move every value to a new
// key or mechanism.
package sealwrap

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/seal"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

var (
	// ErrIntegrity means an envelope is malformed or does not authenticate
	// for its path (tampered, or moved from another path).
	ErrIntegrity = errkind.New(errkind.Integrity, "integrity_error", "sealwrap: integrity check failed")
	// ErrWrongKey means the value was wrapped under a key id this Sealer
	// does not hold.
	ErrWrongKey = errkind.New(errkind.Unavailable, "seal_key_unavailable", "sealwrap: wrapped under a key this node does not hold")
	// ErrNotWrapped means seal wrap is enabled but the value is stored
	// plain: refused (fail closed) until Rewrap has wrapped it.
	ErrNotWrapped = errkind.New(errkind.Unavailable, "rewrap_required", "sealwrap: value is not seal-wrapped (run moonvault operator rewrap)")
)

// Sealer wraps and unwraps CSP values. Safe for concurrent use.
type Sealer struct {
	w        seal.Seal            // current; nil when seal wrap is disabled
	byKeyID  map[string]seal.Seal // current and previous seals
	rewrapPg int
}

// New returns a Sealer that wraps with w (nil: seal wrap disabled, values
// are stored in plain envelopes). previous seals are used only to unwrap
// values not yet re-wrapped. A value under another key id of w's own type
// (an earlier mechanism or key label on the same HSM) is unwrapped by w,
// which reads the mechanism and labels from the ciphertext.
func New(w seal.Seal, previous ...seal.Seal) *Sealer {
	s := &Sealer{w: w, byKeyID: map[string]seal.Seal{}, rewrapPg: 256}
	for _, p := range previous {
		if p != nil {
			s.byKeyID[p.KeyID()] = p
		}
	}
	if w != nil {
		s.byKeyID[w.KeyID()] = w
	}
	return s
}

// Enabled reports whether new values are seal-wrapped.
func (s *Sealer) Enabled() bool { return s.w != nil }

// Wrap returns the envelope to store at path.
func (s *Sealer) Wrap(ctx context.Context, path string, plaintext []byte) ([]byte, error) {
	if path == "" {
		return nil, errors.New("sealwrap: path is empty")
	}
	if s.w == nil {
		h, _ := encodeHeader(false, "")
		return append(h, plaintext...), nil
	}
	h, err := encodeHeader(true, s.w.KeyID())
	if err != nil {
		return nil, err
	}
	ct, err := s.w.Encrypt(ctx, plaintext, aad(h, path))
	if err != nil {
		return nil, fmt.Errorf("sealwrap: wrap %s: %w", path, err)
	}
	return append(h, ct...), nil
}

// Unwrap returns the value stored in envelope at path. A plain envelope is
// refused with ErrNotWrapped while seal wrap is enabled.
func (s *Sealer) Unwrap(ctx context.Context, path string, envelope []byte) (secret.Bytes, error) {
	return s.unwrap(ctx, path, envelope, s.w == nil)
}

func (s *Sealer) unwrap(ctx context.Context, path string, envelope []byte, acceptPlain bool) (secret.Bytes, error) {
	e, err := parse(envelope)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrIntegrity, path, err)
	}
	if !e.wrapped {
		if !acceptPlain {
			return nil, fmt.Errorf("%w: %s", ErrNotWrapped, path)
		}
		return secret.Bytes(e.payload).Clone(), nil
	}
	w, ok := s.byKeyID[e.keyID]
	if !ok && s.w != nil && strings.HasPrefix(e.keyID, s.w.Type()+":") {
		w, ok = s.w, true
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s is wrapped under %q", ErrWrongKey, path, e.keyID)
	}
	pt, err := w.Decrypt(ctx, e.payload, aad(e.header, path))
	if errors.Is(err, seal.ErrDecrypt) {
		return nil, fmt.Errorf("%w: %s", ErrIntegrity, path)
	}
	if err != nil {
		return nil, fmt.Errorf("sealwrap: unwrap %s: %w", path, err)
	}
	return secret.Bytes(pt), nil
}

// Rewrap re-wraps every value under prefixes that is not wrapped with the
// current wrapper: plain values after seal wrap was enabled, values under a
// previous key after a rotation (or wrapped values to plain when seal wrap
// is disabled). Each page is written with one atomic Batch. It returns the
// number of values rewritten. Run it while no other writer changes these
// prefixes (the core holds its state lock), or a concurrent write may be
// overwritten with the older value.
func (s *Sealer) Rewrap(ctx context.Context, kv storage.KV, prefixes []string) (int, error) {
	count := 0
	for _, prefix := range prefixes {
		after := ""
		for {
			keys, err := kv.List(ctx, prefix, after, s.rewrapPg)
			if err != nil {
				return count, fmt.Errorf("sealwrap: rewrap: list %s: %w", prefix, err)
			}
			if len(keys) == 0 {
				break
			}
			ops, err := s.rewrapPage(ctx, kv, keys)
			if err != nil {
				return count, err
			}
			if len(ops) > 0 {
				if err := kv.Batch(ctx, ops); err != nil {
					return count, fmt.Errorf("sealwrap: rewrap: write: %w", err)
				}
				count += len(ops)
			}
			after = keys[len(keys)-1]
		}
	}
	return count, nil
}

func (s *Sealer) rewrapPage(ctx context.Context, kv storage.KV, keys []string) ([]storage.Op, error) {
	var ops []storage.Op
	for _, k := range keys {
		v, err := kv.Get(ctx, k)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("sealwrap: rewrap: get %s: %w", k, err)
		}
		e, err := parse(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrIntegrity, k, err)
		}
		if (s.w == nil && !e.wrapped) || (s.w != nil && e.wrapped && e.keyID == s.w.KeyID()) {
			continue
		}
		pt, err := s.unwrap(ctx, k, v, true)
		if err != nil {
			return nil, fmt.Errorf("sealwrap: rewrap: %w", err)
		}
		nv, err := s.Wrap(ctx, k, pt)
		pt.Destroy()
		if err != nil {
			return nil, fmt.Errorf("sealwrap: rewrap: %w", err)
		}
		ops = append(ops, storage.Op{Key: k, Value: nv})
	}
	return ops, nil
}
