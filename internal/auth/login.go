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
// same argon2 work.
//
// Throttling (OWASP Authentication Cheat Sheet; decided in review L2):
//   - Per node, in memory, so that it cannot depend on whether the name
//     exists: at most MaxLoginFailures failures per LoginFailureWindow from
//     one client address (IPv4, or IPv6 /64) whatever the names, and as
//     many for one name from one address; past them, 429.
//   - Across nodes, in the user record: the failures of the account from
//     everywhere. At MaxLoginFailures the account is under attack: then an
//     address that has already failed for it in the window gets no more
//     real guesses (refused like a wrong password, even with the right
//     one), while an address that has not (the user's own) still logs in.
//     A remote attacker so cannot lock a user, or an admin, out, and a
//     distributed one gets one guess per address and window, not ten.
func (s *Service) Login(ctx context.Context, in LoginInput) (*Tokens, error) {
	if err := s.requireStarted(); err != nil {
		return nil, err
	}
	now := s.now()
	uk, ak := userAddrKey(in.Username, in.RemoteAddr), addrKey(in.RemoteAddr)
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
	if rec != nil && ok && s.underAttack(rec, now) && s.limiter.failed(now, uk) {
		// The same answer as a wrong password: whether this guess was
		// right is not told to an address that has guessed wrong before.
		s.log.Warn("login refused: the account is under attack and this address already failed for it",
			"username", in.Username, "remote_addr", in.RemoteAddr)
		ok = false
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
	if rec.LoginFailures > 0 && !s.underAttack(rec, now) {
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

// underAttack reports whether the account's failure count, which every
// node shares, reached the limit in the current window.
func (s *Service) underAttack(rec *userRecord, now time.Time) bool {
	max, win := s.cfg.MaxLoginFailures, s.cfg.LoginFailureWindow
	return max > 0 && rec.LoginFailures >= max && now.Sub(rec.LoginFailuresSince) < win
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
