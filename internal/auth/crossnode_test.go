package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/moonvault/moonvault/internal/fips"
	"github.com/moonvault/moonvault/internal/secret"
)

// rendezvous makes the readers of key meet in groups of n (each waits at
// most 200 ms for its group), so that two nodes read the same record before
// either writes it: the interleaving in which a per-node lock cannot help.
func rendezvous(kv *memKV, key string, n int) {
	var mu sync.Mutex
	arrived := 0
	group := make(chan struct{})
	kv.mu.Lock()
	kv.getHook = func(k string) {
		if k != key {
			return
		}
		mu.Lock()
		arrived++
		g := group
		if arrived%n == 0 {
			close(group)
			group = make(chan struct{})
		}
		mu.Unlock()
		select {
		case <-g:
		case <-time.After(200 * time.Millisecond):
		}
	}
	kv.mu.Unlock()
}

// TestTOTPSingleUseAcrossNodes: one TOTP code presented to two nodes at
// the same moment is accepted once (RFC 6238 §5.2), however the reads
// interleave.
func TestTOTPSingleUseAcrossNodes(t *testing.T) {
	e := newEnv(t, nil)
	e.user("alice", "user")
	sec, _ := enrollTOTP(t, e, "alice")
	nodeB := e.start(nil)
	e.clock.Advance(30 * time.Second)
	code, _ := totpCode(sec, e.clock.Now())
	rendezvous(e.kv, prefixUsers+"alice", 2)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, svc := range []*Service{e.svc, nodeB} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = svc.checkSecondFactor(context.Background(), "alice", secret.String(code), e.clock.Now())
		}()
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("the same code on two nodes: %v / %v; want exactly one accepted", errs[0], errs[1])
	}
}

// TestRefreshSingleUseAcrossNodes: one refresh token presented to two
// nodes at once rotates once; the other presentation is reuse and ends the
// session (OAuth 2.0 Security BCP §4.14.2).
func TestRefreshSingleUseAcrossNodes(t *testing.T) {
	e := newEnv(t, nil)
	e.user("alice", "user")
	nodeB := e.start(nil)
	tok := e.login("alice")
	sid := parsedClaims(t, tok.AccessToken).SID
	rendezvous(e.kv, prefixSessions+sid, 2)
	var wg sync.WaitGroup
	res := make([]*Tokens, 2)
	errs := make([]error, 2)
	for i, svc := range []*Service{e.svc, nodeB} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = svc.Refresh(context.Background(), secret.String(tok.RefreshToken), "", "")
		}()
	}
	wg.Wait()
	wins := 0
	for i := range errs {
		if errs[i] == nil {
			wins++
		}
	}
	if wins != 1 {
		t.Fatalf("%d nodes rotated the same refresh token (%v / %v), want 1", wins, errs[0], errs[1])
	}
	e.kv.mu.Lock()
	e.kv.getHook = nil
	e.kv.mu.Unlock()
	for _, r := range res {
		if r != nil {
			if _, err := e.svc.Refresh(context.Background(), secret.String(r.RefreshToken), "", ""); err == nil {
				t.Fatal("the session survived a refresh token presented twice")
			}
		}
	}
}

// TestLoginRacingDeletion: a login whose session is stored just after the
// user was deleted yields nothing usable, on any node, now or after a
// resync (issue 13 item 6).
func TestLoginRacingDeletion(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Subscribe = nil })
	e.user("alice", "user")
	e.user("admin", "admin")
	kv := e.kv
	nodeB := e.start(func(c *Config) { c.Subscribe = kv.Subscribe })
	// The deletion commits between the login's password check and its
	// session write.
	var once sync.Once
	kv.mu.Lock()
	kv.putHook = func(key string) {
		if strings.HasPrefix(key, prefixSessions) {
			once.Do(func() {
				if err := nodeB.DeleteUser(context.Background(), "alice"); err != nil {
					t.Errorf("delete: %v", err)
				}
			})
		}
	}
	kv.mu.Unlock()
	tok, err := e.svc.Login(context.Background(), LoginInput{Username: "alice", Password: testPassword})
	kv.mu.Lock()
	kv.putHook = nil
	kv.mu.Unlock()
	if err == nil {
		ctx := context.Background()
		for name, svc := range map[string]*Service{"A": e.svc, "B": nodeB} {
			if _, err := svc.Authenticate(ctx, tok.AccessToken); err == nil {
				t.Errorf("node %s accepts a token of a deleted user", name)
			}
		}
		// After a full resync too (it rebuilds the refused set).
		if err := e.svc.resync(ctx); err != nil {
			t.Fatal(err)
		}
		e.svc.cacheMu.Lock()
		clear(e.svc.tokens)
		e.svc.cacheMu.Unlock()
		if _, err := e.svc.Authenticate(ctx, tok.AccessToken); err == nil {
			t.Error("a token of a deleted user works after a resync")
		}
		if _, err := nodeB.Refresh(ctx, secret.String(tok.RefreshToken), "", ""); err == nil {
			t.Error("a deleted user's refresh token works")
		}
	}
}

// TestDeletedUserRefusedAfterResync: a deleted user's live session is
// refused on the cached path after a resync and on other nodes.
func TestDeletedUserRefusedAfterResync(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Subscribe = nil })
	kv := e.kv
	nodeB := e.start(func(c *Config) { c.Subscribe = kv.Subscribe })
	e.user("alice", "user")
	tok := e.login("alice")
	ctx := context.Background()
	if _, err := nodeB.Authenticate(ctx, tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	// A session record that escaped the deletion (written back by a node
	// that had it in flight).
	sid := parsedClaims(t, tok.AccessToken).SID
	saved, _ := kv.Get(ctx, prefixSessions+sid)
	if err := e.svc.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	kv.setRaw(prefixSessions+sid, saved)
	e.svc.stateMu.Lock()
	delete(e.svc.revoked, sid)
	e.svc.stateMu.Unlock()
	nodeB.stateMu.Lock()
	delete(nodeB.revoked, sid)
	nodeB.stateMu.Unlock()
	for _, svc := range []*Service{e.svc, nodeB} {
		if err := svc.resync(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Authenticate(ctx, tok.AccessToken); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("deleted user's cached token after resync: %v", err)
		}
	}
}

// TestTOTPWindow: codes one step away are accepted (RFC 6238 §5.2 clock
// drift), two or three steps away are not (issue 21, mutation 3).
func TestTOTPWindow(t *testing.T) {
	sec := rfc6238Secret
	now := time.Unix(1111111109, 0)
	for _, tc := range []struct {
		steps int64
		ok    bool
	}{{0, true}, {-1, true}, {1, true}, {-2, false}, {2, false}, {-3, false}, {3, false}} {
		at := now.Add(time.Duration(tc.steps*totpPeriod) * time.Second)
		var code string
		var err error
		fips.Outside(func() { code, err = totp.GenerateCodeCustom(sec, at, totp.ValidateOpts{Period: totpPeriod, Digits: 6}) })
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := validateTOTP(code, sec, now, 0, 6); ok != tc.ok {
			t.Errorf("code %d steps away: accepted %v, want %v", tc.steps, ok, tc.ok)
		}
	}
}

// TestRootTokenLivesOneHour: the root token from init or generate-root
// lives the documented hour, not the 5-minute access-token lifetime.
func TestRootTokenLivesOneHour(t *testing.T) {
	e := newEnv(t, nil)
	tok, err := e.svc.IssueRootToken(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tok.ExpiresIn != 3600 {
		t.Fatalf("expires_in = %d, want 3600", tok.ExpiresIn)
	}
	e.clock.Advance(59 * time.Minute)
	if _, err := e.auth(tok.AccessToken); err != nil {
		t.Fatalf("root token after 59 minutes: %v", err)
	}
	e.clock.Advance(2 * time.Minute)
	if _, err := e.auth(tok.AccessToken); err == nil {
		t.Fatal("root token after 61 minutes still works")
	}
}

// TestStartSurvivesOneBadRecord: a record that fails its integrity check
// is reported and refused, and never keeps the service from starting.
func TestStartSurvivesOneBadRecord(t *testing.T) {
	e := newEnv(t, nil)
	e.user("alice", "user")
	e.user("bob", "user")
	tokA := e.login("alice")
	tokB := e.login("bob")
	ctx := context.Background()
	sidB := parsedClaims(t, tokB.AccessToken).SID
	if err := e.svc.RevokeSession(ctx, sidB); err != nil {
		t.Fatal(err)
	}
	kid, _ := e.signerKey()
	e.kv.setRaw(prefixJWTKeys+"nosuch", []byte("x"))
	e.kv.mu.Lock()
	e.kv.corrupt = map[string]bool{prefixUsers + "alice": true, prefixRevoked + sidB: true, prefixJWTKeys + "nosuch": true}
	e.kv.mu.Unlock()
	_ = kid
	svc := e.start(nil)
	// bob's revocation record is unreadable: his session counts as revoked.
	if _, err := svc.Authenticate(ctx, tokB.AccessToken); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("session with an unreadable revocation: %v", err)
	}
	// alice's record is unreadable: she is refused, with an error.
	if _, err := svc.Authenticate(ctx, tokA.AccessToken); err == nil {
		t.Fatal("a user whose record fails its integrity check is accepted")
	}
	// Everyone else works.
	e.user("carol", "user")
	tokC, err := svc.Login(ctx, LoginInput{Username: "carol", Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Authenticate(ctx, tokC.AccessToken); err != nil {
		t.Fatal(err)
	}
}

// TestScheduledKeyRotationTwoNodes: when the signing key is due, every
// node decides to rotate at once; one rotation lands (compare-and-swap on
// the signer record), the others adopt it, and all nodes sign with it.
func TestScheduledKeyRotationTwoNodes(t *testing.T) {
	e := newEnv(t, nil)
	nodeB := e.start(nil)
	ctx := context.Background()
	e.clock.Advance(25 * time.Hour)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, svc := range []*Service{e.svc, nodeB} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = svc.ensureSigner(ctx)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, svc := range []*Service{e.svc, nodeB} {
		if err := svc.loadKeys(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ka, kb := e.svc.signer.kid, nodeB.signer.kid
	if ka != kb {
		t.Fatalf("nodes sign with different keys after a concurrent rotation: %s / %s", ka, kb)
	}
	keys := e.kv.jwtKeys()
	if len(keys) != 2 {
		t.Fatalf("%d key records after one scheduled rotation on two nodes, want 2 (old and new): %v", len(keys), keys)
	}
}

// TestLoginThrottleAcrossNodes: failed logins of one user count on every
// node: five guesses on each of two nodes put the account under attack on
// both, and then an address that already failed gets no more real
// guesses there, even with the right password; the user's own address
// is not locked out.
func TestLoginThrottleAcrossNodes(t *testing.T) {
	e := newEnv(t, nil)
	nodeB := e.start(nil)
	e.user("alice", "user")
	ctx := context.Background()
	for i := range 10 {
		svc := []*Service{e.svc, nodeB}[i%2]
		bad := LoginInput{Username: "alice", Password: "not the password", RemoteAddr: fmt.Sprintf("203.0.113.%d:1", i)}
		if _, err := svc.Login(ctx, bad); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("attempt %d: %v", i, err)
		}
		svc.bg.Wait()
	}
	for i, svc := range []*Service{e.svc, nodeB} {
		attacker := LoginInput{Username: "alice", Password: testPassword, RemoteAddr: fmt.Sprintf("203.0.113.%d:1", i)}
		if _, err := svc.Login(ctx, attacker); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("node %d: an attacking address with the right password: %v, want invalid credentials", i, err)
		}
	}
	if _, err := e.svc.Login(ctx, LoginInput{Username: "alice", Password: testPassword, RemoteAddr: "198.51.100.1:2"}); err != nil {
		t.Fatalf("the user's own address during the attack: %v", err)
	}
	e.clock.Advance(16 * time.Minute)
	if _, err := nodeB.Login(ctx, LoginInput{Username: "alice", Password: testPassword, RemoteAddr: "198.51.100.1:2"}); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

// TestEnrollRacingConfirmKeepsTheEnabledSecret: node B confirms a pending
// TOTP enrolment while node A, which read the record when it was still
// pending, enrols again. A's new secret must not replace the factor B just
// enabled (the user's authenticator holds the confirmed one).
func TestEnrollRacingConfirmKeepsTheEnabledSecret(t *testing.T) {
	e := newEnv(t, nil)
	e.user("alice", "user")
	nodeB := e.start(nil)
	ctx := context.Background()
	s1, _, err := e.svc.EnrollTOTP(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	code1, _ := totpCode(s1.Reveal(), e.clock.Now())
	var fired atomic.Bool
	var confirmErr error
	e.kv.mu.Lock()
	e.kv.putHook = func(key string) {
		// A has read the pending record and writes its first TOTP record:
		// B's confirmation lands now.
		if strings.HasPrefix(key, "auth/totp") && fired.CompareAndSwap(false, true) {
			_, confirmErr = nodeB.ConfirmTOTP(ctx, "alice", secret.String(code1))
		}
	}
	e.kv.mu.Unlock()
	_, _, enrollErr := e.svc.EnrollTOTP(ctx, "alice")
	e.kv.mu.Lock()
	e.kv.putHook = nil
	e.kv.mu.Unlock()
	if !fired.Load() || confirmErr != nil {
		t.Fatalf("the confirmation on node B did not run or failed: %v", confirmErr)
	}
	if enrollErr == nil {
		t.Fatal("a second enrolment succeeded over an enabled factor")
	}
	e.clock.Advance(30 * time.Second)
	code, _ := totpCode(s1.Reveal(), e.clock.Now())
	for _, svc := range []*Service{e.svc, nodeB} {
		if _, err := svc.checkSecondFactor(ctx, "alice", secret.String(code), e.clock.Now()); err != nil {
			t.Fatalf("the confirmed secret no longer works: %v", err)
		}
		e.clock.Advance(30 * time.Second)
		code, _ = totpCode(s1.Reveal(), e.clock.Now())
	}
}

// TestTOTPSecretsKeptTidy: a second enrolment removes the secret it
// replaces, disabling removes every one, and a factor enabled by an
// earlier build (its secret at auth/totp/<username>) still works.
func TestTOTPSecretsKeptTidy(t *testing.T) {
	e := newEnv(t, nil)
	e.user("alice", "user")
	ctx := context.Background()
	if _, _, err := e.svc.EnrollTOTP(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	sec, _ := enrollTOTP(t, e, "alice") // enrols again, checks one secret is stored
	if err := e.svc.DisableTOTP(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if left := append(e.kv.keys(prefixTOTPSecrets), e.kv.keys(prefixTOTP)...); len(left) != 0 {
		t.Fatalf("TOTP secrets left after disabling: %q", left)
	}

	// An earlier build's layout: the secret at auth/totp/alice, no id.
	raw, _ := b32.DecodeString(sec)
	env, err := e.sealer.Wrap(ctx, prefixTOTP+"alice", raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.kv.Put(ctx, prefixTOTP+"alice", env); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.updateUser(ctx, "alice", func(rec *userRecord) error {
		rec.TOTP = totpState{Enabled: true}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	code, _ := totpCode(sec, e.clock.Now())
	if _, err := e.svc.checkSecondFactor(ctx, "alice", secret.String(code), e.clock.Now()); err != nil {
		t.Fatalf("a factor enabled by an earlier build: %v", err)
	}
}
