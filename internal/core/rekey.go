package core

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
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
	if c.opts.Barrier.Sealed() {
		return RekeyStatus{}, ErrSealed
	}
	cfg, err := c.sealConfig(ctx)
	if err != nil {
		return RekeyStatus{}, err
	}
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
	cfg, err := c.sealConfig(ctx)
	if err != nil {
		return RekeyStatus{}, err
	}
	return c.rekeyStatusLocked(cfg), nil
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
	if c.opts.Barrier.Sealed() {
		return RekeyStatus{}, ErrSealed
	}
	cfg, err := c.sealConfig(ctx)
	if err != nil {
		return RekeyStatus{}, err
	}
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
	current, err := combine(st.progress)
	if err != nil {
		return RekeyStatus{Required: required(cfg)}, fmt.Errorf("%w; rekey was cancelled", err)
	}
	defer current.Destroy()
	if err := c.verifyKeyLocked(ctx, cfg, current); err != nil {
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
	newCfg := *cfg
	if cfg.Type == "shamir" {
		newCfg.SecretShares, newCfg.SecretThreshold = st.n, st.t
	} else {
		newCfg.RecoveryShares, newCfg.RecoveryThreshold = st.n, st.t
	}
	// Neither write may be abandoned half-way because the client went away.
	wctx := context.WithoutCancel(ctx)
	oldRaw, _ := json.Marshal(cfg)
	raw, _ := json.Marshal(newCfg)
	if cfg.Type == "shamir" {
		// Seal config first, then the keyring under the new root key: if the
		// keyring write fails the old config is put back and the old shares
		// still unseal; the new root key never protects data unless its
		// shares are about to be returned.
		if err := c.opts.Storage.Put(wctx, keySealConfig, raw); err != nil {
			return RekeyStatus{}, fmt.Errorf("store new seal config: %w", err)
		}
		if err := c.opts.Barrier.Rekey(wctx, newKey); err != nil {
			if rerr := c.opts.Storage.Put(wctx, keySealConfig, oldRaw); rerr != nil {
				c.log.Error("rekey failed and the previous seal config could not be restored", "err", rerr)
			}
			return RekeyStatus{}, fmt.Errorf("re-encrypt keyring: %w", err)
		}
	} else {
		sum := sha256.Sum256(newKey)
		if err := c.opts.Storage.Batch(wctx, []storage.Op{{Key: keyRecoveryHash, Value: sum[:]}, {Key: keySealConfig, Value: raw}}); err != nil {
			return RekeyStatus{}, fmt.Errorf("store new recovery key: %w", err)
		}
	}
	c.log.Info("rekey complete", "seal", cfg.Type, "shares", st.n, "threshold", st.t)
	return RekeyStatus{Complete: true, N: st.n, T: st.t, Required: st.t, Keys: keys}, nil
}

// verifyKeyLocked checks a combined key: the root key for Shamir (it must
// open the keyring), the recovery key for pkcs11 (its hash must match).
func (c *Core) verifyKeyLocked(ctx context.Context, cfg *SealConfig, key secret.Bytes) error {
	if cfg.Type == "shamir" {
		if err := c.opts.Barrier.VerifyRoot(ctx, key); err != nil {
			return ErrWrongCombination
		}
		return nil
	}
	want, err := c.opts.Storage.Get(ctx, keyRecoveryHash)
	if err != nil {
		return fmt.Errorf("read recovery key hash: %w", err)
	}
	sum := sha256.Sum256(key)
	if subtle.ConstantTimeCompare(sum[:], want) != 1 {
		return ErrWrongCombination
	}
	return nil
}

// VerifyShares checks that a threshold of shares (unseal shares with
// Shamir, recovery shares with pkcs11) combines to the current key. It
// authorizes operator actions such as generating a new root token.
func (c *Core) VerifyShares(ctx context.Context, shares [][]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opts.Barrier.Sealed() {
		return ErrSealed
	}
	cfg, err := c.sealConfig(ctx)
	if err != nil {
		return err
	}
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
	key, err := combine(uniq)
	if err != nil {
		return err
	}
	defer key.Destroy()
	return c.verifyKeyLocked(ctx, cfg, key)
}
