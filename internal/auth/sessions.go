package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
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
	t, _, err := s.newSessionID(ctx, username, role, amr, lifetime, refresh, addr, ua)
	return t, err
}

// newSessionID is newSession that also returns the session id.
func (s *Service) newSessionID(ctx context.Context, username, role string, amr []string, lifetime time.Duration, refresh bool, addr, ua string) (*Tokens, string, error) {
	now := s.now().UTC()
	sid, err := randomID()
	if err != nil {
		return nil, "", err
	}
	rec := &sessionRecord{ID: sid, Username: username, Role: role, CreatedAt: now, LastSeen: now,
		ExpiresAt: now.Add(lifetime), AuthTime: now, AMR: amr, RemoteAddr: clip(addr), UserAgent: clip(ua)}
	var rt string
	if refresh {
		if rt, rec.RefreshHash, err = s.newRefresh(sid); err != nil {
			return nil, "", err
		}
	}
	access, expIn, err := s.signAccess(rec, now)
	if err != nil {
		return nil, "", err
	}
	if err := s.putJSON(ctx, prefixSessions+sid, rec); err != nil {
		return nil, "", fmt.Errorf("auth: store session: %w", err)
	}
	return &Tokens{AccessToken: access, RefreshToken: rt, TokenType: "Bearer", ExpiresIn: expIn}, sid, nil
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
// token that was already rotated revokes the whole session. The rotation
// is a conditional update of the session record in storage, so it holds
// across nodes: of concurrent refreshes with one token (on any nodes)
// exactly one wins, the others see a rotated token, get
// ErrInvalidCredentials, and the session is revoked — a client must never
// refresh concurrently.
func (s *Service) Refresh(ctx context.Context, refresh secret.String, remoteAddr, ua string) (*Tokens, error) {
	if err := s.requireStarted(); err != nil {
		return nil, err
	}
	sid, hash, ok := parseRefresh(refresh.Reveal())
	if !ok || !validSID(sid) {
		return nil, ErrInvalidCredentials
	}
	mu := s.lock("session:" + sid)
	mu.Lock()
	defer mu.Unlock()
	if s.isRevoked(sid) {
		return nil, ErrSessionRevoked
	}
	rt, newHash, err := s.newRefresh(sid)
	if err != nil {
		return nil, err
	}
	// The user must still exist and be enabled: a session that outlived
	// its user (a login racing a deletion) ends here.
	if cur, err := s.loadSession(ctx, sid); err == nil {
		if err := s.checkUser(ctx, cur.Username); errors.Is(err, ErrUserDisabled) {
			_ = s.revoke(ctx, cur)
			return nil, err
		} else if err != nil {
			return nil, err
		}
	}
	now := s.now().UTC()
	liveSeen := s.liveLastSeen(sid)
	var (
		rec     *sessionRecord
		outcome error // why the token was refused, decided on the stored record
	)
	err = s.kv.Update(ctx, prefixSessions+sid, func(cur []byte, found bool) ([]byte, bool, error) {
		rec, outcome = nil, nil
		if !found {
			return nil, false, ErrInvalidCredentials
		}
		var r sessionRecord
		if err := json.Unmarshal(cur, &r); err != nil {
			return nil, false, fmt.Errorf("auth: decode session: %w", err)
		}
		rec = &r
		if len(r.RefreshHash) == 0 || subtle.ConstantTimeCompare(r.RefreshHash, hash) != 1 {
			outcome = ErrInvalidCredentials
			for _, h := range r.PrevHashes {
				if subtle.ConstantTimeCompare(h, hash) == 1 {
					outcome = errRefreshReused
				}
			}
			return nil, false, outcome
		}
		lastSeen := r.LastSeen
		if liveSeen.After(lastSeen) {
			lastSeen = liveSeen
		}
		switch {
		case !now.Before(r.ExpiresAt):
			outcome = fmt.Errorf("%w: session expired", ErrSessionRevoked)
			return nil, false, outcome
		case now.Sub(lastSeen) > s.cfg.IdleTimeout:
			outcome = fmt.Errorf("%w: session idle", ErrSessionRevoked)
			return nil, false, outcome
		}
		r.PrevHashes = append(r.PrevHashes, r.RefreshHash)
		if len(r.PrevHashes) > maxPrevHashes {
			r.PrevHashes = r.PrevHashes[len(r.PrevHashes)-maxPrevHashes:]
		}
		r.RefreshHash = newHash
		r.LastSeen = now
		r.RemoteAddr, r.UserAgent = clip(remoteAddr), clip(ua)
		b, err := jsonBytes(&r)
		return b, false, err
	})
	switch {
	case errors.Is(outcome, errRefreshReused):
		s.log.Warn("refresh token reuse: session revoked", "sid", sid, "username", rec.Username, "remote_addr", remoteAddr)
		if err := s.revoke(ctx, rec); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: refresh token reused, session revoked", ErrInvalidCredentials)
	case outcome != nil && errors.Is(outcome, ErrSessionRevoked):
		_ = s.revoke(ctx, rec)
		return nil, outcome
	case err != nil:
		return nil, err
	}
	access, expIn, err := s.signAccess(rec, now)
	if err != nil {
		return nil, err
	}
	s.touchLive(sid, now)
	return &Tokens{AccessToken: access, RefreshToken: rt, TokenType: "Bearer", ExpiresIn: expIn}, nil
}

// errRefreshReused: a rotated refresh token was presented again.
var errRefreshReused = errors.New("auth: refresh token reused")

func validSID(sid string) bool {
	return sid != "" && len(sid) <= 64 && !strings.ContainsAny(sid, "/.")
}

// checkUser fails unless username (not the root principal) exists in
// storage and is enabled. It reads storage: it runs when a session is first
// seen on this node, at refresh and after login, never per request.
func (s *Service) checkUser(ctx context.Context, username string) error {
	if username == RootSubject {
		return nil
	}
	rec, err := s.loadUser(ctx, username)
	switch {
	case errors.Is(err, ErrNotFound):
		s.setDisabledLocal(username, true)
		return fmt.Errorf("%w: user deleted", ErrUserDisabled)
	case err != nil:
		return err
	case rec.Disabled:
		s.setDisabledLocal(username, true)
		return ErrUserDisabled
	}
	return nil
}

func (s *Service) loadSession(ctx context.Context, sid string) (*sessionRecord, error) {
	if !validSID(sid) {
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
		// Conditional: a refresh on another node between the read and the
		// write must not be undone (it would revive the old refresh token).
		t := time.Unix(0, it.ns).UTC()
		err := s.kv.Update(ctx, prefixSessions+it.sid, func(cur []byte, found bool) ([]byte, bool, error) {
			if !found || s.isRevoked(it.sid) {
				return nil, false, errNoChange
			}
			var rec sessionRecord
			if err := json.Unmarshal(cur, &rec); err != nil {
				return nil, false, fmt.Errorf("auth: decode session: %w", err)
			}
			if !t.After(rec.LastSeen) {
				return nil, false, errNoChange
			}
			rec.LastSeen = t
			b, err := jsonBytes(&rec)
			return b, false, err
		})
		mu.Unlock()
		if err == nil || errors.Is(err, errNoChange) {
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
	return s.revokeOtherSessions(ctx, username, "")
}
