package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

// Deferred user changes: under policy_change_approvals a user change that
// alters who may approve (creating an admin, resetting an approver's
// password) waits for a quorum (internal/approval). The password is
// checked and hashed when the change is asked for; only its hash is kept
// with the approval, and the change is applied with it later.

// PasswordHash is an argon2id PHC string. It is not the password, but it
// allows an offline guess, so it is never printed.
type PasswordHash string

func (PasswordHash) String() string   { return "[redacted]" }
func (PasswordHash) GoString() string { return "[redacted]" }

// PrepareUser checks a user that would be created (name, role, password,
// the name neither taken nor of a deleted user) and hashes the password,
// creating nothing.
func (s *Service) PrepareUser(ctx context.Context, username string, pw secret.String, role string) (PasswordHash, error) {
	if err := checkUsername(username); err != nil {
		return "", err
	}
	if username == RootSubject {
		return "", fmt.Errorf("%w: %q is reserved", ErrUserExists, username)
	}
	if role != identity.RoleAdmin && role != identity.RoleUser {
		return "", invalid("role", "must be admin or user")
	}
	if err := checkPassword(pw); err != nil {
		return "", err
	}
	if err := s.nameFree(ctx, username); err != nil {
		return "", err
	}
	phc, err := s.hashPassword(pw)
	return PasswordHash(phc), err
}

// PreparePassword checks a new password for an existing user and hashes
// it, changing nothing.
func (s *Service) PreparePassword(ctx context.Context, username string, pw secret.String) (PasswordHash, error) {
	if err := checkPassword(pw); err != nil {
		return "", err
	}
	if _, err := s.loadUser(ctx, username); err != nil {
		return "", err
	}
	phc, err := s.hashPassword(pw)
	return PasswordHash(phc), err
}

// nameFree reports ErrUserExists for a name in use or ever used.
func (s *Service) nameFree(ctx context.Context, username string) error {
	if _, err := s.kv.Get(ctx, prefixUsers+username); err == nil {
		return ErrUserExists
	} else if !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("auth: create user: %w", err)
	}
	if _, err := s.kv.Get(ctx, prefixDeletedUsers+username); err == nil {
		return fmt.Errorf("%w: %q belonged to a deleted user and is never reused (its accounts and grants stay bound to it)", ErrUserExists, username)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("auth: create user: %w", err)
	}
	return nil
}

// CreateUserHashed creates a user with a password hash from PrepareUser.
// It is idempotent: if the user exists with this very hash (salted, so
// only this call's earlier run could have written it) and role, it
// returns that user.
func (s *Service) CreateUserHashed(ctx context.Context, username string, hash PasswordHash, role string) (*User, error) {
	if err := checkUsername(username); err != nil {
		return nil, err
	}
	if role != identity.RoleAdmin && role != identity.RoleUser {
		return nil, invalid("role", "must be admin or user")
	}
	if _, _, _, err := parsePHC(string(hash)); err != nil {
		return nil, fmt.Errorf("auth: create user: %w", err)
	}
	mu := s.lock("user:" + username)
	mu.Lock()
	defer mu.Unlock()
	if rec, err := s.loadUser(ctx, username); err == nil && rec.PasswordHash == string(hash) && rec.Role == role {
		return rec.public(), nil
	}
	return s.insertUser(ctx, username, role, string(hash))
}

// SetPasswordHash is SetPassword with a hash from PreparePassword: every
// session of the user ends.
func (s *Service) SetPasswordHash(ctx context.Context, username string, hash PasswordHash) error {
	if err := s.requireStarted(); err != nil {
		return err
	}
	if _, _, _, err := parsePHC(string(hash)); err != nil {
		return fmt.Errorf("auth: password reset: %w", err)
	}
	if _, err := s.updateUser(ctx, username, func(rec *userRecord) error {
		rec.PasswordHash = string(hash)
		rec.LoginFailures, rec.LoginFailuresSince = 0, time.Time{}
		return nil
	}); err != nil {
		return err
	}
	n, err := s.revokeOtherSessions(ctx, username, "")
	if err != nil {
		return fmt.Errorf("auth: password reset, but ending the sessions failed (retry, or revoke them): %w", err)
	}
	s.log.Info("password reset by an administrator, approved by the quorum", "username", username, "sessions_ended", n)
	return nil
}
