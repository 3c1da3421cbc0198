package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/storage"
)

type revokedRecord struct {
	SID       string    `json:"sid"`
	Username  string    `json:"username"`
	RevokedAt time.Time `json:"revoked_at"`
	// PruneAfter: every token of the session has expired by then, so the
	// entry can go.
	PruneAfter time.Time `json:"prune_after"`
}

// Logout ends the principal's session.
func (s *Service) Logout(ctx context.Context, p *identity.Principal) error {
	if p == nil || p.SessionID == "" {
		return invalid("session", "API keys have no session; revoke the key instead")
	}
	return s.RevokeSession(ctx, p.SessionID)
}

func (s *Service) isRevoked(sid string) bool {
	s.stateMu.RLock()
	_, ok := s.revoked[sid]
	s.stateMu.RUnlock()
	return ok
}

// revoke marks the session revoked in memory first (this node refuses it
// at once, even if storage fails), then records the revocation and deletes
// the session in one atomic batch. Callers hold the session lock or accept
// the race with a refresh (the revocation wins: the sid is refused).
func (s *Service) revoke(ctx context.Context, rec *sessionRecord) error {
	pruneAfter := rec.ExpiresAt.Add(s.cfg.Leeway + time.Minute)
	s.stateMu.Lock()
	s.revoked[rec.ID] = pruneAfter.UnixNano()
	delete(s.live, rec.ID)
	s.stateMu.Unlock()
	rr := revokedRecord{SID: rec.ID, Username: rec.Username, RevokedAt: s.now().UTC(), PruneAfter: pruneAfter}
	b, err := jsonBytes(rr)
	if err != nil {
		return err
	}
	err = s.kv.Batch(ctx, []storage.Op{
		{Key: prefixRevoked + rec.ID, Value: b},
		{Key: prefixSessions + rec.ID, Delete: true},
	})
	if err != nil {
		return fmt.Errorf("auth: revoke session: %w", err)
	}
	s.log.Info("session revoked", "sid", rec.ID, "username", rec.Username)
	return nil
}

// loadState loads revocations and disabled users (at Start and on resync).
func (s *Service) loadState(ctx context.Context) error {
	s.stateMu.RLock()
	gen := s.disabledGen
	s.stateMu.RUnlock()
	revoked, err := s.loadRevoked(ctx)
	if err != nil {
		return err
	}
	// The refused set: disabled users, deleted users (tombstones), and
	// users whose record fails its integrity check (reported, refused).
	disabled := map[string]struct{}{}
	users, err := s.listAll(ctx, prefixUsers)
	if err != nil {
		return err
	}
	for _, k := range users {
		name := strings.TrimPrefix(k, prefixUsers)
		rec, err := s.loadUser(ctx, name)
		switch {
		case errors.Is(err, ErrNotFound):
			continue
		case badRecord(err):
			s.log.Error("user record failed its integrity check; the user is refused until it is repaired", "username", name, "err", err)
			disabled[name] = struct{}{}
		case err != nil:
			return err
		case rec.Disabled:
			disabled[rec.Username] = struct{}{}
		}
	}
	deleted, err := s.listAll(ctx, prefixDeletedUsers)
	if err != nil {
		return err
	}
	for _, k := range deleted {
		disabled[strings.TrimPrefix(k, prefixDeletedUsers)] = struct{}{}
	}
	s.stateMu.Lock()
	// Revocations only accumulate here; entries leave through pruning, so
	// a local revocation racing this reload is never lost.
	for sid, exp := range revoked {
		s.revoked[sid] = exp
		delete(s.live, sid)
	}
	// A local disable/enable during the reload wins; the next resync
	// catches up.
	if gen == s.disabledGen {
		s.disabled = disabled
	}
	s.stateMu.Unlock()
	return nil
}

func (s *Service) loadRevoked(ctx context.Context) (map[string]int64, error) {
	keys, err := s.listAll(ctx, prefixRevoked)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(keys))
	for _, k := range keys {
		var rr revokedRecord
		if err := s.getJSON(ctx, k, &rr); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			if badRecord(err) {
				// Fail safe: the session named by the path stays revoked
				// for as long as any session can live.
				s.log.Error("revocation record failed its integrity check; the session stays revoked", "key", k, "err", err)
				out[strings.TrimPrefix(k, prefixRevoked)] = s.now().Add(s.cfg.SessionLifetime + rootSessionLifetime).UnixNano()
				continue
			}
			return nil, fmt.Errorf("auth: load revocations: %w", err)
		}
		out[strings.TrimPrefix(k, prefixRevoked)] = rr.PruneAfter.UnixNano()
	}
	return out, nil
}

// resync is the full reload behind the change feed.
func (s *Service) resync(ctx context.Context) error {
	if err := s.loadState(ctx); err != nil {
		return err
	}
	if err := s.loadKeys(ctx); err != nil {
		return err
	}
	s.dropAPIKeyCache()
	return nil
}

// onChange applies one change-feed notification.
func (s *Service) onChange(ctx context.Context, key string) {
	var err error
	switch {
	case key == "":
		err = s.resync(ctx)
	case strings.HasPrefix(key, prefixRevoked):
		var rr revokedRecord
		if e := s.getJSON(ctx, key, &rr); e == nil {
			s.stateMu.Lock()
			s.revoked[strings.TrimPrefix(key, prefixRevoked)] = rr.PruneAfter.UnixNano()
			delete(s.live, strings.TrimPrefix(key, prefixRevoked))
			s.stateMu.Unlock()
		} else if !errors.Is(e, storage.ErrNotFound) {
			err = e
		}
	case strings.HasPrefix(key, prefixUsers):
		name := strings.TrimPrefix(key, prefixUsers)
		rec, e := s.loadUser(ctx, name)
		switch {
		case e == nil:
			s.setDisabledLocal(name, rec.Disabled)
		case errors.Is(e, ErrNotFound), badRecord(e):
			// Deleted (names are never reused), or unreadable: refused.
			s.setDisabledLocal(name, true)
		default:
			err = e
		}
		s.dropAPIKeyCache()
	case strings.HasPrefix(key, prefixDeletedUsers):
		s.setDisabledLocal(strings.TrimPrefix(key, prefixDeletedUsers), true)
		s.dropAPIKeyCache()
	case strings.HasPrefix(key, prefixJWTKeys):
		err = s.loadKeys(ctx)
	case strings.HasPrefix(key, prefixAPIKeys):
		s.dropAPIKeyCache()
	}
	if err != nil {
		// Fail safe: the periodic resync will retry.
		s.log.Warn("auth change feed: reload failed", "key", key, "err", err)
	}
}

// badRecord reports a stored record that failed its integrity check (the
// barrier's integrity kind) or does not decode: reported and refused, it
// must not stop the service.
func badRecord(err error) bool {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	return errkind.Is(err, errkind.Integrity) || errors.As(err, &se) || errors.As(err, &te)
}

func (s *Service) setDisabledLocal(username string, disabled bool) {
	s.stateMu.Lock()
	if disabled {
		s.disabled[username] = struct{}{}
	} else {
		delete(s.disabled, username)
	}
	s.disabledGen++
	s.stateMu.Unlock()
}

// pruneRevoked forgets revocations whose sessions could no longer be used.
func (s *Service) pruneRevoked(ctx context.Context) error {
	now := s.now().UnixNano()
	var old []string
	s.stateMu.RLock()
	for sid, exp := range s.revoked {
		if exp < now {
			old = append(old, sid)
		}
	}
	s.stateMu.RUnlock()
	for _, sid := range old {
		if err := s.kv.Delete(ctx, prefixRevoked+sid); err != nil {
			return fmt.Errorf("auth: prune revocation: %w", err)
		}
		s.stateMu.Lock()
		delete(s.revoked, sid)
		s.stateMu.Unlock()
	}
	return nil
}

// pruneCaches drops expired cache entries and ended live sessions.
func (s *Service) pruneCaches() {
	now := s.now().UnixNano()
	s.cacheMu.Lock()
	for h, e := range s.tokens {
		if e.exp <= now {
			delete(s.tokens, h)
		}
	}
	for h, e := range s.apiCache {
		if e.until <= now {
			delete(s.apiCache, h)
		}
	}
	s.cacheMu.Unlock()
	s.stateMu.Lock()
	for sid, l := range s.live {
		if l.expires <= now {
			delete(s.live, sid)
		}
	}
	s.stateMu.Unlock()
}
