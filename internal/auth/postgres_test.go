package auth

import (
	"context"
	"crypto/rand"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/barrier/barriertest"
	"github.com/moonvault/moonvault/internal/fakeclock"
	"github.com/moonvault/moonvault/internal/sealwrap"
	"github.com/moonvault/moonvault/internal/secret"
)

// pgNodes starts n auth services, each over its own barrier and its own
// connection pool to one PostgreSQL database: n nodes of one vault.
func pgNodes(t *testing.T, n int, clk *fakeclock.Clock) []*Service {
	t.Helper()
	var out []*Service
	for _, b := range barriertest.Nodes(t, "postgres", n) {
		svc, err := New(Config{Now: clk.Now, ResyncInterval: time.Hour, Subscribe: b.Subscribe}, b, sealwrap.New(nil), rand.Reader, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		svc.argon = cheapArgon
		if svc.dummyPHC, err = svc.hashPassword("dummy-password-never-used"); err != nil {
			t.Fatal(err)
		}
		if err := svc.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(svc.Stop)
		out = append(out, svc)
	}
	return out
}

// TestSingleUseOverPostgres: issue 13 item 9 over the real stack: two
// services, each with its own barrier and connection pool, over one
// PostgreSQL database. One TOTP code presented eight times at once across
// both nodes logs in once; one refresh token presented eight times at once
// rotates once and, being reused, ends the session.
func TestSingleUseOverPostgres(t *testing.T) {
	clk := fakeclock.New(time.Now().UTC())
	nodes := pgNodes(t, 2, clk)
	ctx := context.Background()
	a := nodes[0]
	if _, err := a.CreateUser(ctx, "alice", testPassword, "user"); err != nil {
		t.Fatal(err)
	}
	sec, _, err := a.EnrollTOTP(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	code, _ := totpCode(sec.Reveal(), clk.Now())
	if _, err := a.ConfirmTOTP(ctx, "alice", secret.String(code)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(30 * time.Second)
	code, _ = totpCode(sec.Reveal(), clk.Now())

	const tries = 8
	var wg sync.WaitGroup
	toks := make([]*Tokens, tries)
	for i := range tries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks[i], _ = nodes[i%2].Login(ctx, LoginInput{Username: "alice", Password: testPassword, TOTP: secret.String(code), RemoteAddr: "192.0.2.7:1"})
		}()
	}
	wg.Wait()
	var tok *Tokens
	logins := 0
	for _, lt := range toks {
		if lt != nil {
			tok = lt
			logins++
		}
	}
	if logins != 1 {
		t.Fatalf("one TOTP code presented %d times on two nodes logged in %d times, want once", tries, logins)
	}

	wins := make([]bool, tries)
	for i := range tries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := nodes[i%2].Refresh(ctx, secret.String(tok.RefreshToken), "", "")
			wins[i] = err == nil
		}()
	}
	wg.Wait()
	n := 0
	for _, w := range wins {
		if w {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("one refresh token presented %d times on two nodes rotated %d times, want once", tries, n)
	}
	// The other presentations were reuse: the session ends on every node.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, ea := a.Authenticate(ctx, tok.AccessToken)
		_, eb := nodes[1].Authenticate(ctx, tok.AccessToken)
		if ea != nil && eb != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the session survived its refresh token being presented twice")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
