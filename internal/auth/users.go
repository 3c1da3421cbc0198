package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

// User is the public view of a user.
type User struct {
	Username   string    `json:"username"`
	Role       string    `json:"role"`
	Disabled   bool      `json:"disabled"`
	MFAEnabled bool      `json:"mfa_enabled"`
	CreatedAt  time.Time `json:"created_at"`
}

type userRecord struct {
	Username     string    `json:"username"`
	Role         string    `json:"role"`
	PasswordHash string    `json:"password_hash"`
	Disabled     bool      `json:"disabled"`
	CreatedAt    time.Time `json:"created_at"`
	TOTP         totpState `json:"totp"`
	// LoginFailures counts failed logins since LoginFailuresSince, shared
	// by every node (the per-node limiter adds per-address counts).
	LoginFailures      int       `json:"login_failures,omitempty"`
	LoginFailuresSince time.Time `json:"login_failures_since,omitzero"`
}

func (r *userRecord) public() *User {
	return &User{Username: r.Username, Role: r.Role, Disabled: r.Disabled, MFAEnabled: r.TOTP.Enabled, CreatedAt: r.CreatedAt}
}

var usernameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ValidUsername reports whether name is an acceptable username.
func ValidUsername(name string) bool { return usernameRE.MatchString(name) }

func checkUsername(name string) error {
	if !ValidUsername(name) {
		return invalid("username", "must match ^[a-z0-9][a-z0-9._-]{0,63}$")
	}
	return nil
}

// CreateUser adds a user with an argon2id-hashed password.
func (s *Service) CreateUser(ctx context.Context, username string, password secret.String, role string) (*User, error) {
	if err := checkUsername(username); err != nil {
		return nil, err
	}
	if username == RootSubject {
		return nil, fmt.Errorf("%w: %q is reserved", ErrUserExists, username)
	}
	if role != identity.RoleAdmin && role != identity.RoleUser {
		return nil, invalid("role", "must be admin or user")
	}
	if err := checkPassword(password); err != nil {
		return nil, err
	}
	phc, err := s.hashPassword(password)
	if err != nil {
		return nil, err
	}
	mu := s.lock("user:" + username)
	mu.Lock()
	defer mu.Unlock()
	return s.insertUser(ctx, username, role, phc)
}

// insertUser stores a new user with its password hash, under the user's
// lock, if the name was never used.
func (s *Service) insertUser(ctx context.Context, username, role, phc string) (*User, error) {
	if err := s.nameFree(ctx, username); err != nil {
		return nil, err
	}
	rec := &userRecord{Username: username, Role: role, PasswordHash: phc, CreatedAt: s.now().UTC()}
	b, err := jsonBytes(rec)
	if err != nil {
		return nil, err
	}
	// Created only if absent, across nodes: two nodes creating one name at
	// once do not overwrite each other.
	if err := s.kv.Update(ctx, prefixUsers+username, func(_ []byte, found bool) ([]byte, bool, error) {
		if found {
			return nil, false, ErrUserExists
		}
		return b, false, nil
	}); err != nil {
		if errors.Is(err, ErrUserExists) {
			return nil, err
		}
		return nil, fmt.Errorf("auth: create user: %w", err)
	}
	s.setDisabledLocal(username, false) // a deleted namesake may linger there
	s.log.Info("user created", "username", username, "role", role)
	return rec.public(), nil
}

// errNoChange tells updateUser that fn left the record as it was.
var errNoChange = errors.New("auth: no change")

// updateUser changes username's record atomically across nodes (barrier
// Update): fn gets the current record and may be called again when another
// node wrote it in between, so it must only change rec. fn returns
// errNoChange to write nothing. It returns the record as stored.
func (s *Service) updateUser(ctx context.Context, username string, fn func(rec *userRecord) error) (*userRecord, error) {
	if !ValidUsername(username) {
		return nil, ErrNotFound
	}
	var out *userRecord
	err := s.kv.Update(ctx, prefixUsers+username, func(cur []byte, found bool) ([]byte, bool, error) {
		if !found {
			return nil, false, ErrNotFound
		}
		var rec userRecord
		if err := json.Unmarshal(cur, &rec); err != nil {
			return nil, false, fmt.Errorf("auth: decode %s%s: %w", prefixUsers, username, err)
		}
		if err := fn(&rec); err != nil {
			if errors.Is(err, errNoChange) {
				out = &rec
			}
			return nil, false, err
		}
		b, err := jsonBytes(&rec)
		if err != nil {
			return nil, false, err
		}
		out = &rec
		return b, false, nil
	})
	if errors.Is(err, errNoChange) {
		err = nil
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Service) loadUser(ctx context.Context, username string) (*userRecord, error) {
	if !ValidUsername(username) {
		return nil, ErrNotFound
	}
	var rec userRecord
	if err := s.getJSON(ctx, prefixUsers+username, &rec); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("auth: load user: %w", err)
	}
	return &rec, nil
}

// GetUser returns one user or ErrNotFound.
func (s *Service) GetUser(ctx context.Context, username string) (*User, error) {
	rec, err := s.loadUser(ctx, username)
	if err != nil {
		return nil, err
	}
	return rec.public(), nil
}

// ListUsers returns every user, by username.
func (s *Service) ListUsers(ctx context.Context) ([]User, error) {
	keys, err := s.listAll(ctx, prefixUsers)
	if err != nil {
		return nil, err
	}
	out := make([]User, 0, len(keys))
	for _, k := range keys {
		rec, err := s.loadUser(ctx, strings.TrimPrefix(k, prefixUsers))
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *rec.public())
	}
	return out, nil
}

// DeleteUser removes the user, ends its sessions and deletes its API keys
// and TOTP secret.
func (s *Service) DeleteUser(ctx context.Context, username string) error {
	if _, err := s.loadUser(ctx, username); err != nil {
		return err
	}
	// Refuse first so the hot path refuses the user at once, even before
	// the sessions are revoked; the tombstone keeps every node refusing it.
	s.setDisabledLocal(username, true)
	if _, err := s.RevokeUserSessions(ctx, username); err != nil {
		return err
	}
	keys, err := s.loadAPIKeys(ctx, username)
	if err != nil {
		return err
	}
	// A tombstone keeps the name from ever being reused: accounts, keys and
	// grants are keyed by username, so a new namesake would inherit them.
	ops, err := s.totpDeletes(ctx, username)
	if err != nil {
		return err
	}
	ops = append(ops, storage.Op{Key: prefixUsers + username, Delete: true},
		storage.Op{Key: prefixDeletedUsers + username, Value: []byte(s.now().UTC().Format(time.RFC3339))})
	for _, k := range keys {
		ops = append(ops, storage.Op{Key: prefixAPIKeys + k.ID, Delete: true})
	}
	if err := s.kv.Batch(ctx, ops); err != nil {
		return fmt.Errorf("auth: delete user: %w", err)
	}
	s.dropAPIKeyCache()
	s.log.Info("user deleted", "username", username)
	return nil
}

// SetDisabled disables or re-enables a user. Disabling ends every session
// of the user at once and refuses its API keys.
func (s *Service) SetDisabled(ctx context.Context, username string, disabled bool) error {
	if _, err := s.updateUser(ctx, username, func(rec *userRecord) error {
		rec.Disabled = disabled
		return nil
	}); err != nil {
		return err
	}
	s.setDisabledLocal(username, disabled)
	s.dropAPIKeyCache()
	s.log.Info("user disabled state changed", "username", username, "disabled", disabled)
	if disabled {
		if _, err := s.RevokeUserSessions(ctx, username); err != nil {
			return err
		}
	}
	return nil
}

// isDisabled reports whether username is refused: disabled, deleted, or
// unreadable.
func (s *Service) isDisabled(username string) bool {
	s.stateMu.RLock()
	_, ok := s.disabled[username]
	s.stateMu.RUnlock()
	return ok
}
