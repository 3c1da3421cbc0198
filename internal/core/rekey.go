package core

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"

	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

// rekeyState is a rekey in progress: the new split and the shares of the
// current key presented so far.
type rekeyState struct {
	nonce    string
	n, t     int
	progress [][]byte
}

// RekeyStatus reports a rekey in progress, and the new shares once done.
type RekeyStatus struct {
	Started  bool           `json:"started"`
	Nonce    string         `json:"nonce,omitempty"`
	N        int            `json:"n,omitempty"`
	T        int            `json:"t,omitempty"`
	Progress int            `json:"progress"`
	Required int            `json:"required"`
	Complete bool           `json:"complete"`
	Keys     []secret.Bytes `json:"-"`
}

// RekeyInit starts a rekey to a new split: of the unseal key (Shamir, which
// generates a new root key so that old shares stop working) or of the
// recovery key (pkcs11).
func (c *Core) RekeyInit(ctx context.Context, n, t int) (RekeyStatus, error) {
	if err := validSplit(n, t, "key"); err != nil {
		return RekeyStatus{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.meta()
	if err != nil {
		return RekeyStatus{}, err
	}
	cfg := &m.Seal
	c.cancelRekeyLocked()
	nb := make([]byte, 16)
	if _, err := rand.Read(nb); err != nil {
		return RekeyStatus{}, fmt.Errorf("rekey nonce: %w", err)
	}
	c.rekey = &rekeyState{nonce: hex.EncodeToString(nb), n: n, t: t}
	return c.rekeyStatusLocked(cfg), nil
}

func required(cfg *SealConfig) int {
	if cfg.Type == "shamir" {
		return cfg.SecretThreshold
	}
	return cfg.RecoveryThreshold
}

func (c *Core) rekeyStatusLocked(cfg *SealConfig) RekeyStatus {
	if c.rekey == nil {
		return RekeyStatus{Required: required(cfg)}
	}
	return RekeyStatus{Started: true, Nonce: c.rekey.nonce, N: c.rekey.n, T: c.rekey.t, Progress: len(c.rekey.progress), Required: required(cfg)}
}

// RekeyStatusNow reports the rekey in progress, if any.
func (c *Core) RekeyStatusNow(ctx context.Context) (RekeyStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.meta()
	if err != nil {
		return RekeyStatus{}, err
	}
	return c.rekeyStatusLocked(&m.Seal), nil
}

// RekeyCancel abandons a rekey in progress.
func (c *Core) RekeyCancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancelRekeyLocked()
}

func (c *Core) cancelRekeyLocked() {
	if c.rekey == nil {
		return
	}
	for _, p := range c.rekey.progress {
		secret.Wipe(p)
	}
	c.rekey = nil
}

// RekeyUpdate presents one current share. When the threshold is reached the
// key is verified and replaced, and the new shares are returned once.
func (c *Core) RekeyUpdate(ctx context.Context, nonce string, share []byte) (RekeyStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.meta()
	if err != nil {
		return RekeyStatus{}, err
	}
	cfg := &m.Seal
	if c.rekey == nil {
		return RekeyStatus{}, ErrNoRekey
	}
	if subtle.ConstantTimeCompare([]byte(nonce), []byte(c.rekey.nonce)) != 1 {
		return RekeyStatus{}, ErrNonceMismatch
	}
	if err := ParseShare(share); err != nil {
		return c.rekeyStatusLocked(cfg), err
	}
	for _, p := range c.rekey.progress {
		if subtle.ConstantTimeCompare(p, share) == 1 {
			return c.rekeyStatusLocked(cfg), nil
		}
	}
	c.rekey.progress = append(c.rekey.progress, secret.Bytes(share).Clone())
	if len(c.rekey.progress) < required(cfg) {
		return c.rekeyStatusLocked(cfg), nil
	}
	st := c.rekey
	c.rekey = nil
	defer func() {
		for _, p := range st.progress {
			secret.Wipe(p)
		}
	}()
	current, err := combineKey(st.progress)
	if err != nil {
		return RekeyStatus{Required: required(cfg)}, fmt.Errorf("%w; rekey was cancelled", err)
	}
	defer current.Destroy()
	if err := c.verifyKeyLocked(ctx, m, current); err != nil {
		return RekeyStatus{Required: required(cfg)}, err
	}
	newKey, err := c.newKey()
	if err != nil {
		return RekeyStatus{}, err
	}
	defer newKey.Destroy()
	keys, err := c.split(newKey, st.n, st.t)
	if err != nil {
		return RekeyStatus{}, err
	}
	next := *m
	if cfg.Type == "shamir" {
		next.Seal.SecretShares, next.Seal.SecretThreshold = st.n, st.t
	} else {
		next.Seal.RecoveryShares, next.Seal.RecoveryThreshold = st.n, st.t
		sum := sha256.Sum256(newKey)
		next.RecoveryHash = sum[:]
	}
	// Neither write may be abandoned half-way because the client went away.
	wctx := context.WithoutCancel(ctx)
	if cfg.Type == "shamir" {
		// The keyring under the new root key, with the new split in its
		// authenticated metadata, in one compare-and-swap: the old shares
		// stop working exactly when the new ones are about to be returned.
		if err := c.opts.Barrier.RekeyMeta(wctx, newKey, next.encode()); err != nil {
			return RekeyStatus{}, fmt.Errorf("re-encrypt keyring: %w", err)
		}
	} else {
		// The recovery key's hash and split, changed only if no other node
		// rekeyed meanwhile (compare-and-swap on the keyring).
		if err := c.opts.Barrier.UpdateMeta(wctx, func(cur []byte) ([]byte, error) {
			if !bytes.Equal(cur, m.encode()) {
				return nil, fmt.Errorf("%w: the seal configuration changed on another node during the rekey; start again", storage.ErrConflict)
			}
			return next.encode(), nil
		}); err != nil {
			return RekeyStatus{}, fmt.Errorf("store new recovery key: %w", err)
		}
	}
	// The hint last: if this write fails, the next unseal repairs it.
	if err := c.opts.Storage.Put(wctx, keySealConfig, hintJSON(next.Seal)); err != nil {
		c.log.Error("rekey done, but core/seal-config could not be updated; it is repaired at the next unseal", "err", err)
	}
	if err := c.opts.Storage.Delete(wctx, keyLegacyRecovery); err != nil {
		c.log.Warn("could not delete the obsolete core/recovery-hash", "err", err)
	}
	c.log.Info("rekey complete", "seal", cfg.Type, "shares", st.n, "threshold", st.t)
	return RekeyStatus{Complete: true, N: st.n, T: st.t, Required: st.t, Keys: keys}, nil
}

// verifyKeyLocked checks a combined key: the root key for Shamir (it must
// be the one the barrier was unsealed with), the recovery key for pkcs11
// (its hash must match the authenticated one in the keyring; never a
// record storage could write).
func (c *Core) verifyKeyLocked(ctx context.Context, m *sealMeta, key secret.Bytes) error {
	if m.Seal.Type == "shamir" {
		if err := c.opts.Barrier.VerifyRoot(ctx, key); err != nil {
			return ErrWrongCombination
		}
		return nil
	}
	return verifyRecovery(m, key)
}

// VerifyShares checks that a threshold of shares (unseal shares with
// Shamir, recovery shares with pkcs11) combines to the current key. It
// authorizes operator actions such as generating a new root token.
func (c *Core) VerifyShares(ctx context.Context, shares [][]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.meta()
	if err != nil {
		return err
	}
	cfg := &m.Seal
	seen := map[string]bool{}
	var uniq [][]byte
	for _, s := range shares {
		if err := ParseShare(s); err != nil {
			return err
		}
		if !seen[string(s)] {
			seen[string(s)] = true
			uniq = append(uniq, s)
		}
	}
	if len(uniq) < required(cfg) {
		return fmt.Errorf("%w: %d distinct shares given, %d required", ErrInvalidShare, len(uniq), required(cfg))
	}
	key, err := combineKey(uniq)
	if err != nil {
		return err
	}
	defer key.Destroy()
	return c.verifyKeyLocked(ctx, m, key)
}
