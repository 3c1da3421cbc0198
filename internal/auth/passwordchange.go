package auth

import (
	"context"
	"fmt"
	"time"

	"github.com/moonvault/moonvault/internal/secret"
)

// PasswordChange is a user changing their own password.
type PasswordChange struct {
	Username string
	Current  secret.String
	// TOTP is a code (or recovery code), required when the user has TOTP:
	// a stolen access token alone must not be able to take the account.
	TOTP       secret.String
	New        secret.String
	KeepSID    string // the session that asks; every other one ends
	RemoteAddr string
}

// ChangePassword checks the current password (and second factor when
// enrolled), sets the new one, and ends every other session of the user
// (NIST SP 800-63B §6.1.2.3 leaves this to policy; Vault's userpass does
// not, most custody consoles do). Wrong credentials count as failed logins
// and are throttled like them.
func (s *Service) ChangePassword(ctx context.Context, in PasswordChange) error {
	if err := s.requireStarted(); err != nil {
		return err
	}
	if err := checkPassword(in.New); err != nil {
		return err
	}
	now := s.now()
	uk, ak := userAddrKey(in.Username, in.RemoteAddr), addrKey(in.RemoteAddr)
	wait, release := s.limiter.reserve(now, uk, ak)
	defer release()
	if wait > 0 {
		return &RateLimitError{RetryAfter: wait}
	}
	rec, err := s.loadUser(ctx, in.Username)
	if err != nil {
		return err
	}
	cur := in.Current
	if len(cur) > maxPasswordBytes {
		cur = ""
	}
	ok, err := s.verifyPassword(rec.PasswordHash, cur)
	if err != nil {
		return fmt.Errorf("auth: change password: %w", err)
	}
	if ok && s.underAttack(rec, now) && s.limiter.failed(now, uk) {
		ok = false // as at login: no more real guesses from an address that failed
	}
	if !ok {
		s.countFailure(ctx, rec.Username, now)
		return s.loginFailed(now, LoginInput{Username: in.Username, RemoteAddr: in.RemoteAddr}, "bad current password", uk, ak)
	}
	if rec.TOTP.Enabled {
		if in.TOTP == "" {
			return ErrMFARequired
		}
		if _, err := s.checkSecondFactor(ctx, rec.Username, in.TOTP, now); err != nil {
			s.countFailure(ctx, rec.Username, now)
			return err
		}
	}
	s.limiter.reset(uk)
	if err := s.setPassword(ctx, in.Username, in.New); err != nil {
		return err
	}
	n, err := s.revokeOtherSessions(ctx, in.Username, in.KeepSID)
	if err != nil {
		return fmt.Errorf("auth: password changed, but ending the other sessions failed (retry, or revoke them): %w", err)
	}
	s.log.Info("password changed", "username", in.Username, "sessions_ended", n)
	return nil
}

// SetPassword is an administrator's reset of username's password: it ends
// every session of the user. A user with TOTP still needs their second
// factor to log in, so a reset alone does not hand over an MFA account.
func (s *Service) SetPassword(ctx context.Context, username string, pw secret.String) error {
	if err := s.requireStarted(); err != nil {
		return err
	}
	if err := checkPassword(pw); err != nil {
		return err
	}
	if err := s.setPassword(ctx, username, pw); err != nil {
		return err
	}
	n, err := s.revokeOtherSessions(ctx, username, "")
	if err != nil {
		return fmt.Errorf("auth: password reset, but ending the sessions failed (retry, or revoke them): %w", err)
	}
	s.log.Info("password reset by an administrator", "username", username, "sessions_ended", n)
	return nil
}

func (s *Service) setPassword(ctx context.Context, username string, pw secret.String) error {
	phc, err := s.hashPassword(pw)
	if err != nil {
		return err
	}
	_, err = s.updateUser(ctx, username, func(rec *userRecord) error {
		rec.PasswordHash = phc
		rec.LoginFailures, rec.LoginFailuresSince = 0, time.Time{}
		return nil
	})
	return err
}

// revokeOtherSessions ends every session of username but keep.
func (s *Service) revokeOtherSessions(ctx context.Context, username, keep string) (int, error) {
	recs, err := s.allSessions(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range recs {
		if r.Username != username || (keep != "" && r.ID == keep) {
			continue
		}
		if err := s.revoke(ctx, r); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
