// Package auth authenticates people and services: users and passwords,
// TOTP second factors, sessions with short-lived JWT access tokens and
// rotating refresh tokens, immediate revocation, and scoped API keys.
//
// Storage layout (logical keys, through the barrier): auth/users/<username>,
// auth/sessions/<sid>, auth/revoked/<sid>, auth/jwt-keys/<kid>,
// auth/totp-secrets/<username>/<id> (auth/totp/<username> from earlier
// builds), auth/apikeys/<id>. CSPs (JWT signing keys, TOTP
// secrets) are additionally seal-wrapped.
package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

// Sealer seal-wraps critical security parameters (package sealwrap).
type Sealer interface {
	Wrap(ctx context.Context, path string, plaintext []byte) ([]byte, error)
	Unwrap(ctx context.Context, path string, envelope []byte) (secret.Bytes, error)
}

// Storage prefixes.
const (
	prefixUsers    = "auth/users/"
	prefixSessions = "auth/sessions/"
	prefixRevoked  = "auth/revoked/"
	prefixJWTKeys  = "auth/jwt-keys/"
	prefixJWTSeeds = "auth/jwt-seeds/"
	// prefixDeletedUsers holds tombstones of deleted usernames.
	prefixDeletedUsers = "auth/deleted-users/"
	prefixTOTP         = "auth/totp/"
	// prefixTOTPSecrets holds one TOTP secret per enrolment (totpPath).
	prefixTOTPSecrets = "auth/totp-secrets/"
	prefixAPIKeys     = "auth/apikeys/"
)

// CSPPrefixes hold auth's seal-wrapped critical security parameters (JWT
// signing seeds, TOTP secrets), for operator rewrap and seal migration.
func CSPPrefixes() []string { return []string{prefixJWTSeeds, prefixTOTP, prefixTOTPSecrets} }

// NotifyPrefixes are the keys every node of a cluster must see change at
// once (revocations, users, signing keys, API keys); the rest is read on
// demand.
func NotifyPrefixes() []string {
	return []string{prefixRevoked, prefixUsers, prefixJWTKeys, prefixAPIKeys}
}

// Config tunes the service. Zero values take the documented defaults.
type Config struct {
	Issuer   string // default "moonvault"
	Audience string // default "moonvault-api"
	// AccessTTL is the access token lifetime: default 5m, at most 15m.
	AccessTTL time.Duration
	// SessionLifetime is the absolute session lifetime, default 12h.
	SessionLifetime time.Duration
	// IdleTimeout ends a session unused for this long, default 1h.
	IdleTimeout time.Duration
	// KeyRotation is the JWT signing key lifetime (default 24h); an old key
	// still verifies for KeyOverlap after it is superseded (default and
	// minimum: AccessTTL + Leeway, so no valid token is orphaned).
	KeyRotation, KeyOverlap time.Duration
	// Leeway for exp/nbf/iat, at most 30s (RFC 7519 §4.1.4 "small leeway").
	Leeway time.Duration
	// MaxLoginFailures per user and per client address within
	// LoginFailureWindow (default 10 in 15m).
	MaxLoginFailures   int
	LoginFailureWindow time.Duration
	// Subscribe, when set, delivers storage change notifications (key, or
	// "" for "resync").
	Subscribe func(fn func(key string)) (cancel func())
	// ResyncInterval is the period of the full reload of revocations,
	// disabled users and keys, and of the session sweep; default 30s.
	ResyncInterval time.Duration
	// Now is the clock (tests).
	Now func() time.Time
}

const (
	maxAccessTTL        = 15 * time.Minute
	maxLeeway           = 30 * time.Second
	rootSessionLifetime = time.Hour
	lastSeenPersistEach = 30 * time.Second
	maxTokenCache       = 50000
	// RootSubject is the bootstrap principal's subject; no user may take it.
	RootSubject = "root"
)

func (c *Config) setDefaults() error {
	if c.Issuer == "" {
		c.Issuer = "moonvault"
	}
	if c.Audience == "" {
		c.Audience = "moonvault-api"
	}
	if c.AccessTTL == 0 {
		c.AccessTTL = 5 * time.Minute
	}
	if c.AccessTTL < 0 || c.AccessTTL > maxAccessTTL {
		return invalid("access_ttl", "must be between 0 and 15m")
	}
	if c.SessionLifetime == 0 {
		c.SessionLifetime = 12 * time.Hour
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = time.Hour
	}
	if c.KeyRotation == 0 {
		c.KeyRotation = 24 * time.Hour
	}
	if c.Leeway < 0 || c.Leeway > maxLeeway {
		return invalid("leeway", "must be between 0 and 30s")
	}
	if c.KeyOverlap < c.AccessTTL+c.Leeway {
		c.KeyOverlap = c.AccessTTL + c.Leeway
	}
	if c.MaxLoginFailures == 0 {
		c.MaxLoginFailures = 10
	}
	if c.LoginFailureWindow == 0 {
		c.LoginFailureWindow = 15 * time.Minute
	}
	if c.ResyncInterval == 0 {
		c.ResyncInterval = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.SessionLifetime < 0 || c.IdleTimeout < 0 || c.KeyRotation < time.Minute ||
		c.MaxLoginFailures < 0 || c.ResyncInterval < 0 || c.LoginFailureWindow < 0 {
		return invalid("config", "negative duration, or key rotation under 1m")
	}
	return nil
}

// Service is the authentication service. All methods are safe for
// concurrent use. Methods other than user management fail with
// ErrNotStarted until Start.
type Service struct {
	cfg    Config
	kv     storage.KV
	sealer Sealer
	rand   io.Reader
	log    *slog.Logger
	parser *jwt.Parser

	argon     argonParams
	dummyPHC  string
	hashSem   chan struct{}
	hashCalls atomic.Int64 // argon2 evaluations, for the timing-equivalence test

	lockSeed maphash.Seed
	locks    [256]sync.Mutex // serialize per session / per user

	started atomic.Bool

	keysMu sync.RWMutex
	keys   map[string]*signingKey
	signer *signingKey

	stateMu  sync.RWMutex
	revoked  map[string]int64 // sid -> unix time after which the entry may be pruned
	disabled map[string]struct{}
	// disabledGen counts local disable/enable changes, so a concurrent
	// full reload does not overwrite a newer local decision.
	disabledGen uint64
	live        map[string]*liveSession

	cacheMu  sync.RWMutex
	tokens   map[[32]byte]*cachedToken
	apiCache map[[32]byte]*cachedKey

	limiter *limiter

	feed      chan string
	cancelSub func()
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	// bg tracks background writes (shared login failure counts).
	bg sync.WaitGroup
}

// New checks cfg and builds a service; call Start after unseal.
func New(cfg Config, kv storage.KV, sealer Sealer, rand io.Reader, log *slog.Logger) (*Service, error) {
	if kv == nil || sealer == nil || rand == nil {
		return nil, errors.New("auth: kv, sealer and rand are required")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		cfg:      cfg,
		kv:       kv,
		sealer:   sealer,
		rand:     rand,
		log:      log,
		argon:    owaspArgon2id,
		dummyPHC: dummyPHC,
		hashSem:  make(chan struct{}, 4),
		lockSeed: maphash.MakeSeed(),
		keys:     map[string]*signingKey{},
		revoked:  map[string]int64{},
		disabled: map[string]struct{}{},
		live:     map[string]*liveSession{},
		tokens:   map[[32]byte]*cachedToken{},
		apiCache: map[[32]byte]*cachedKey{},
		limiter:  newLimiter(cfg.MaxLoginFailures, cfg.LoginFailureWindow),
	}
	// RFC 8725 §3.1, §3.11: one algorithm, strict iss/aud/exp, small leeway.
	s.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{"EdDSA"}),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
		jwt.WithStrictDecoding(),
	)
	return s, nil
}

func (s *Service) now() time.Time { return s.cfg.Now() }

// Start runs after unseal: it loads or creates the JWT signing key, loads
// revocations and disabled users, and starts the change-feed and resync
// loops. It fails closed: on error the service stays unusable.
func (s *Service) Start(ctx context.Context) error {
	if s.started.Load() {
		return errors.New("auth: already started")
	}
	if err := s.loadKeys(ctx); err != nil {
		return err
	}
	if err := s.ensureSigner(ctx); err != nil {
		return err
	}
	if err := s.loadState(ctx); err != nil {
		return err
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.feed = make(chan string, 1024)
	if s.cfg.Subscribe != nil {
		feed := s.feed
		s.cancelSub = s.cfg.Subscribe(func(key string) {
			select {
			case feed <- key:
			default:
				// Full: ask for a resync rather than block the feed.
				select {
				case feed <- "":
				default:
				}
			}
		})
	}
	s.started.Store(true)
	s.wg.Add(1)
	go s.loop(loopCtx)
	return nil
}

// Stop ends the loops and zeroizes the signing keys and caches.
func (s *Service) Stop() {
	if !s.started.Swap(false) {
		return
	}
	if s.cancelSub != nil {
		s.cancelSub()
	}
	s.cancel()
	s.wg.Wait()
	s.bg.Wait()
	// Persist what the hot path has seen, best effort.
	s.flushLastSeen(context.Background(), true)
	s.keysMu.Lock()
	for kid, k := range s.keys {
		k.destroy()
		delete(s.keys, kid)
	}
	s.signer = nil
	s.keysMu.Unlock()
	s.cacheMu.Lock()
	clear(s.tokens)
	clear(s.apiCache)
	s.cacheMu.Unlock()
}

func (s *Service) loop(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ResyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case key := <-s.feed:
			s.onChange(ctx, key)
		case <-t.C:
			s.periodic(ctx)
		}
	}
}

// periodic is the safety net: full reload, session sweep, last-seen flush,
// key rotation and pruning.
func (s *Service) periodic(ctx context.Context) {
	if err := s.resync(ctx); err != nil {
		s.log.Warn("auth resync failed", "err", err)
	}
	s.flushLastSeen(ctx, false)
	if err := s.sweepSessions(ctx); err != nil {
		s.log.Warn("auth session sweep failed", "err", err)
	}
	if err := s.ensureSigner(ctx); err != nil {
		s.log.Error("auth signing key rotation failed", "err", err)
	}
	s.pruneCaches()
	s.limiter.prune(s.now())
}

// lock returns the mutex serializing work on one session or user.
func (s *Service) lock(name string) *sync.Mutex {
	return &s.locks[maphash.String(s.lockSeed, name)%uint64(len(s.locks))]
}

func (s *Service) requireStarted() error {
	if !s.started.Load() {
		return ErrNotStarted
	}
	return nil
}

// getJSON loads and decodes a record; the error wraps storage.ErrNotFound.
func (s *Service) getJSON(ctx context.Context, key string, v any) error {
	b, err := s.kv.Get(ctx, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("auth: decode %s: %w", key, err)
	}
	return nil
}

func (s *Service) putJSON(ctx context.Context, key string, v any) error {
	b, err := jsonBytes(v)
	if err != nil {
		return err
	}
	return s.kv.Put(ctx, key, b)
}

func jsonBytes(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("auth: encode record: %w", err)
	}
	return b, nil
}

// listAll returns every key under prefix, paging through the store.
func (s *Service) listAll(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	after := ""
	for {
		keys, err := s.kv.List(ctx, prefix, after, 1000)
		if err != nil {
			return nil, fmt.Errorf("auth: list %s: %w", prefix, err)
		}
		out = append(out, keys...)
		if len(keys) < 1000 {
			return out, nil
		}
		after = keys[len(keys)-1]
	}
}
