// Package core owns the vault's lifecycle: initialisation, the Shamir and
// PKCS#11 seals that protect the root key, unsealing (by operators or
// automatically), sealing, keyring rotation and rekeying. It sits between
// the physical storage and the barrier, and starts and stops the services
// that need an unsealed barrier through hooks.
package core

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"

	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/fips"
	"github.com/moonvault/moonvault/internal/seal"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/shamir"
	"github.com/moonvault/moonvault/internal/storage"
)

// Physical keys owned by the core, outside the barrier because they are
// needed before it is unsealed; none of them reveals a secret, and none is
// trusted unauthenticated (see meta.go).
const (
	keySealConfig  = "core/seal-config" // unauthenticated hint; see sealMeta
	keyWrappedRoot = "core/root-key"    // root key encrypted by the HSM
	rootKeyAAD     = "moonvault root key v1"
	rootKeySize    = 32
)

// NotifyPrefixes are the core's keys, which every node of a cluster must
// see change at once (seal configuration, keyring).
func NotifyPrefixes() []string { return []string{"core/"} }

// Errors mapped by the HTTP layer.
var (
	ErrNotInitialized     = errkind.New(errkind.Sealed, "not_initialized", "vault is not initialized")
	ErrAlreadyInitialized = errkind.New(errkind.Invalid, "already_initialized", "vault is already initialized")
	ErrSealed             = errkind.New(errkind.Sealed, "sealed", "vault is sealed")
	ErrInvalidShare       = errkind.New(errkind.Invalid, "invalid_share", "invalid key share")
	ErrWrongCombination   = errkind.New(errkind.Invalid, "wrong_shares", "the key shares do not combine to the root key; unseal progress was reset")
	ErrInvalidRequest     = errkind.New(errkind.Invalid, "invalid_request", "invalid request")
	ErrAutoSeal           = errkind.New(errkind.Invalid, "invalid_request", "operation not available with an auto seal")
	ErrNoRekey            = errkind.New(errkind.Invalid, "invalid_request", "no rekey in progress")
	ErrNonceMismatch      = errkind.New(errkind.Invalid, "invalid_request", "rekey nonce does not match the rekey in progress")
	ErrUnsealRefused      = errkind.New(errkind.Sealed, "unseal_refused", "unseal refused by policy")
	ErrMigrationRequired  = errkind.New(errkind.Invalid, "migration_required", "seal migration required: the configuration names an HSM but the vault uses the Shamir seal; unseal with migrate (moonvault operator unseal -migrate KEY) to move the root key to the HSM")
)

// AutoSeal protects the root key with a key held by an HSM: the one seal
// interface, seal.Seal.
type AutoSeal = seal.Seal

// SealConfig says how the root key is protected. Its authoritative copy is
// inside the keyring (sealMeta); core/seal-config holds a copy in the clear
// as a hint for what must be known before unsealing.
type SealConfig struct {
	Type              string `json:"type"` // "shamir" | "pkcs11"
	SecretShares      int    `json:"secret_shares,omitempty"`
	SecretThreshold   int    `json:"secret_threshold,omitempty"`
	RecoveryShares    int    `json:"recovery_shares,omitempty"`
	RecoveryThreshold int    `json:"recovery_threshold,omitempty"`
	// SealWrap records whether CSPs and the keyring are seal-wrapped; it is
	// fixed at init (see unsealWith).
	SealWrap bool `json:"seal_wrap,omitempty"`
}

// Hooks start and stop what runs while the vault is unsealed.
type Hooks struct {
	// Unsealed runs after the barrier is unsealed; an error seals again.
	Unsealed func(ctx context.Context, b *barrier.Barrier) error
	// Sealing runs before the barrier is sealed: stop services, wipe caches.
	Sealing func()
	// RootToken issues the bootstrap admin token while unsealed.
	RootToken func(ctx context.Context) (string, error)
	// BeforeUnseal may refuse to unseal (require_tee).
	BeforeUnseal func() error
	// KeyringWrapper returns the seal wrap used for the barrier keyring (nil: none).
	KeyringWrapper func() barrier.Wrapper
	// MigrateCSPs runs during a Shamir -> HSM seal migration, with the
	// barrier unsealed and no service started: seal-wrap every CSP and the
	// keyring with the HSM.
	MigrateCSPs func(ctx context.Context, b *barrier.Barrier) error
}

// Options configure a Core.
type Options struct {
	Storage storage.Backend
	Barrier *barrier.Barrier
	// Rand is the CSP source (entropy mixer) for root and recovery keys.
	Rand io.Reader
	// AutoSeal selects the pkcs11 seal; nil means Shamir.
	AutoSeal AutoSeal
	Hooks    Hooks
	Logger   *slog.Logger
}

// Core is the vault's lifecycle state machine. It is safe for concurrent use.
type Core struct {
	opts Options
	log  *slog.Logger

	mu          sync.Mutex
	progress    [][]byte // unseal shares received so far (Shamir)
	pendingRoot secret.Bytes
	rekey       *rekeyState

	reasonMu     sync.Mutex
	sealedReason string // why auto-unseal has not succeeded; "" when none
}

// New returns a Core over an initialised or empty storage.
func New(opts Options) *Core {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Core{opts: opts, log: opts.Logger}
}

// SealType is "pkcs11" with an auto seal, else "shamir".
func (c *Core) SealType() string {
	if c.opts.AutoSeal != nil {
		return c.opts.AutoSeal.Type()
	}
	return "shamir"
}

// Status is the seal status shown by /v1/sys/seal-status.
type Status struct {
	Type         string `json:"type"`
	Initialized  bool   `json:"initialized"`
	Sealed       bool   `json:"sealed"`
	T            int    `json:"t"`
	N            int    `json:"n"`
	Progress     int    `json:"progress"`
	RecoverySeal bool   `json:"recovery_seal"`
	Term         uint32 `json:"term,omitempty"`
	// Migration: the storage holds a Shamir-sealed vault and the node is
	// configured with an HSM; unsealing with migrate moves it.
	Migration bool `json:"migration,omitempty"`
	// NonceBudget is the active term's encryption count (unsealed only).
	NonceBudget *barrier.Usage `json:"nonce_budget,omitempty"`
	// SealedReason says why an auto-sealed vault is still sealed (the last
	// auto-unseal error: e.g. the HSM token it waits for, or a refused PIN).
	SealedReason string `json:"sealed_reason,omitempty"`
	// FIPS140 is Go's FIPS 140-3 mode: "off", "on" or "only".
	FIPS140 string `json:"fips140"`
}

// Status reports the seal state. Reading the seal config may fail when the
// storage is down. While sealed, T and N come from the unauthenticated
// hint; once unsealed, from the authenticated copy in the keyring.
func (c *Core) Status(ctx context.Context) (Status, error) {
	st := Status{Type: c.SealType(), Sealed: c.opts.Barrier.Sealed(), FIPS140: fips.Mode()}
	if st.Sealed {
		c.reasonMu.Lock()
		st.SealedReason = c.sealedReason
		c.reasonMu.Unlock()
	}
	var cfg *SealConfig
	if m, err := c.meta(); err == nil {
		cfg = &m.Seal
	} else {
		hint, err := c.sealConfig(ctx)
		switch {
		case errors.Is(err, ErrNotInitialized):
			st.Sealed = true
			return st, nil
		case err != nil:
			return st, err
		}
		cfg = hint
	}
	st.Initialized = true
	st.Migration = cfg.Type != c.SealType()
	if cfg.Type == "shamir" {
		st.T, st.N = cfg.SecretThreshold, cfg.SecretShares
	} else {
		st.T, st.N, st.RecoverySeal = cfg.RecoveryThreshold, cfg.RecoveryShares, true
	}
	c.mu.Lock()
	st.Progress = len(c.progress)
	c.mu.Unlock()
	if !st.Sealed {
		st.Term = c.opts.Barrier.Status().Term
		if u := c.opts.Barrier.Usage(); u.Term != 0 {
			st.NonceBudget = &u
		}
	}
	return st, nil
}

// Sealed reports whether data requests must be refused.
func (c *Core) Sealed() bool { return c.opts.Barrier.Sealed() }

// sealConfig reads the unauthenticated hint at core/seal-config: only for
// what must be known before the root key is (seal type, Shamir threshold),
// never to authorize anything.
func (c *Core) sealConfig(ctx context.Context) (*SealConfig, error) {
	raw, err := c.opts.Storage.Get(ctx, keySealConfig)
	if errors.Is(err, storage.ErrNotFound) {
		init, ierr := c.opts.Barrier.Initialized(ctx)
		if ierr != nil {
			return nil, ierr
		}
		if init {
			return nil, fmt.Errorf("%w: core/seal-config is missing although the keyring exists (storage was altered)", ErrSealTampered)
		}
		return nil, ErrNotInitialized
	}
	if err != nil {
		return nil, fmt.Errorf("read seal config: %w", err)
	}
	var cfg SealConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("%w: core/seal-config is not JSON", ErrSealTampered)
	}
	return &cfg, nil
}

// InitRequest chooses how the root (or recovery) key is split.
type InitRequest struct {
	SecretShares      int `json:"secret_shares"`
	SecretThreshold   int `json:"secret_threshold"`
	RecoveryShares    int `json:"recovery_shares"`
	RecoveryThreshold int `json:"recovery_threshold"`
}

// InitResult is shown once.
type InitResult struct {
	Keys         []secret.Bytes
	RecoveryKeys []secret.Bytes
	RootToken    string
}

func validSplit(n, t int, what string) error {
	if n < 1 || n > 255 || t < 1 || t > n || (t == 1 && n > 1) {
		return fmt.Errorf("%w: %s shares %d and threshold %d: need 1 <= threshold <= shares <= 255 and threshold >= 2 when shares > 1", ErrInvalidRequest, what, n, t)
	}
	return nil
}

func (c *Core) newKey() (secret.Bytes, error) {
	k := make(secret.Bytes, rootKeySize)
	if _, err := io.ReadFull(c.opts.Rand, k); err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

func (c *Core) split(key secret.Bytes, n, t int) ([]secret.Bytes, error) {
	if n == 1 {
		return []secret.Bytes{key.Clone()}, nil
	}
	parts, err := shamir.Split(key, n, t, c.opts.Rand)
	if err != nil {
		return nil, fmt.Errorf("split key: %w", err)
	}
	out := make([]secret.Bytes, len(parts))
	for i, p := range parts {
		out[i] = secret.Bytes(p)
	}
	return out, nil
}

func combine(parts [][]byte) (secret.Bytes, error) {
	if len(parts) == 1 {
		return secret.Bytes(parts[0]).Clone(), nil
	}
	k, err := shamir.Combine(parts)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidShare, err)
	}
	return secret.Bytes(k), nil
}

// combineKey combines shares into a key; anything but a 32-byte key (a
// lone share under a threshold storage claims is 1) is a wrong combination.
func combineKey(parts [][]byte) (secret.Bytes, error) {
	k, err := combine(parts)
	if err != nil {
		return nil, err
	}
	if len(k) != rootKeySize {
		k.Destroy()
		return nil, ErrWrongCombination
	}
	return k, nil
}

// Init generates the root key and protects it: split into shares (Shamir)
// or wrapped by the HSM with recovery shares (pkcs11). It returns the
// shares once, with a short-lived root token.
func (c *Core) Init(ctx context.Context, req InitRequest) (*InitResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.sealConfig(ctx); err == nil {
		return nil, ErrAlreadyInitialized
	} else if !errors.Is(err, ErrNotInitialized) {
		return nil, err
	}
	cfg := SealConfig{Type: c.SealType(), SealWrap: c.keyringWrapper() != nil}
	if c.opts.AutoSeal == nil {
		if err := validSplit(req.SecretShares, req.SecretThreshold, "key"); err != nil {
			return nil, err
		}
		cfg.SecretShares, cfg.SecretThreshold = req.SecretShares, req.SecretThreshold
	} else {
		if req.RecoveryShares == 0 {
			req.RecoveryShares, req.RecoveryThreshold = max(req.SecretShares, 1), max(req.SecretThreshold, 1)
		}
		if err := validSplit(req.RecoveryShares, req.RecoveryThreshold, "recovery"); err != nil {
			return nil, err
		}
		cfg.RecoveryShares, cfg.RecoveryThreshold = req.RecoveryShares, req.RecoveryThreshold
	}

	root, err := c.newKey()
	if err != nil {
		return nil, err
	}
	defer root.Destroy()
	res := &InitResult{}
	meta := sealMeta{Version: metaVersion}
	var physical []storage.Op
	if c.opts.AutoSeal == nil {
		if res.Keys, err = c.split(root, cfg.SecretShares, cfg.SecretThreshold); err != nil {
			return nil, err
		}
	} else {
		if _, err := c.opts.AutoSeal.EnsureKey(ctx); err != nil {
			return nil, fmt.Errorf("HSM key: %w", err)
		}
		wrapped, err := c.opts.AutoSeal.Encrypt(ctx, root, []byte(rootKeyAAD))
		if err != nil {
			return nil, fmt.Errorf("wrap root key with the HSM: %w", err)
		}
		recovery, err := c.newKey()
		if err != nil {
			return nil, err
		}
		defer recovery.Destroy()
		if res.RecoveryKeys, err = c.split(recovery, cfg.RecoveryShares, cfg.RecoveryThreshold); err != nil {
			return nil, err
		}
		sum := sha256.Sum256(recovery)
		meta.RecoveryHash = sum[:]
		physical = append(physical, storage.Op{Key: keyWrappedRoot, Value: wrapped})
	}
	// The keyring (carrying the authenticated seal configuration), the
	// wrapped root key and the seal config hint in one atomic batch: a crash
	// leaves all of them or none.
	meta.Seal = cfg
	physical = append(physical, storage.Op{Key: keySealConfig, Value: hintJSON(cfg)})
	if err := c.opts.Barrier.InitializeWith(ctx, root, c.keyringWrapper(), meta.encode(), physical); err != nil {
		if errors.Is(err, barrier.ErrAlreadyInitialized) {
			return nil, ErrAlreadyInitialized
		}
		return nil, fmt.Errorf("initialize barrier: %w", err)
	}
	if err := c.unsealWith(ctx, root); errors.Is(err, ErrUnsealRefused) {
		// require_tee outside a TEE: the vault is initialised and its shares
		// are returned (they are the only copy), but it stays sealed; a root
		// token can be generated with the shares once unsealed in a TEE.
		c.log.Warn("vault initialized but left sealed", "reason", err)
		return res, nil
	} else if err != nil {
		return nil, err
	}
	if c.opts.Hooks.RootToken != nil {
		if res.RootToken, err = c.opts.Hooks.RootToken(ctx); err != nil {
			return nil, fmt.Errorf("issue root token: %w", err)
		}
	}
	if c.opts.AutoSeal == nil {
		// Shamir: operators unseal with their shares, as in Vault.
		c.sealLocked()
	}
	c.log.Info("vault initialized", "seal", cfg.Type, "shares", max(cfg.SecretShares, cfg.RecoveryShares), "threshold", max(cfg.SecretThreshold, cfg.RecoveryThreshold))
	return res, nil
}

func (c *Core) keyringWrapper() barrier.Wrapper {
	if c.opts.Hooks.KeyringWrapper == nil {
		return nil
	}
	return c.opts.Hooks.KeyringWrapper()
}

// unsealWith opens the barrier with the root key and starts the services.
func (c *Core) unsealWith(ctx context.Context, root secret.Bytes) error {
	if c.opts.Hooks.BeforeUnseal != nil {
		if err := c.opts.Hooks.BeforeUnseal(); err != nil {
			return fmt.Errorf("%w: %v", ErrUnsealRefused, err)
		}
	}
	w := c.keyringWrapper()
	if err := c.opts.Barrier.Unseal(ctx, root, w); err != nil {
		switch {
		case errors.Is(err, barrier.ErrWrongRootKey):
			return ErrWrongCombination
		case errors.Is(err, barrier.ErrWrapperMismatch):
			return fmt.Errorf("%w: the setting seal_wrap cannot change after init: %v", ErrUnsealRefused, err)
		}
		return fmt.Errorf("unseal barrier: %w", err)
	}
	if _, err := c.checkMeta(ctx, w, false); err != nil {
		c.opts.Barrier.Seal()
		return err
	}
	if c.opts.Hooks.Unsealed != nil {
		if err := c.opts.Hooks.Unsealed(ctx, c.opts.Barrier); err != nil {
			c.sealLocked()
			return fmt.Errorf("start services: %w", err)
		}
	}
	c.log.Info("vault unsealed", "seal", c.SealType())
	return nil
}

// ParseShare validates a base64 share's shape before it is kept.
func ParseShare(raw []byte) error {
	if len(raw) != rootKeySize+1 && len(raw) != rootKeySize {
		return fmt.Errorf("%w: a share is %d bytes, this one is %d", ErrInvalidShare, rootKeySize+1, len(raw))
	}
	if len(raw) == rootKeySize+1 && raw[rootKeySize] == 0 {
		return fmt.Errorf("%w: share has a zero x coordinate", ErrInvalidShare)
	}
	return nil
}

// Unseal adds one share (Shamir). Duplicates are ignored. At the threshold
// the shares are combined; a wrong combination resets progress.
func (c *Core) Unseal(ctx context.Context, share []byte) (Status, error) {
	st, _, err := c.unseal(ctx, share, false)
	return st, err
}

// UnsealMigrate is Unseal for a seal migration (Shamir -> HSM): at the
// threshold the root key is wrapped by the HSM, every CSP is seal-wrapped,
// and the new recovery shares are returned, once.
func (c *Core) UnsealMigrate(ctx context.Context, share []byte) (Status, []secret.Bytes, error) {
	return c.unseal(ctx, share, true)
}

func (c *Core) unseal(ctx context.Context, share []byte, migrate bool) (Status, []secret.Bytes, error) {
	c.mu.Lock()
	recovery, err := c.unsealStep(ctx, share, migrate)
	c.mu.Unlock()
	st, serr := c.Status(ctx)
	if err == nil {
		err = serr
	}
	return st, recovery, err
}

func (c *Core) unsealStep(ctx context.Context, share []byte, migrate bool) ([]secret.Bytes, error) {
	if err := c.unsealStepShares(ctx, share, migrate); err != nil || c.pendingRoot == nil {
		return nil, err
	}
	root := c.pendingRoot
	c.pendingRoot = nil
	defer root.Destroy()
	cfg, err := c.sealConfig(ctx)
	if err != nil {
		return nil, err
	}
	if migrate {
		return c.migrateLocked(ctx, cfg, root)
	}
	return nil, c.unsealWith(ctx, root)
}

// unsealStepShares records one share; at the threshold it leaves the
// combined key in pendingRoot.
func (c *Core) unsealStepShares(ctx context.Context, share []byte, migrate bool) error {
	cfg, err := c.sealConfig(ctx)
	if err != nil {
		return err
	}
	if !c.opts.Barrier.Sealed() {
		return nil
	}
	if cfg.Type != "shamir" {
		return fmt.Errorf("%w: the %s seal unseals automatically; shares are recovery keys", ErrAutoSeal, cfg.Type)
	}
	switch {
	case c.opts.AutoSeal != nil && !migrate:
		return ErrMigrationRequired
	case c.opts.AutoSeal == nil && migrate:
		return fmt.Errorf("%w: migrate needs an HSM in the configuration (hsm_lib)", ErrInvalidRequest)
	}
	if err := ParseShare(share); err != nil {
		return err
	}
	if cfg.SecretShares > 1 && len(share) != rootKeySize+1 || cfg.SecretShares == 1 && len(share) != rootKeySize {
		return fmt.Errorf("%w: wrong share length %d", ErrInvalidShare, len(share))
	}
	for _, p := range c.progress {
		if subtle.ConstantTimeCompare(p, share) == 1 {
			return nil
		}
	}
	c.progress = append(c.progress, secret.Bytes(share).Clone())
	if len(c.progress) < cfg.SecretThreshold {
		return nil
	}
	parts := c.progress
	c.progress = nil
	defer func() {
		for _, p := range parts {
			secret.Wipe(p)
		}
	}()
	root, err := combineKey(parts)
	if errors.Is(err, ErrWrongCombination) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%w; unseal progress was reset", err)
	}
	c.pendingRoot = root
	return nil
}

// ResetUnseal discards the unseal progress.
func (c *Core) ResetUnseal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wipeProgress()
}

func (c *Core) wipeProgress() {
	for _, p := range c.progress {
		secret.Wipe(p)
	}
	c.progress = nil
}

// AutoUnseal unwraps the root key with the HSM and unseals. It is a no-op
// for Shamir, when not initialised, or when already unsealed.
func (c *Core) AutoUnseal(ctx context.Context) error {
	if c.opts.AutoSeal == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.opts.Barrier.Sealed() {
		return nil
	}
	// The wrapped root key decides, not the unauthenticated hint: only the
	// HSM can have made it, and the keyring it opens says (authenticated)
	// how the vault is sealed.
	wrapped, err := c.opts.Storage.Get(ctx, keyWrappedRoot)
	if errors.Is(err, storage.ErrNotFound) {
		cfg, herr := c.sealConfig(ctx)
		switch {
		case herr != nil:
			return herr
		case cfg.Type == "shamir":
			return ErrMigrationRequired
		}
	}
	if err != nil {
		return fmt.Errorf("read wrapped root key: %w", err)
	}
	pt, err := c.opts.AutoSeal.Decrypt(ctx, wrapped, []byte(rootKeyAAD))
	if err != nil {
		return fmt.Errorf("unwrap root key with the HSM: %w", err)
	}
	root := secret.Bytes(pt)
	defer root.Destroy()
	// The configured key may be new (hsm_key_label or hsm_mechanism changed
	// for a key rotation): create it now, so that new values are wrapped
	// under it; operator rewrap then moves the old ones.
	if created, err := c.opts.AutoSeal.EnsureKey(ctx); err != nil {
		return fmt.Errorf("HSM key: %w", err)
	} else if created {
		c.log.Warn("created the configured HSM key; run operator rewrap to move the root key, the keyring and every CSP to it", "key_id", c.opts.AutoSeal.KeyID())
	}
	err = c.unsealWith(ctx, root)
	if errors.Is(err, ErrWrongCombination) {
		// A seal migration that switched the keyring to its new root key
		// but stopped before storing it as core/root-key (see migrate.go).
		return c.resumeMigrationLocked(ctx, err)
	}
	return err
}

// RunAutoUnseal retries AutoUnseal with exponential backoff until the vault
// is unsealed or ctx ends, logging why each attempt failed (the HSM's
// PKCS#11 return code by name; never the PIN); the seal status shows the
// same reason. A failure the seal marks seal.ErrNoRetry (a refused or
// missing PIN) stops the retries at once: the vault stays sealed until
// restarted with a fixed configuration.
func (c *Core) RunAutoUnseal(ctx context.Context, minWait, maxWait time.Duration) {
	wait := minWait
	for c.Sealed() {
		err := c.AutoUnseal(ctx)
		c.setSealedReason(err)
		switch {
		case err == nil:
			return
		case errors.Is(err, ErrNotInitialized):
			wait = minWait // init unseals by itself; just keep watching
		case errors.Is(err, seal.ErrNoRetry):
			c.log.Error("auto-unseal failed and will not be retried; vault stays sealed until restarted with a fixed configuration", "err", err)
			return
		default:
			c.log.Error("auto-unseal failed; vault stays sealed", "err", err, "retry_in", wait.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, maxWait)
	}
}

func (c *Core) setSealedReason(err error) {
	reason := ""
	if err != nil && !errors.Is(err, ErrNotInitialized) {
		reason = "auto-unseal failed: " + err.Error()
	}
	c.reasonMu.Lock()
	c.sealedReason = reason
	c.reasonMu.Unlock()
}

// Seal stops the services, zeroizes the keys held in memory and seals.
func (c *Core) Seal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sealLocked()
}

func (c *Core) sealLocked() {
	if c.opts.Hooks.Sealing != nil && !c.opts.Barrier.Sealed() {
		c.opts.Hooks.Sealing()
	}
	c.opts.Barrier.Seal()
	c.wipeProgress()
	c.cancelRekeyLocked()
	c.log.Info("vault sealed")
}

// Rotate adds a keyring term used for new writes.
func (c *Core) Rotate(ctx context.Context) (uint32, error) {
	if c.Sealed() {
		return 0, ErrSealed
	}
	return c.opts.Barrier.Rotate(ctx)
}
