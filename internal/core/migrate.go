package core

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/secret"
)

// migrateLocked moves a Shamir-sealed vault to the HSM seal, as Vault's
// seal migration does: the operators' threshold of unseal shares proves the
// root key; the HSM then wraps it, every CSP and the keyring are
// seal-wrapped, and a recovery key split like the old shares replaces them.
// The seal config is written last, so an interrupted migration is simply
// run again (the rewrap skips what is already wrapped).
func (c *Core) migrateLocked(ctx context.Context, cfg *SealConfig, root secret.Bytes) ([]secret.Bytes, error) {
	if c.opts.Hooks.BeforeUnseal != nil {
		if err := c.opts.Hooks.BeforeUnseal(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnsealRefused, err)
		}
	}
	// No service may write while CSPs are rewrapped: none has started yet.
	wctx := context.WithoutCancel(ctx)
	w := c.keyringWrapper()
	err := c.opts.Barrier.Unseal(wctx, root, nil)
	if errors.Is(err, barrier.ErrWrapperMismatch) && w != nil {
		err = c.opts.Barrier.Unseal(wctx, root, w) // an earlier migration got this far
	}
	if errors.Is(err, barrier.ErrWrongRootKey) {
		return nil, ErrWrongCombination
	}
	if err != nil {
		return nil, fmt.Errorf("unseal barrier: %w", err)
	}
	fail := func(err error) ([]secret.Bytes, error) {
		c.opts.Barrier.Seal()
		return nil, err
	}
	m, err := c.checkMeta(wctx, w, true)
	if err != nil {
		return fail(err)
	}
	if m.Seal.Type != "shamir" {
		return fail(fmt.Errorf("%w: the vault is already sealed by %s", ErrInvalidRequest, m.Seal.Type))
	}
	created, err := c.opts.AutoSeal.EnsureKey(wctx)
	if err != nil {
		return fail(fmt.Errorf("HSM key: %w", err))
	}
	if err := c.bindHSMKey(wctx, created, root, w); err != nil {
		return fail(err)
	}
	if w != nil && c.opts.Hooks.MigrateCSPs != nil {
		if err := c.opts.Hooks.MigrateCSPs(wctx, c.opts.Barrier); err != nil {
			return fail(fmt.Errorf("seal-wrap CSPs: %w", err))
		}
	}
	wrapped, err := c.opts.AutoSeal.Encrypt(wctx, root, []byte(rootKeyAAD))
	if err != nil {
		return fail(fmt.Errorf("wrap root key with the HSM: %w", err))
	}
	n, t := cfg.SecretShares, cfg.SecretThreshold
	recovery, err := c.newKey()
	if err != nil {
		return fail(err)
	}
	defer recovery.Destroy()
	shares, err := c.split(recovery, n, t)
	if err != nil {
		return fail(err)
	}
	sum := sha256.Sum256(recovery)
	newCfg := SealConfig{Type: c.opts.AutoSeal.Type(), RecoveryShares: n, RecoveryThreshold: t, SealWrap: w != nil}
	if err := c.storeMigratedSeal(wctx, sealMeta{Version: metaVersion, Seal: newCfg, RecoveryHash: sum[:]}, wrapped); err != nil {
		return fail(err)
	}
	c.log.Warn("seal migrated from shamir to the HSM; the old unseal shares are now useless, the new recovery shares authorize operator actions", "seal", newCfg.Type, "recovery_shares", n, "recovery_threshold", t)
	if c.opts.Hooks.Unsealed != nil {
		if err := c.opts.Hooks.Unsealed(ctx, c.opts.Barrier); err != nil {
			c.sealLocked()
			return shares, fmt.Errorf("start services: %w", err)
		}
	}
	return shares, nil
}
