package core

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

// Storage is untrusted (threat model T4): nothing read outside the barrier
// is trusted unauthenticated. The core's physical records:
//
//   - core/keyring: the barrier keyring, AES-256-GCM under the root key
//     (and seal-wrapped by the HSM). It also carries sealMeta, the
//     authoritative seal configuration and recovery-key hash, so they are
//     authenticated by the root key and change atomically with the keyring
//     (compare-and-swap).
//   - core/root-key: the root key, AES-GCM on the HSM with fixed associated
//     data; only the HSM can make or open it.
//   - core/seal-config: a copy of the seal configuration in the clear, a
//     hint for what must be known before the root key is (the seal type
//     and the Shamir threshold). It never authorizes anything: after
//     unsealing it is compared with sealMeta, and a difference is reported
//     and repaired. Altering it can only keep the vault sealed.
//   - core/keyring-usage: the barrier's encryption count, a barrier record.
//   - core/recovery-hash: written by earlier builds; no longer read.
const (
	metaVersion       = 1
	keyLegacyRecovery = "core/recovery-hash"
)

// sealMeta lives inside the keyring (barrier.Meta).
type sealMeta struct {
	Version int        `json:"version"`
	Seal    SealConfig `json:"seal"`
	// RecoveryHash is SHA-256 of the recovery key (pkcs11).
	RecoveryHash []byte `json:"recovery_hash,omitempty"`
}

// ErrSealTampered: the seal configuration or another core record failed
// its authentication, or disagrees with the authenticated copy in a way
// that cannot be repaired: storage was altered.
var ErrSealTampered = errkind.New(errkind.Integrity, "integrity_error", "core: the stored seal configuration failed its integrity check")

func (m *sealMeta) encode() []byte {
	raw, _ := json.Marshal(m) // cannot fail: plain fields
	return raw
}

func decodeMeta(raw []byte) (*sealMeta, error) {
	if raw == nil {
		return nil, fmt.Errorf("%w: the keyring carries no seal configuration (written by an earlier development build: initialise the vault again)", ErrSealTampered)
	}
	var m sealMeta
	if err := json.Unmarshal(raw, &m); err != nil || m.Version != metaVersion {
		return nil, fmt.Errorf("%w: unreadable seal configuration in the keyring", ErrSealTampered)
	}
	return &m, nil
}

// meta returns the authenticated seal configuration; the barrier must be
// unsealed.
func (c *Core) meta() (*sealMeta, error) {
	if c.opts.Barrier.Sealed() {
		return nil, ErrSealed
	}
	return decodeMeta(c.opts.Barrier.Meta())
}

// hintJSON is what core/seal-config holds.
func hintJSON(cfg SealConfig) []byte {
	raw, _ := json.Marshal(cfg) // cannot fail: plain fields
	return raw
}

// repairHint compares core/seal-config with the authenticated copy and
// rewrites it when they differ (storage altered it, or a crash came
// between the keyring write and the hint write).
func (c *Core) repairHint(ctx context.Context, m *sealMeta) {
	want := hintJSON(m.Seal)
	got, err := c.opts.Storage.Get(ctx, keySealConfig)
	if err == nil && bytes.Equal(got, want) {
		return
	}
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		c.log.Warn("could not read core/seal-config to compare it with the keyring", "err", err)
		return
	}
	c.log.Error("core/seal-config differs from the authenticated seal configuration in the keyring (storage was altered, or a write was interrupted); rewriting it from the keyring",
		"stored", clipForLog(got), "stored_bytes", len(got), "authenticated", string(want))
	if err := c.opts.Storage.Put(ctx, keySealConfig, want); err != nil {
		c.log.Error("could not repair core/seal-config", "err", err)
	}
}

// maxLoggedHint bounds how much of an unauthenticated record is logged.
const maxLoggedHint = 256

// clipForLog quotes (Go syntax: control and non-printable characters
// escaped) at most maxLoggedHint bytes of b, which storage, and so an
// attacker, controls: it must not flood the log or forge lines in it.
func clipForLog(b []byte) string {
	if len(b) <= maxLoggedHint {
		return strconv.QuoteToASCII(string(b))
	}
	return strconv.QuoteToASCII(string(b[:maxLoggedHint])) + "..."
}

// checkMeta verifies, right after the barrier opened, that the
// authenticated seal configuration fits this node; otherwise the barrier is
// sealed again.
func (c *Core) checkMeta(ctx context.Context, w barrier.Wrapper, migrating bool) (*sealMeta, error) {
	m, err := c.meta()
	if err != nil {
		return nil, err
	}
	switch {
	case m.Seal.Type == "shamir" && c.opts.AutoSeal != nil && !migrating:
		return nil, ErrMigrationRequired
	case m.Seal.Type != "shamir" && (c.opts.AutoSeal == nil || m.Seal.Type != c.opts.AutoSeal.Type()):
		return nil, fmt.Errorf("%w: the vault is sealed by %q and this node is configured for %q", ErrUnsealRefused, m.Seal.Type, c.SealType())
	case !migrating && m.Seal.SealWrap != (w != nil):
		return nil, fmt.Errorf("%w: the vault was initialised with seal_wrap=%t; the setting cannot change afterwards", ErrUnsealRefused, m.Seal.SealWrap)
	}
	if !migrating {
		c.repairHint(ctx, m)
	}
	return m, nil
}

// verifyRecovery checks a combined recovery key against the authenticated
// hash.
func verifyRecovery(m *sealMeta, key secret.Bytes) error {
	sum := sha256.Sum256(key)
	if len(m.RecoveryHash) != sha256.Size || subtle.ConstantTimeCompare(sum[:], m.RecoveryHash) != 1 {
		return ErrWrongCombination
	}
	return nil
}

// checkHSMKeyBinding runs when a seal migration finds its HSM key already
// there. A key that already protects a root key may only be reused by the
// vault whose root key it protects: otherwise a storage attacker could
// replace a HSM-sealed vault by a Shamir vault of its own (keyring under a
// root key it knows) and have the node "migrate" to it. The stored
// core/root-key must therefore unwrap, under the HSM, to the root key the
// shares gave or to a key that opens this keyring.
func (c *Core) checkHSMKeyBinding(ctx context.Context, root secret.Bytes, w barrier.Wrapper) error {
	refuse := fmt.Errorf("%w: the HSM key already exists but protects no root key of this vault; a migration needs a key it creates itself (set hsm_key_label to a new label)", ErrUnsealRefused)
	wrapped, err := c.opts.Storage.Get(ctx, keyWrappedRoot)
	if errors.Is(err, storage.ErrNotFound) {
		return refuse
	}
	if err != nil {
		return fmt.Errorf("read wrapped root key: %w", err)
	}
	pt, err := c.opts.AutoSeal.Decrypt(ctx, wrapped, []byte(rootKeyAAD))
	if err != nil {
		c.log.Error("seal migration refused: core/root-key does not open with the HSM key", "err", err)
		return refuse
	}
	hsmRoot := secret.Bytes(pt)
	defer hsmRoot.Destroy()
	if hsmRoot.Equal(root) {
		return nil
	}
	if c.opts.Barrier.CheckRoot(ctx, hsmRoot, nil) == nil || (w != nil && c.opts.Barrier.CheckRoot(ctx, hsmRoot, w) == nil) {
		return nil
	}
	c.log.Error("seal migration refused: the HSM key protects another root key than this vault's (storage replaced?)")
	return refuse
}

// bindHSMKey ties the HSM key to this vault at the start of a migration: a
// key the migration just created gets the wrapped root key at once (so
// that an interrupted migration, run again, finds it), and a key that was
// already there must pass checkHSMKeyBinding.
func (c *Core) bindHSMKey(ctx context.Context, created bool, root secret.Bytes, w barrier.Wrapper) error {
	if !created {
		return c.checkHSMKeyBinding(ctx, root, w)
	}
	wrapped, err := c.opts.AutoSeal.Encrypt(ctx, root, []byte(rootKeyAAD))
	if err != nil {
		return fmt.Errorf("wrap root key with the HSM: %w", err)
	}
	if err := c.opts.Storage.Put(ctx, keyWrappedRoot, wrapped); err != nil {
		return fmt.Errorf("store wrapped root key: %w", err)
	}
	return nil
}
