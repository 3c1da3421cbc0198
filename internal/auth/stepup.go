package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/secret"
)

// ErrNoSecondFactor: step-up asked of a user with no TOTP enrolled.
var ErrNoSecondFactor = errkind.New(errkind.Conflict, "mfa_not_enrolled", "no second factor is enrolled for this user; set up TOTP first")

// StepUp re-authenticates a live session with a fresh second factor (a TOTP
// code, or an unused recovery code): the session's auth_time becomes now
// and its amr gains the method, and a new access token carries both, so
// operations that need a recent second factor (policy step-up) pass for
// the next StepUpMaxAge. This is re-authentication in the sense of NIST
// SP 800-63B §7.2 and OIDC max_age. The refresh token is unchanged.
// Failures count toward the login limits of the user and the address.
func (s *Service) StepUp(ctx context.Context, p *identity.Principal, code secret.String, remoteAddr string) (*Tokens, error) {
	if err := s.requireStarted(); err != nil {
		return nil, err
	}
	if p == nil || p.SessionID == "" || p.IsAPIKey() || p.Subject == RootSubject {
		return nil, invalid("session", "step-up needs a user session")
	}
	if code == "" {
		return nil, invalid("code", "required")
	}
	now := s.now()
	uk, ak := userAddrKey(p.Subject, remoteAddr), addrKey(remoteAddr)
	wait, release := s.limiter.reserve(now, uk, ak)
	defer release()
	if wait > 0 {
		return nil, &RateLimitError{RetryAfter: wait}
	}
	rec, err := s.loadUser(ctx, p.Subject)
	if err != nil {
		return nil, err
	}
	if rec.Disabled {
		return nil, ErrUserDisabled
	}
	if !rec.TOTP.Enabled {
		return nil, ErrNoSecondFactor
	}
	method, err := s.checkSecondFactor(ctx, rec.Username, code, now)
	if errors.Is(err, ErrInvalidCredentials) {
		return nil, s.loginFailed(now, LoginInput{Username: p.Subject, RemoteAddr: remoteAddr}, "bad step-up code", uk, ak)
	}
	if err != nil {
		return nil, err
	}
	mu := s.lock("session:" + p.SessionID)
	mu.Lock()
	defer mu.Unlock()
	if s.isRevoked(p.SessionID) {
		return nil, ErrSessionRevoked
	}
	sess, err := s.loadSession(ctx, p.SessionID)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrSessionRevoked
	}
	if err != nil {
		return nil, err
	}
	if sess.Username != p.Subject || !now.Before(sess.ExpiresAt) {
		return nil, ErrSessionRevoked
	}
	sess.AuthTime = now.UTC()
	if !slices.Contains(sess.AMR, method) {
		sess.AMR = append(sess.AMR, method)
	}
	access, expIn, err := s.signAccess(sess, now)
	if err != nil {
		return nil, err
	}
	if err := s.putJSON(ctx, prefixSessions+sess.ID, sess); err != nil {
		return nil, fmt.Errorf("auth: store session: %w", err)
	}
	s.limiter.reset(uk)
	s.touchLive(sess.ID, now)
	s.log.Info("step-up", "username", p.Subject, "sid", sess.ID, "method", method)
	return &Tokens{AccessToken: access, TokenType: "Bearer", ExpiresIn: expIn}, nil
}
