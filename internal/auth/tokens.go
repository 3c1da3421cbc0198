package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"time"

	"github.com/moonvault/moonvault/internal/identity"
)

// maxTokenLen bounds what the hot path will hash or parse.
const maxTokenLen = 8 << 10

// cachedToken is a verified access token: a repeat request costs a SHA-256
// and map lookups instead of a signature verification.
type cachedToken struct {
	p    identity.Principal
	exp  int64 // unix nanoseconds: the token's exp
	live *liveSession
}

// Authenticate verifies a bearer access token and returns its principal.
// It is the hot path: a token seen before is served from a cache keyed by
// its SHA-256, but the revoked-session and disabled-user sets are checked
// on every call. Every failure wraps ErrUnauthenticated.
func (s *Service) Authenticate(ctx context.Context, bearer string) (*identity.Principal, error) {
	if !s.started.Load() {
		return nil, ErrNotStarted
	}
	if bearer == "" || len(bearer) > maxTokenLen {
		return nil, unauth("malformed token")
	}
	h := tokenHash(bearer)
	now := s.now()
	s.cacheMu.RLock()
	e := s.tokens[h]
	s.cacheMu.RUnlock()
	if e != nil && now.UnixNano() < e.exp {
		return s.admit(e, now)
	}
	return s.authenticateSlow(ctx, bearer, h, now)
}

// tokenHash is SHA-256 of a token, copied through a stack buffer so the
// hot path does not allocate a token-sized slice per request.
func tokenHash(tok string) [32]byte {
	var buf [2048]byte
	if len(tok) <= len(buf) {
		n := copy(buf[:], tok)
		return sha256.Sum256(buf[:n])
	}
	return sha256.Sum256([]byte(tok))
}

// admit applies the per-request checks to a verified token.
func (s *Service) admit(e *cachedToken, now time.Time) (*identity.Principal, error) {
	s.stateMu.RLock()
	_, revoked := s.revoked[e.p.SessionID]
	_, disabled := s.disabled[e.p.Subject]
	s.stateMu.RUnlock()
	switch {
	case disabled:
		return nil, ErrUserDisabled
	case revoked:
		return nil, ErrSessionRevoked
	case now.UnixNano() >= e.live.expires:
		return nil, ErrSessionRevoked
	}
	e.live.lastSeen.Store(now.UnixNano())
	p := e.p
	return &p, nil
}

func (s *Service) authenticateSlow(ctx context.Context, bearer string, h [32]byte, now time.Time) (*identity.Principal, error) {
	var c accessClaims
	if _, err := s.parser.ParseWithClaims(bearer, &c, s.keyfunc); err != nil {
		return nil, unauth(tokenCheck(err))
	}
	if c.Subject == "" || c.SID == "" || c.ID == "" || c.ExpiresAt == nil || c.AuthTime == 0 || len(c.AMR) > 8 {
		return nil, unauth("required claim missing")
	}
	if c.Role != identity.RoleAdmin && c.Role != identity.RoleUser {
		return nil, unauth("unknown role")
	}
	if s.isRevoked(c.SID) {
		return nil, ErrSessionRevoked
	}
	live, err := s.liveSession(ctx, c.SID, c.Subject)
	if err != nil {
		return nil, err
	}
	e := &cachedToken{
		p: identity.Principal{
			Subject:   c.Subject,
			SessionID: c.SID,
			Owner:     c.Subject,
			Role:      c.Role,
			AMR:       c.AMR,
			AuthTime:  time.Unix(c.AuthTime, 0).UTC(),
			TokenID:   c.ID,
		},
		exp:  c.ExpiresAt.UnixNano(),
		live: live,
	}
	s.cacheToken(h, e)
	return s.admit(e, now)
}

// liveSession returns this node's view of a session, loading it from
// storage the first time: a token whose session is gone is refused.
func (s *Service) liveSession(ctx context.Context, sid, sub string) (*liveSession, error) {
	s.stateMu.RLock()
	l := s.live[sid]
	s.stateMu.RUnlock()
	if l != nil {
		if l.username != sub {
			return nil, unauth("subject does not match session")
		}
		return l, nil
	}
	rec, err := s.loadSession(ctx, sid)
	if errors.Is(err, ErrNotFound) {
		return nil, unauth("session not found")
	}
	if err != nil {
		return nil, err // storage trouble is not the caller's fault: 503
	}
	if rec.Username != sub {
		return nil, unauth("subject does not match session")
	}
	// First use of the session on this node: its user must still exist and
	// be enabled (a login may have raced the user's deletion). Later
	// requests check the in-memory refused set, kept current by the change
	// feed and the periodic resync.
	if err := s.checkUser(ctx, sub); err != nil {
		return nil, err
	}
	l = &liveSession{username: rec.Username, expires: rec.ExpiresAt.UnixNano()}
	l.lastSeen.Store(rec.LastSeen.UnixNano())
	l.persisted.Store(rec.LastSeen.UnixNano())
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if _, revoked := s.revoked[sid]; revoked {
		return nil, ErrSessionRevoked
	}
	if cur := s.live[sid]; cur != nil {
		return cur, nil
	}
	s.live[sid] = l
	return l, nil
}

// cacheToken stores a verified token, bounded: expired entries go first,
// then arbitrary ones (they are only a cache).
func (s *Service) cacheToken(h [32]byte, e *cachedToken) {
	now := s.now().UnixNano()
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if len(s.tokens) >= maxTokenCache {
		for k, v := range s.tokens {
			if v.exp <= now {
				delete(s.tokens, k)
			}
		}
		for k := range s.tokens {
			if len(s.tokens) < maxTokenCache*9/10 {
				break
			}
			delete(s.tokens, k)
		}
	}
	s.tokens[h] = e
}
