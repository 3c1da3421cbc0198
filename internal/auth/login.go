package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/moonvault/moonvault/internal/secret"
)

// LoginInput is a login attempt.
type LoginInput struct {
	Username   string
	Password   secret.String
	TOTP       secret.String // a TOTP code or a recovery code; may be empty
	RemoteAddr string
	UserAgent  string
}

// Login checks a password (and second factor when enrolled) and starts a
// session. Unknown users and wrong passwords give the same error after the
// same argon2 work; failures are throttled per user and per address.
func (s *Service) Login(ctx context.Context, in LoginInput) (*Tokens, error) {
	if err := s.requireStarted(); err != nil {
		return nil, err
	}
	now := s.now()
	uk, ak := userKey(in.Username), addrKey(in.RemoteAddr)
	wait, release := s.limiter.reserve(now, uk, ak)
	defer release()
	if wait > 0 {
		s.log.Warn("login throttled", "username", in.Username, "remote_addr", in.RemoteAddr, "retry_after", int(wait.Seconds()+0.999))
		return nil, &RateLimitError{RetryAfter: wait}
	}
	rec, err := s.loadUser(ctx, in.Username)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err // storage trouble: fail closed, do not count
	}
	phc, pw := s.dummyPHC, in.Password
	if rec != nil {
		phc = rec.PasswordHash
	}
	if len(pw) > maxPasswordBytes {
		pw = "" // bound the work; still hash so the timing does not tell
		rec = nil
	}
	ok, err := s.verifyPassword(phc, pw)
	if err != nil {
		return nil, fmt.Errorf("auth: login: %w", err)
	}
	if rec == nil || !ok {
		return nil, s.loginFailed(now, in, "bad username or password", uk, ak)
	}
	if rec.Disabled {
		return nil, ErrUserDisabled
	}
	amr := []string{"pwd"}
	if rec.TOTP.Enabled {
		if in.TOTP == "" {
			return nil, ErrMFARequired
		}
		method, err := s.checkSecondFactor(ctx, rec.Username, in.TOTP, now)
		if errors.Is(err, ErrInvalidCredentials) {
			return nil, s.loginFailed(now, in, "bad second factor", uk, ak)
		}
		if err != nil {
			return nil, err
		}
		amr = append(amr, method)
	}
	s.limiter.reset(uk)
	t, err := s.newSession(ctx, rec.Username, rec.Role, amr, s.cfg.SessionLifetime, true, in.RemoteAddr, in.UserAgent)
	if err != nil {
		return nil, err
	}
	s.log.Info("login", "username", rec.Username, "remote_addr", in.RemoteAddr, "amr", amr)
	return t, nil
}

func (s *Service) loginFailed(now time.Time, in LoginInput, reason string, keys ...string) error {
	s.limiter.fail(now, keys...)
	s.log.Warn("login failed", "username", in.Username, "remote_addr", in.RemoteAddr, "reason", reason)
	return ErrInvalidCredentials
}
