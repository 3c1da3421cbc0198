package auth

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/secret"
)

func TestRefreshRotatesAndDetectsReuse(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.user("alice", "user")
	t1 := e.login("alice")
	e.clock.Advance(time.Minute)
	t2, err := e.svc.Refresh(ctx, secret.String(t1.RefreshToken), "192.0.2.2:1", "ua2")
	if err != nil {
		t.Fatal(err)
	}
	if t2.RefreshToken == t1.RefreshToken || t2.AccessToken == t1.AccessToken {
		t.Fatal("refresh did not rotate")
	}
	c1, c2 := parsedClaims(t, t1.AccessToken), parsedClaims(t, t2.AccessToken)
	if c1.SID != c2.SID || c1.AuthTime != c2.AuthTime {
		t.Fatalf("refresh changed sid or auth_time: %+v %+v", c1, c2)
	}
	if _, err := e.auth(t2.AccessToken); err != nil {
		t.Fatal(err)
	}
	// Reuse of the rotated token: refused and the session dies.
	if _, err := e.svc.Refresh(ctx, secret.String(t1.RefreshToken), "198.51.100.9:1", "attacker"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("reuse: %v", err)
	}
	if _, err := e.auth(t2.AccessToken); !errors.Is(err, ErrSessionRevoked) {
		t.Fatalf("access token after reuse: %v", err)
	}
	if _, err := e.svc.Refresh(ctx, secret.String(t2.RefreshToken), "", ""); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("current refresh token after reuse: %v", err)
	}
}

func TestRefreshRejectsGarbage(t *testing.T) {
	e := newEnv(t, nil)
	e.user("alice", "user")
	t1 := e.login("alice")
	sid := parsedClaims(t, t1.AccessToken).SID
	for _, bad := range []string{"", "x", sid, sid + ".", sid + ".AAAA", "nosuch.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		sid + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"} {
		if _, err := e.svc.Refresh(context.Background(), secret.String(bad), "", ""); !errors.Is(err, ErrInvalidCredentials) {
			t.Errorf("Refresh(%q) = %v", bad, err)
		}
	}
	// A guessed token for a known sid is not "reuse": the session lives.
	if _, err := e.auth(t1.AccessToken); err != nil {
		t.Fatalf("session killed by a guess: %v", err)
	}
}

func TestRefreshConcurrent(t *testing.T) {
	e := newEnv(t, nil)
	e.user("alice", "user")
	t1 := e.login("alice")
	const n = 8
	var wg sync.WaitGroup
	results := make([]*Tokens, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = e.svc.Refresh(context.Background(), secret.String(t1.RefreshToken), "", "")
		}()
	}
	wg.Wait()
	wins := 0
	var winner *Tokens
	for i := range n {
		if errs[i] == nil {
			wins++
			winner = results[i]
		} else if !errors.Is(errs[i], ErrInvalidCredentials) && !errors.Is(errs[i], ErrSessionRevoked) {
			t.Errorf("loser error: %v", errs[i])
		}
	}
	if wins != 1 {
		t.Fatalf("%d refreshes won, want exactly 1", wins)
	}
	// The losers were reuse: the session, and the winner's tokens, are dead.
	if _, err := e.auth(winner.AccessToken); !errors.Is(err, ErrSessionRevoked) {
		t.Fatalf("winner access token after concurrent reuse: %v", err)
	}
}

func TestSessionLifetimeAndIdle(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SessionLifetime = 2 * time.Hour; c.IdleTimeout = 30 * time.Minute })
	ctx := context.Background()
	e.user("alice", "user")

	// Idle: no use for longer than IdleTimeout.
	t1 := e.login("alice")
	e.clock.Advance(31 * time.Minute)
	if _, err := e.svc.Refresh(ctx, secret.String(t1.RefreshToken), "", ""); !errors.Is(err, ErrSessionRevoked) {
		t.Fatalf("idle refresh: %v", err)
	}

	// Absolute: kept busy, still ends after SessionLifetime.
	t2 := e.login("alice")
	rt := t2.RefreshToken
	for range 7 {
		e.clock.Advance(15 * time.Minute)
		tok, err := e.svc.Refresh(ctx, secret.String(rt), "", "")
		if err != nil {
			t.Fatal(err)
		}
		rt = tok.RefreshToken
		c := parsedClaims(t, tok.AccessToken)
		if c.ExpiresAt.After(e.clock.Now().Add(2 * time.Hour)) {
			t.Fatal("access token outlives the session")
		}
	}
	e.clock.Advance(15 * time.Minute)
	if _, err := e.svc.Refresh(ctx, secret.String(rt), "", ""); !errors.Is(err, ErrSessionRevoked) {
		t.Fatalf("refresh past absolute lifetime: %v", err)
	}
}

func TestSweepEndsIdleSessions(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.user("alice", "user")
	e.user("bob", "user")
	ta := e.login("alice")
	tb := e.login("bob")
	for range 5 { // alice stays active; bob goes idle
		e.clock.Advance(15 * time.Minute)
		var err error
		if ta, err = e.svc.Refresh(ctx, secret.String(ta.RefreshToken), "", ""); err != nil {
			t.Fatal(err)
		}
	}
	e.svc.periodic(ctx)
	if _, err := e.auth(tb.AccessToken); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("idle bob: %v", err)
	}
	if _, err := e.auth(ta.AccessToken); err != nil {
		t.Fatalf("active alice: %v", err)
	}
	if ss, _ := e.svc.Sessions(ctx, "bob"); len(ss) != 0 {
		t.Fatalf("bob sessions %v", ss)
	}
}

func TestLastSeenNotWrittenOnHotPath(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.user("alice", "user")
	tok := e.login("alice")
	p, err := e.auth(tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	puts := e.kv.putCount()
	for range 100 {
		e.clock.Advance(time.Second)
		if _, err := e.auth(tok.AccessToken); err != nil {
			t.Fatal(err)
		}
	}
	if e.kv.putCount() != puts {
		t.Fatal("Authenticate wrote to storage")
	}
	e.svc.flushLastSeen(ctx, false)
	s, err := e.svc.GetSession(ctx, p.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if !s.LastSeen.Equal(e.clock.Now()) {
		t.Fatalf("last seen %v, want %v", s.LastSeen, e.clock.Now())
	}
	var rec sessionRecord
	if err := e.svc.getJSON(ctx, prefixSessions+p.SessionID, &rec); err != nil || !rec.LastSeen.Equal(e.clock.Now()) {
		t.Fatalf("persisted last seen %v (%v)", rec.LastSeen, err)
	}
	if e.kv.putCount() != puts+1 {
		t.Fatalf("flush wrote %d times", e.kv.putCount()-puts)
	}
}

func TestSessionsAndRevokeUser(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.user("alice", "user")
	e.user("bob", "user")
	a1, a2, b1 := e.login("alice"), e.login("alice"), e.login("bob")
	ss, err := e.svc.Sessions(ctx, "alice")
	if err != nil || len(ss) != 2 {
		t.Fatalf("alice sessions %v %v", ss, err)
	}
	if ss[0].RemoteAddr != "192.0.2.1:4000" || ss[0].UserAgent != "test" || len(ss[0].AMR) != 1 || ss[0].ExpiresAt.Sub(ss[0].CreatedAt) != 12*time.Hour {
		t.Fatalf("session %+v", ss[0])
	}
	all, _ := e.svc.Sessions(ctx, "")
	if len(all) != 3 {
		t.Fatalf("all sessions %d", len(all))
	}
	n, err := e.svc.RevokeUserSessions(ctx, "alice")
	if err != nil || n != 2 {
		t.Fatalf("revoked %d %v", n, err)
	}
	for _, tok := range []*Tokens{a1, a2} {
		if _, err := e.auth(tok.AccessToken); !errors.Is(err, ErrSessionRevoked) {
			t.Fatal(err)
		}
	}
	if _, err := e.auth(b1.AccessToken); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RevokeSession(ctx, "nosuch"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := e.svc.GetSession(ctx, parsedClaims(t, a1.AccessToken).SID); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}

func TestRootToken(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	tok, err := e.svc.IssueRootToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != "" {
		t.Fatal("root token has a refresh token")
	}
	p, err := e.auth(tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != RootSubject || p.Role != "admin" || len(p.AMR) != 1 || p.AMR[0] != "root" {
		t.Fatalf("root principal %+v", p)
	}
	s, err := e.svc.GetSession(ctx, p.SessionID)
	if err != nil || s.ExpiresAt.Sub(s.CreatedAt) != time.Hour {
		t.Fatalf("root session %+v %v", s, err)
	}
	if _, err := e.svc.CreateUser(ctx, "root", testPassword, "admin"); !errors.Is(err, ErrUserExists) {
		t.Fatalf("user named root: %v", err)
	}
	if err := e.svc.RevokeSession(ctx, p.SessionID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.auth(tok.AccessToken); !errors.Is(err, ErrSessionRevoked) {
		t.Fatal(err)
	}
}

func TestPruneRevoked(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.user("alice", "user")
	tok := e.login("alice")
	p, _ := e.auth(tok.AccessToken)
	if err := e.svc.Logout(ctx, p); err != nil {
		t.Fatal(err)
	}
	e.svc.periodic(ctx)
	if len(e.kv.keys(prefixRevoked)) != 1 {
		t.Fatal("pruned too early")
	}
	e.clock.Advance(13 * time.Hour)
	e.svc.periodic(ctx)
	if len(e.kv.keys(prefixRevoked)) != 0 || e.svc.isRevoked(p.SessionID) {
		t.Fatal("revocation not pruned after the session's lifetime")
	}
}
