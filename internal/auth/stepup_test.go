package auth

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/policy"
	"github.com/moonvault/moonvault/internal/secret"
)

// TestSessionStepUp: a fresh TOTP code renews a stale session's auth_time,
// so operations that need a recent second factor pass again; bad codes,
// replays, users without TOTP, API keys and ended sessions are refused.
func TestSessionStepUp(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	rules := policy.Rules{}
	e.user("alice", "user")
	sec, code, tok := e.totpLogin("alice")
	e.clock.Advance(11 * time.Minute)
	tok, err := e.svc.Refresh(ctx, secret.String(tok.RefreshToken), "", "")
	if err != nil {
		t.Fatal(err)
	}
	refresh := tok.RefreshToken
	p, _ := e.auth(tok.AccessToken)
	if err := rules.Authorize(p, policy.ActionAPIKeyCreate, &policy.Resource{Owner: "alice"}, e.clock.Now()); !errors.Is(err, policy.ErrStepUpRequired) {
		t.Fatalf("stale session: %v", err)
	}

	// The code already used at login is refused (single use), as is a wrong one.
	for _, bad := range []string{code, "000000", ""} {
		if bad == "000000" {
			if c, _ := totpCode(sec, e.clock.Now()); c == bad {
				continue
			}
		}
		if _, err := e.svc.StepUp(ctx, p, secret.String(bad), "192.0.2.1"); err == nil {
			t.Fatalf("step-up with %q accepted", bad)
		}
	}

	code, _ = totpCode(sec, e.clock.Now())
	up, err := e.svc.StepUp(ctx, p, secret.String(code), "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if up.RefreshToken != "" {
		t.Fatal("step-up returned a refresh token")
	}
	p2, err := e.auth(up.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if !p2.AuthTime.Equal(e.clock.Now().Truncate(time.Second)) || !slices.Contains(p2.AMR, "otp") || p2.SessionID != p.SessionID {
		t.Fatalf("stepped-up principal %+v", p2)
	}
	if err := rules.Authorize(p2, policy.ActionAPIKeyCreate, &policy.Resource{Owner: "alice"}, e.clock.Now()); err != nil {
		t.Fatalf("after step-up: %v", err)
	}
	// The session keeps its refresh token, and a refresh keeps the new auth_time.
	tok, err = e.svc.Refresh(ctx, secret.String(refresh), "", "")
	if err != nil {
		t.Fatal(err)
	}
	if p3, _ := e.auth(tok.AccessToken); !p3.AuthTime.Equal(p2.AuthTime) {
		t.Fatalf("refresh after step-up: auth_time %v, want %v", p3.AuthTime, p2.AuthTime)
	}
	// The same code again: refused.
	if _, err := e.svc.StepUp(ctx, p, secret.String(code), "192.0.2.1"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("replayed code: %v", err)
	}

	// A user without TOTP: a Conflict naming the problem.
	e.user("bob", "user")
	pb, _ := e.auth(e.login("bob").AccessToken)
	if _, err := e.svc.StepUp(ctx, pb, "123456", ""); !errors.Is(err, ErrNoSecondFactor) || errkind.Of(err) != errkind.Conflict {
		t.Fatalf("no TOTP: %v", err)
	}
	// Not a session: API keys and missing principals.
	key := &identity.Principal{Subject: "apikey:k", Owner: "alice", APIKeyID: "k"}
	if _, err := e.svc.StepUp(ctx, key, "123456", ""); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("API key: %v", err)
	}
	// An ended session cannot be stepped up.
	if err := e.svc.RevokeSession(ctx, p.SessionID); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(30 * time.Second)
	code, _ = totpCode(sec, e.clock.Now())
	if _, err := e.svc.StepUp(ctx, p, secret.String(code), ""); !errors.Is(err, ErrSessionRevoked) {
		t.Fatalf("revoked session: %v", err)
	}
}

// TestStepUpRateLimited: wrong codes count toward the login limits.
func TestStepUpRateLimited(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.user("carol", "user")
	_, _, tok := e.totpLogin("carol")
	p, _ := e.auth(tok.AccessToken)
	limited := false
	for i := 0; i < 20 && !limited; i++ {
		_, err := e.svc.StepUp(ctx, p, "99999x", "198.51.100.7")
		var rl *RateLimitError
		limited = errors.As(err, &rl)
	}
	if !limited {
		t.Fatal("20 wrong step-up codes were never throttled")
	}
}
