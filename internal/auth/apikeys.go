package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/policy"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

// APIKey is the public view of an API key; the secret is never stored.
type APIKey struct {
	ID        string    `json:"id"`
	Owner     string    `json:"owner"`
	Name      string    `json:"name"`
	Actions   []string  `json:"actions"`
	Accounts  []string  `json:"accounts"`
	CreatedAt time.Time `json:"created_at"`
}

type apiKeyRecord struct {
	APIKey
	// Hash is SHA-256 of the 256-bit random secret: a slow hash adds
	// nothing against a secret that cannot be guessed.
	Hash []byte `json:"hash"`
}

type cachedKey struct {
	p     identity.Principal
	until int64 // unix nanoseconds; bounded by ResyncInterval
}

const (
	apiKeyPrefix    = "mvk_"
	apiKeySecretLen = 32
	maxAPIKeysOwner = 100
	maxScopeEntries = 64
)

var (
	apiKeyIDRE   = regexp.MustCompile(`^[0-9a-f]{32}$`)
	keyNameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$`)
	accountRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	errBadAPIKey = unauth("api key invalid")
)

// CreateAPIKey makes a key for owner, scoped to actions (policy action
// names, or "*" for the non-sensitive ones) and accounts (names, or "*").
// The key "mvk_<id>.<secret>" is returned once.
func (s *Service) CreateAPIKey(ctx context.Context, owner, name string, actions, accounts []string) (string, secret.String, error) {
	if err := checkScopes(name, actions, accounts); err != nil {
		return "", "", err
	}
	user, err := s.loadUser(ctx, owner)
	if err != nil {
		return "", "", err
	}
	if user.Disabled {
		return "", "", ErrUserDisabled
	}
	existing, err := s.loadAPIKeys(ctx, owner)
	if err != nil {
		return "", "", err
	}
	if len(existing) >= maxAPIKeysOwner {
		return "", "", fmt.Errorf("%w: at most %d API keys per user", ErrConflict, maxAPIKeysOwner)
	}
	var idb [16]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", "", fmt.Errorf("auth: api key id: %w", err)
	}
	id := hex.EncodeToString(idb[:])
	sec, err := s.randomSecret(apiKeySecretLen)
	if err != nil {
		return "", "", err
	}
	defer secret.Wipe(sec)
	h := sha256.Sum256(sec)
	rec := apiKeyRecord{
		APIKey: APIKey{ID: id, Owner: owner, Name: name, Actions: slices.Clone(actions),
			Accounts: slices.Clone(accounts), CreatedAt: s.now().UTC()},
		Hash: h[:],
	}
	if err := s.putJSON(ctx, prefixAPIKeys+id, rec); err != nil {
		return "", "", fmt.Errorf("auth: store api key: %w", err)
	}
	s.log.Info("api key created", "owner", owner, "id", id, "actions", actions, "accounts", accounts)
	return id, secret.String(apiKeyPrefix + id + "." + base64.RawURLEncoding.EncodeToString(sec)), nil
}

func checkScopes(name string, actions, accounts []string) error {
	if !keyNameRE.MatchString(name) {
		return invalid("name", "1-64 letters, digits, space, '.', '_' or '-'")
	}
	if len(actions) == 0 || len(actions) > maxScopeEntries {
		return invalid("actions", "list 1 to 64 actions")
	}
	for _, a := range actions {
		if a != policy.AllScopeWildcard && !policy.APIKeyAction(policy.Action(a)) {
			return invalid("actions", fmt.Sprintf("%q is not an action an API key may hold", a))
		}
	}
	if len(accounts) == 0 || len(accounts) > maxScopeEntries {
		return invalid("accounts", "list 1 to 64 account names or \"*\"")
	}
	for _, a := range accounts {
		if a != policy.AllScopeWildcard && !accountRE.MatchString(a) {
			return invalid("accounts", fmt.Sprintf("%q is not an account name", a))
		}
	}
	return nil
}

// loadAPIKeys returns the keys of owner (all keys when owner is "").
func (s *Service) loadAPIKeys(ctx context.Context, owner string) ([]APIKey, error) {
	names, err := s.listAll(ctx, prefixAPIKeys)
	if err != nil {
		return nil, err
	}
	out := []APIKey{}
	for _, n := range names {
		var r apiKeyRecord
		if err := s.getJSON(ctx, n, &r); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			return nil, fmt.Errorf("auth: load api key: %w", err)
		}
		if owner == "" || r.Owner == owner {
			out = append(out, r.APIKey)
		}
	}
	return out, nil
}

// ListAPIKeys lists owner's keys (never their secrets).
func (s *Service) ListAPIKeys(ctx context.Context, owner string) ([]APIKey, error) {
	return s.loadAPIKeys(ctx, owner)
}

// RevokeAPIKey deletes owner's key id; it stops working at once on this
// node and within the change feed (or ResyncInterval) on others.
func (s *Service) RevokeAPIKey(ctx context.Context, owner, id string) error {
	if !apiKeyIDRE.MatchString(id) {
		return ErrNotFound
	}
	var r apiKeyRecord
	if err := s.getJSON(ctx, prefixAPIKeys+id, &r); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return ErrNotFound
		}
		return fmt.Errorf("auth: load api key: %w", err)
	}
	if r.Owner != owner {
		return ErrNotFound
	}
	if err := s.kv.Delete(ctx, prefixAPIKeys+id); err != nil {
		return fmt.Errorf("auth: revoke api key: %w", err)
	}
	s.dropAPIKeyCache()
	s.log.Info("api key revoked", "owner", owner, "id", id)
	return nil
}

func (s *Service) dropAPIKeyCache() {
	s.cacheMu.Lock()
	clear(s.apiCache)
	s.cacheMu.Unlock()
}

// AuthenticateAPIKey verifies an X-API-Key value. A verified key is cached
// by its SHA-256 for at most ResyncInterval; revocation and owner
// disablement drop the cache.
func (s *Service) AuthenticateAPIKey(ctx context.Context, key string) (*identity.Principal, error) {
	if !s.started.Load() {
		return nil, ErrNotStarted
	}
	if len(key) == 0 || len(key) > 256 {
		return nil, errBadAPIKey
	}
	h := tokenHash(key)
	now := s.now().UnixNano()
	s.cacheMu.RLock()
	e := s.apiCache[h]
	s.cacheMu.RUnlock()
	if e == nil || now >= e.until {
		var err error
		if e, err = s.verifyAPIKey(ctx, key); err != nil {
			return nil, err
		}
		e.until = now + int64(s.cfg.ResyncInterval)
		s.cacheMu.Lock()
		if len(s.apiCache) >= maxTokenCache {
			clear(s.apiCache)
		}
		s.apiCache[h] = e
		s.cacheMu.Unlock()
	}
	if s.isDisabled(e.p.Owner) {
		return nil, ErrUserDisabled
	}
	p := e.p
	return &p, nil
}

func (s *Service) verifyAPIKey(ctx context.Context, key string) (*cachedKey, error) {
	rest, ok := strings.CutPrefix(key, apiKeyPrefix)
	if !ok {
		return nil, errBadAPIKey
	}
	id, enc, ok := strings.Cut(rest, ".")
	if !ok || !apiKeyIDRE.MatchString(id) {
		return nil, errBadAPIKey
	}
	sec, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(sec) != apiKeySecretLen {
		return nil, errBadAPIKey
	}
	h := sha256.Sum256(sec)
	secret.Wipe(sec)
	var r apiKeyRecord
	if err := s.getJSON(ctx, prefixAPIKeys+id, &r); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, errBadAPIKey
		}
		return nil, fmt.Errorf("auth: load api key: %w", err)
	}
	if subtle.ConstantTimeCompare(r.Hash, h[:]) != 1 {
		return nil, errBadAPIKey
	}
	if _, err := s.loadUser(ctx, r.Owner); errors.Is(err, ErrNotFound) {
		return nil, errBadAPIKey
	} else if err != nil {
		return nil, err
	}
	return &cachedKey{p: identity.Principal{
		Subject:  "apikey:" + r.ID,
		APIKeyID: r.ID,
		Owner:    r.Owner,
		Role:     identity.RoleUser,
		AuthTime: r.CreatedAt,
		Actions:  r.Actions,
		Accounts: r.Accounts,
	}}, nil
}
