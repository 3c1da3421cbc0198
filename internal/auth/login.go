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
	if rec != nil {
		if wait := s.sharedThrottle(rec, now); wait > 0 {
			s.log.Warn("login throttled", "username", in.Username, "remote_addr", in.RemoteAddr, "retry_after", wait, "scope", "all nodes")
			return nil, &RateLimitError{RetryAfter: wait}
		}
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
		if rec != nil {
			s.countFailure(ctx, rec.Username, now)
		}
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
			s.countFailure(ctx, rec.Username, now)
			return nil, s.loginFailed(now, in, "bad second factor", uk, ak)
		}
		if err != nil {
			return nil, err
		}
		amr = append(amr, method)
	}
	s.limiter.reset(uk)
	if rec.LoginFailures > 0 {
		s.resetFailures(ctx, rec.Username)
	}
	t, sid, err := s.newSessionID(ctx, rec.Username, rec.Role, amr, s.cfg.SessionLifetime, true, in.RemoteAddr, in.UserAgent)
	if err != nil {
		return nil, err
	}
	// The user may have been deleted or disabled while the password was
	// checked: then the new session ends at once.
	if err := s.checkUser(ctx, rec.Username); err != nil {
		if sess, lerr := s.loadSession(ctx, sid); lerr == nil {
			_ = s.revoke(ctx, sess)
		}
		return nil, err
	}
	s.log.Info("login", "username", rec.Username, "remote_addr", in.RemoteAddr, "amr", amr)
	return t, nil
}

// sharedThrottle is how long username must wait by the failure count
// kept in its record, which every node shares (0: it may try).
func (s *Service) sharedThrottle(rec *userRecord, now time.Time) time.Duration {
	max, win := s.cfg.MaxLoginFailures, s.cfg.LoginFailureWindow
	if max <= 0 || rec.LoginFailures < max {
		return 0
	}
	return rec.LoginFailuresSince.Add(win).Sub(now)
}

// countFailure adds a failed login to the user's shared count. It writes in
// the background: the answer must not take longer for a user who exists
// than for one who does not (the argon2 work is what both pay).
func (s *Service) countFailure(ctx context.Context, username string, now time.Time) {
	if s.cfg.MaxLoginFailures <= 0 {
		return
	}
	s.bgUpdateUser(ctx, username, func(rec *userRecord) error {
		if rec.LoginFailures == 0 || now.Sub(rec.LoginFailuresSince) >= s.cfg.LoginFailureWindow {
			rec.LoginFailures, rec.LoginFailuresSince = 0, now.UTC()
		}
		rec.LoginFailures++
		return nil
	})
}

func (s *Service) resetFailures(ctx context.Context, username string) {
	s.bgUpdateUser(ctx, username, func(rec *userRecord) error {
		if rec.LoginFailures == 0 {
			return errNoChange
		}
		rec.LoginFailures, rec.LoginFailuresSince = 0, time.Time{}
		return nil
	})
}

func (s *Service) bgUpdateUser(ctx context.Context, username string, fn func(*userRecord) error) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, err := s.updateUser(ctx, username, fn); err != nil && !errors.Is(err, ErrNotFound) {
			s.log.Warn("could not update the shared login failure count", "username", username, "err", err)
		}
	}()
}

func (s *Service) loginFailed(now time.Time, in LoginInput, reason string, keys ...string) error {
	s.limiter.fail(now, keys...)
	s.log.Warn("login failed", "username", in.Username, "remote_addr", in.RemoteAddr, "reason", reason)
	return ErrInvalidCredentials
}
