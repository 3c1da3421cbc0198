package auth

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/secret"
)

func TestChangePassword(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.user("alice", "user")
	keep, other := e.login("alice"), e.login("alice")
	kp, err := e.auth(keep.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	change := func(cur, next, code secret.String) error {
		return e.svc.ChangePassword(ctx, PasswordChange{Username: "alice", Current: cur, New: next, TOTP: code, KeepSID: kp.SessionID, RemoteAddr: "192.0.2.9"})
	}
	const next = secret.String("a brand new passphrase")
	for _, tc := range []struct {
		name      string
		cur, next secret.String
		want      error
	}{
		{"wrong current", "not the password at all", next, ErrInvalidCredentials},
		{"weak new", testPassword, "short", ErrWeakPassword},
	} {
		if err := change(tc.cur, tc.next, ""); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// Nothing changed so far: the old password still logs in.
	e.login("alice")

	if err := change(testPassword, next, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.auth(keep.AccessToken); err != nil {
		t.Errorf("the asking session ended: %v", err)
	}
	if _, err := e.auth(other.AccessToken); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("another session survived the change: %v", err)
	}
	if _, err := e.svc.Login(ctx, LoginInput{Username: "alice", Password: testPassword}); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("old password: %v", err)
	}
	if _, err := e.svc.Login(ctx, LoginInput{Username: "alice", Password: next}); err != nil {
		t.Errorf("new password: %v", err)
	}
}

// TestChangePasswordNeedsSecondFactor: with TOTP on, a stolen access token
// plus the password is not enough; the code is required.
func TestChangePasswordNeedsSecondFactor(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.user("bob", "user")
	_, codes := enrollTOTP(t, e, "bob")
	e.clock.Advance(time.Minute)
	in := PasswordChange{Username: "bob", Current: testPassword, New: "another long passphrase"}
	if err := e.svc.ChangePassword(ctx, in); !errors.Is(err, ErrMFARequired) {
		t.Fatalf("without a code: %v", err)
	}
	in.TOTP = "12345678"
	if err := e.svc.ChangePassword(ctx, in); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("with a wrong code: %v", err)
	}
	in.TOTP = secret.String(codes[0])
	if err := e.svc.ChangePassword(ctx, in); err != nil {
		t.Fatalf("with a recovery code: %v", err)
	}
}

func TestSetPasswordEndsSessions(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.user("carol", "user")
	tok := e.login("carol")
	if err := e.svc.SetPassword(ctx, "carol", "short"); !errors.Is(err, ErrWeakPassword) {
		t.Fatalf("weak: %v", err)
	}
	if err := e.svc.SetPassword(ctx, "nobody", "a long enough password"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
	if err := e.svc.SetPassword(ctx, "carol", "a long enough password"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.auth(tok.AccessToken); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("session after reset: %v", err)
	}
}
