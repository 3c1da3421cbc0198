package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

// Session is the public view of a session.
type Session struct {
	ID         string    `json:"id"`
	Username   string    `json:"username"`
	CreatedAt  time.Time `json:"created_at"`
	LastSeen   time.Time `json:"last_seen"`
	RemoteAddr string    `json:"remote_addr"`
	UserAgent  string    `json:"user_agent"`
	ExpiresAt  time.Time `json:"expires_at"`
	AMR        []string  `json:"amr"`
}

// Tokens is what login and refresh return (RFC 6749 §5.1).
type Tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
}

type sessionRecord struct {
	ID         string    `json:"id"`
	Username   string    `json:"username"`
	Role       string    `json:"role"`
	CreatedAt  time.Time `json:"created_at"`
	LastSeen   time.Time `json:"last_seen"`
	ExpiresAt  time.Time `json:"expires_at"`
	AuthTime   time.Time `json:"auth_time"`
	AMR        []string  `json:"amr"`
	RemoteAddr string    `json:"remote_addr"`
	UserAgent  string    `json:"user_agent"`
	// RefreshHash is SHA-256 of the current refresh secret; PrevHashes are
	// the rotated ones, kept to detect reuse (OAuth 2.0 Security BCP §4.14.2).
	RefreshHash []byte   `json:"refresh_hash,omitempty"`
	PrevHashes  [][]byte `json:"prev_hashes,omitempty"`
}

func (r *sessionRecord) public() Session {
	return Session{ID: r.ID, Username: r.Username, CreatedAt: r.CreatedAt, LastSeen: r.LastSeen,
		RemoteAddr: r.RemoteAddr, UserAgent: r.UserAgent, ExpiresAt: r.ExpiresAt, AMR: r.AMR}
}

// liveSession is this node's in-memory view of a session in use: the hot
// path updates lastSeen without touching storage.
type liveSession struct {
	username  string
	expires   int64 // unix nanoseconds, absolute lifetime
	lastSeen  atomic.Int64
	persisted atomic.Int64
}

const (
	refreshSecretLen = 32
	maxPrevHashes    = 64
	maxFieldLen      = 256
)

func clip(s string) string {
	if len(s) > maxFieldLen {
		return s[:maxFieldLen]
	}
	return s
}

// newSession stores a session and returns its tokens. refresh=false for
// the root token.
func (s *Service) newSession(ctx context.Context, username, role string, amr []string, lifetime time.Duration, refresh bool, addr, ua string) (*Tokens, error) {
	now := s.now().UTC()
	sid, err := randomID()
	if err != nil {
		return nil, err
	}
	rec := &sessionRecord{ID: sid, Username: username, Role: role, CreatedAt: now, LastSeen: now,
		ExpiresAt: now.Add(lifetime), AuthTime: now, AMR: amr, RemoteAddr: clip(addr), UserAgent: clip(ua)}
	var rt string
	if refresh {
		if rt, rec.RefreshHash, err = s.newRefresh(sid); err != nil {
			return nil, err
		}
	}
	access, expIn, err := s.signAccess(rec, now)
	if err != nil {
		return nil, err
	}
	if err := s.putJSON(ctx, prefixSessions+sid, rec); err != nil {
		return nil, fmt.Errorf("auth: store session: %w", err)
	}
	return &Tokens{AccessToken: access, RefreshToken: rt, TokenType: "Bearer", ExpiresIn: expIn}, nil
}

// newRefresh makes a refresh token "<sid>.<base64url(32 random bytes)>".
// The sid prefix locates the session; only the secret's hash is stored.
func (s *Service) newRefresh(sid string) (string, []byte, error) {
	b, err := s.randomSecret(refreshSecretLen)
	if err != nil {
		return "", nil, err
	}
	defer secret.Wipe(b)
	sum := sha256.Sum256(b)
	return sid + "." + base64.RawURLEncoding.EncodeToString(b), sum[:], nil
}

func parseRefresh(tok string) (sid string, hash []byte, ok bool) {
	sid, enc, found := strings.Cut(tok, ".")
	if !found || sid == "" || len(sid) > 64 || len(enc) != base64.RawURLEncoding.EncodedLen(refreshSecretLen) {
		return "", nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return "", nil, false
	}
	sum := sha256.Sum256(b)
	secret.Wipe(b)
	return sid, sum[:], true
}

// IssueRootToken starts a bootstrap session: subject "root", role admin,
// amr ["root"], one hour, no refresh token; it is revocable like any other.
func (s *Service) IssueRootToken(ctx context.Context) (*Tokens, error) {
	if err := s.requireStarted(); err != nil {
		return nil, err
	}
	t, err := s.newSession(ctx, RootSubject, "admin", []string{"root"}, rootSessionLifetime, false, "", "")
	if err == nil {
		s.log.Warn("root token issued")
	}
	return t, err
}

// Refresh exchanges a refresh token for new tokens and rotates it.
//
// Reuse detection (OAuth 2.0 Security BCP §4.14.2): presenting a refresh
// token that was already rotated revokes the whole session. Concurrent
// refreshes with one token are serialized per session: exactly one wins,
// the others see a rotated token, get ErrInvalidCredentials, and the
// session is revoked — a client must never refresh concurrently.
func (s *Service) Refresh(ctx context.Context, refresh secret.String, remoteAddr, ua string) (*Tokens, error) {
	if err := s.requireStarted(); err != nil {
		return nil, err
	}
	sid, hash, ok := parseRefresh(refresh.Reveal())
	if !ok {
		return nil, ErrInvalidCredentials
	}
	mu := s.lock("session:" + sid)
	mu.Lock()
	defer mu.Unlock()
	if s.isRevoked(sid) {
		return nil, ErrSessionRevoked
	}
	rec, err := s.loadSession(ctx, sid)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrInvalidCredentials
	}
	if err != nil {
		return nil, err
	}
	if len(rec.RefreshHash) == 0 || subtle.ConstantTimeCompare(rec.RefreshHash, hash) != 1 {
		for _, h := range rec.PrevHashes {
			if subtle.ConstantTimeCompare(h, hash) == 1 {
				s.log.Warn("refresh token reuse: session revoked", "sid", sid, "username", rec.Username, "remote_addr", remoteAddr)
				if err := s.revoke(ctx, rec); err != nil {
					return nil, err
				}
				return nil, fmt.Errorf("%w: refresh token reused, session revoked", ErrInvalidCredentials)
			}
		}
		return nil, ErrInvalidCredentials
	}
	now := s.now().UTC()
	lastSeen := rec.LastSeen
	if l := s.liveLastSeen(sid); l.After(lastSeen) {
		lastSeen = l
	}
	switch {
	case !now.Before(rec.ExpiresAt):
		_ = s.revoke(ctx, rec)
		return nil, fmt.Errorf("%w: session expired", ErrSessionRevoked)
	case now.Sub(lastSeen) > s.cfg.IdleTimeout:
		_ = s.revoke(ctx, rec)
		return nil, fmt.Errorf("%w: session idle", ErrSessionRevoked)
	case s.isDisabled(rec.Username):
		return nil, ErrUserDisabled
	}
	rt, newHash, err := s.newRefresh(sid)
	if err != nil {
		return nil, err
	}
	access, expIn, err := s.signAccess(rec, now)
	if err != nil {
		return nil, err
	}
	rec.PrevHashes = append(rec.PrevHashes, rec.RefreshHash)
	if len(rec.PrevHashes) > maxPrevHashes {
		rec.PrevHashes = rec.PrevHashes[len(rec.PrevHashes)-maxPrevHashes:]
	}
	rec.RefreshHash = newHash
	rec.LastSeen = now
	rec.RemoteAddr, rec.UserAgent = clip(remoteAddr), clip(ua)
	if err := s.putJSON(ctx, prefixSessions+sid, rec); err != nil {
		return nil, fmt.Errorf("auth: store session: %w", err)
	}
	s.touchLive(sid, now)
	return &Tokens{AccessToken: access, RefreshToken: rt, TokenType: "Bearer", ExpiresIn: expIn}, nil
}

func (s *Service) loadSession(ctx context.Context, sid string) (*sessionRecord, error) {
	if sid == "" || len(sid) > 64 || strings.ContainsAny(sid, "/.") {
		return nil, ErrNotFound
	}
	var rec sessionRecord
	if err := s.getJSON(ctx, prefixSessions+sid, &rec); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("auth: load session: %w", err)
	}
	return &rec, nil
}

// GetSession returns one session (ErrNotFound when absent or revoked).
func (s *Service) GetSession(ctx context.Context, sid string) (*Session, error) {
	if s.isRevoked(sid) {
		return nil, ErrNotFound
	}
	rec, err := s.loadSession(ctx, sid)
	if err != nil {
		return nil, err
	}
	p := rec.public()
	if l := s.liveLastSeen(sid); l.After(p.LastSeen) {
		p.LastSeen = l
	}
	return &p, nil
}

// Sessions lists the live sessions of username, or of everyone when
// username is "". It reads every session record (O(sessions)).
func (s *Service) Sessions(ctx context.Context, username string) ([]Session, error) {
	recs, err := s.allSessions(ctx)
	if err != nil {
		return nil, err
	}
	out := []Session{}
	for _, r := range recs {
		if (username == "" || r.Username == username) && !s.isRevoked(r.ID) {
			p := r.public()
			if l := s.liveLastSeen(r.ID); l.After(p.LastSeen) {
				p.LastSeen = l
			}
			out = append(out, p)
		}
	}
	return out, nil
}

func (s *Service) allSessions(ctx context.Context) ([]*sessionRecord, error) {
	keys, err := s.listAll(ctx, prefixSessions)
	if err != nil {
		return nil, err
	}
	out := make([]*sessionRecord, 0, len(keys))
	for _, k := range keys {
		rec, err := s.loadSession(ctx, strings.TrimPrefix(k, prefixSessions))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// touchLive records activity in memory (no storage write).
func (s *Service) touchLive(sid string, now time.Time) {
	s.stateMu.RLock()
	l := s.live[sid]
	s.stateMu.RUnlock()
	if l != nil {
		l.lastSeen.Store(now.UnixNano())
	}
}

func (s *Service) liveLastSeen(sid string) time.Time {
	s.stateMu.RLock()
	l := s.live[sid]
	s.stateMu.RUnlock()
	if l == nil {
		return time.Time{}
	}
	return time.Unix(0, l.lastSeen.Load()).UTC()
}

// flushLastSeen persists in-memory last-seen times that advanced by at
// least lastSeenPersistEach (all of them when force), at most one write
// per session per period, off the hot path.
func (s *Service) flushLastSeen(ctx context.Context, force bool) {
	type item struct {
		sid string
		ns  int64
		l   *liveSession
	}
	var todo []item
	s.stateMu.RLock()
	for sid, l := range s.live {
		ns := l.lastSeen.Load()
		if ns > l.persisted.Load() && (force || ns-l.persisted.Load() >= int64(lastSeenPersistEach)) {
			todo = append(todo, item{sid, ns, l})
		}
	}
	s.stateMu.RUnlock()
	for _, it := range todo {
		mu := s.lock("session:" + it.sid)
		mu.Lock()
		rec, err := s.loadSession(ctx, it.sid)
		if err == nil && !s.isRevoked(it.sid) {
			if t := time.Unix(0, it.ns).UTC(); t.After(rec.LastSeen) {
				rec.LastSeen = t
				err = s.putJSON(ctx, prefixSessions+it.sid, rec)
			}
		}
		mu.Unlock()
		if err == nil || errors.Is(err, ErrNotFound) {
			it.l.persisted.Store(it.ns)
		} else {
			s.log.Warn("persist session last-seen failed", "sid", it.sid, "err", err)
		}
	}
}

// sweepSessions revokes sessions past their absolute lifetime or idle
// longer than IdleTimeout, and prunes expired revocation entries.
func (s *Service) sweepSessions(ctx context.Context) error {
	recs, err := s.allSessions(ctx)
	if err != nil {
		return err
	}
	now := s.now()
	for _, r := range recs {
		last := r.LastSeen
		if l := s.liveLastSeen(r.ID); l.After(last) {
			last = l
		}
		if !now.Before(r.ExpiresAt) || now.Sub(last) > s.cfg.IdleTimeout {
			if err := s.revoke(ctx, r); err != nil {
				return err
			}
			s.log.Info("session ended", "sid", r.ID, "username", r.Username, "reason", "expired or idle")
		}
	}
	return s.pruneRevoked(ctx)
}

// RevokeSession ends one session at once, on every node.
func (s *Service) RevokeSession(ctx context.Context, sid string) error {
	rec, err := s.loadSession(ctx, sid)
	if err != nil {
		return err
	}
	mu := s.lock("session:" + sid)
	mu.Lock()
	defer mu.Unlock()
	return s.revoke(ctx, rec)
}

// RevokeUserSessions ends every session of username; it returns how many.
func (s *Service) RevokeUserSessions(ctx context.Context, username string) (int, error) {
	recs, err := s.allSessions(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range recs {
		if r.Username != username {
			continue
		}
		if err := s.revoke(ctx, r); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
