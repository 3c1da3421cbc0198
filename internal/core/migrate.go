package core

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

// migrateLocked moves a Shamir-sealed vault to the HSM seal, as Vault's
// seal migration does: the operators' threshold of unseal shares proves the
// root key; every CSP and the keyring are seal-wrapped; a new root key,
// wrapped by the HSM, replaces the old one, and a recovery key split like
// the old shares replaces them. The old unseal shares then combine to a
// key that protects nothing: the keyring is re-encrypted under the new
// root key, and new writes use a key term the old root key never saw.
//
// The keyring under the new root key, the wrapped new root key, the
// recovery hash and the seal config are written in one atomic batch, so an
// interrupted migration leaves the Shamir vault as it was (with CSPs
// already rewrapped) and is simply run again.
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
	if _, err := c.opts.AutoSeal.EnsureKey(wctx); err != nil {
		return fail(fmt.Errorf("HSM key: %w", err))
	}
	if w != nil && c.opts.Hooks.MigrateCSPs != nil {
		if err := c.opts.Hooks.MigrateCSPs(wctx, c.opts.Barrier); err != nil {
			return fail(fmt.Errorf("seal-wrap CSPs: %w", err))
		}
	}
	newRoot, err := c.newKey()
	if err != nil {
		return fail(err)
	}
	defer newRoot.Destroy()
	wrapped, err := c.opts.AutoSeal.Encrypt(wctx, newRoot, []byte(rootKeyAAD))
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
	raw, _ := json.Marshal(newCfg)
	if err := c.opts.Barrier.Rekey(wctx, newRoot,
		storage.Op{Key: keyWrappedRoot, Value: wrapped},
		storage.Op{Key: keyRecoveryHash, Value: sum[:]},
		storage.Op{Key: keySealConfig, Value: raw},
	); err != nil {
		return fail(fmt.Errorf("store migrated seal: %w", err))
	}
	// Records written from now on use a term whose key was never under the
	// old root key. (Failing here loses nothing: the migration is done.)
	if _, err := c.opts.Barrier.Rotate(wctx); err != nil {
		c.log.Warn("seal migrated, but the keyring rotation that follows it failed; run operator rotate", "err", err)
	}
	c.log.Warn("seal migrated from shamir to the HSM under a new root key; the old unseal shares are now useless, the new recovery shares authorize operator actions", "seal", newCfg.Type, "recovery_shares", n, "recovery_threshold", t)
	if c.opts.Hooks.Unsealed != nil {
		if err := c.opts.Hooks.Unsealed(ctx, c.opts.Barrier); err != nil {
			c.sealLocked()
			return shares, fmt.Errorf("start services: %w", err)
		}
	}
	return shares, nil
}

// RewrapRootKey re-encrypts the HSM-wrapped root key with the seal's
// current mechanism and key (operator rewrap, after hsm_mechanism or
// hsm_key_label changed): the stored ciphertext records which mechanism
// and key made it, so the seal still opens the old one. It is a no-op
// for the Shamir seal.
func (c *Core) RewrapRootKey(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opts.Barrier.Sealed() {
		return ErrSealed
	}
	if c.opts.AutoSeal == nil {
		return nil
	}
	cfg, err := c.sealConfig(ctx)
	if err != nil {
		return err
	}
	if cfg.Type == "shamir" {
		return nil
	}
	old, err := c.opts.Storage.Get(ctx, keyWrappedRoot)
	if err != nil {
		return fmt.Errorf("read wrapped root key: %w", err)
	}
	pt, err := c.opts.AutoSeal.Decrypt(ctx, old, []byte(rootKeyAAD))
	if err != nil {
		return fmt.Errorf("unwrap root key with the HSM: %w", err)
	}
	root := secret.Bytes(pt)
	defer root.Destroy()
	if err := c.opts.Barrier.VerifyRoot(ctx, root); err != nil {
		return fmt.Errorf("the stored root key is not the one in use: %w", err)
	}
	wrapped, err := c.opts.AutoSeal.Encrypt(ctx, root, []byte(rootKeyAAD))
	if err != nil {
		return fmt.Errorf("wrap root key with the HSM: %w", err)
	}
	if err := c.opts.Storage.Put(context.WithoutCancel(ctx), keyWrappedRoot, wrapped); err != nil {
		return fmt.Errorf("store wrapped root key: %w", err)
	}
	c.log.Info("root key rewrapped", "key_id", c.opts.AutoSeal.KeyID())
	return nil
}
