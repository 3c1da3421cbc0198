package core

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

// keyNextRoot holds, during a seal migration, the HSM-wrapped new root key
// before the keyring switches to it, so that a crash between the two
// writes loses nothing (resumeMigrationLocked).
const keyNextRoot = "core/root-key-next"

// migrateLocked moves a Shamir-sealed vault to the HSM seal, as Vault's
// seal migration does: the operators' threshold of unseal shares proves the
// root key; every CSP and the keyring are seal-wrapped; a new root key,
// wrapped by the HSM, replaces the old one, and a recovery key split like
// the old shares replaces them. The old unseal shares then combine to a
// key that protects nothing (issue 13 item 10): the keyring is
// re-encrypted under the new root key, and new writes use a key term the
// old root key never saw.
//
// Order, so that an interruption loses nothing: the wrapped new root key
// is stored at core/root-key-next; then one compare-and-swap switches the
// keyring to the new root key and the authenticated seal configuration to
// pkcs11; then core/root-key, the hint and core/root-key-next are updated
// in one batch. Interrupted before the switch, the Shamir vault is as it
// was and the migration is run again (the rewrap skips what is already
// wrapped); after it, auto-unseal finishes the job from
// core/root-key-next.
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
	if err := c.opts.Storage.Put(wctx, keyNextRoot, wrapped); err != nil {
		return fail(fmt.Errorf("store the new wrapped root key: %w", err))
	}
	meta := sealMeta{Version: metaVersion, Seal: newCfg, RecoveryHash: sum[:]}
	if err := c.opts.Barrier.RekeyMeta(wctx, newRoot, meta.encode()); err != nil {
		return fail(fmt.Errorf("re-encrypt the keyring under the new root key: %w", err))
	}
	// From here the migration is done in the keyring: a failure below is
	// finished by the next auto-unseal, and the recovery shares (whose hash
	// the keyring now holds) must reach the operators.
	if err := c.finishMigration(wctx, newCfg, wrapped); err != nil {
		c.log.Error("seal migrated, but core/root-key could not be updated; the next auto-unseal finishes it", "err", err)
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

// finishMigration stores the wrapped new root key as core/root-key with the
// hint, and drops core/root-key-next and the legacy recovery hash.
func (c *Core) finishMigration(ctx context.Context, cfg SealConfig, wrapped []byte) error {
	return c.opts.Storage.Batch(ctx, []storage.Op{
		{Key: keyWrappedRoot, Value: wrapped},
		{Key: keySealConfig, Value: hintJSON(cfg)},
		{Key: keyLegacyRecovery, Delete: true},
		{Key: keyNextRoot, Delete: true},
	})
}

// resumeMigrationLocked runs when core/root-key does not open the keyring
// (orig): if a seal migration stopped after switching the keyring to its new
// root key, core/root-key-next holds that key. It is used only if the HSM
// opens it and the keyring it opens says, authenticated, that the vault is
// sealed by this node's HSM; then the migration's last write is done.
// Otherwise orig is returned.
func (c *Core) resumeMigrationLocked(ctx context.Context, orig error) error {
	next, err := c.opts.Storage.Get(ctx, keyNextRoot)
	if errors.Is(err, storage.ErrNotFound) {
		return orig
	}
	if err != nil {
		return fmt.Errorf("%w (read %s: %w)", orig, keyNextRoot, err)
	}
	pt, err := c.opts.AutoSeal.Decrypt(ctx, next, []byte(rootKeyAAD))
	if err != nil {
		return fmt.Errorf("%w (unwrap %s: %w)", orig, keyNextRoot, err)
	}
	root := secret.Bytes(pt)
	defer root.Destroy()
	if err := c.unsealWith(ctx, root); err != nil {
		return err
	}
	m, err := c.meta()
	if err != nil {
		c.sealLocked()
		return err
	}
	if err := c.finishMigration(context.WithoutCancel(ctx), m.Seal, next); err != nil {
		c.log.Error("could not finish the interrupted seal migration; the next auto-unseal tries again", "err", err)
	} else {
		c.log.Warn("finished an interrupted seal migration: core/root-key now holds the new root key")
	}
	return nil
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
	m, err := c.meta()
	if err != nil {
		return err
	}
	if m.Seal.Type == "shamir" {
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
