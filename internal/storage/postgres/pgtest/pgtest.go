// Package pgtest gives tests a private PostgreSQL database on the shared
// test server, and a TCP proxy to simulate that server going away.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the environment variable with the server's base URL.
const EnvURL = "MOONVAULT_TEST_POSTGRES_URL"

// DefaultURL is the local trust-auth server the test machines run.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

const startHint = "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start " +
	"(or point " + EnvURL + " at a server)"

// BaseURL returns the server URL tests connect to.
func BaseURL() string {
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	return DefaultURL
}

// NewDatabase creates a fresh database mvtest_<random hex>, drops it (WITH
// FORCE) when the test ends, and returns its URL. An unreachable server fails
// the test: PostgreSQL tests never skip.
func NewDatabase(t testing.TB) string {
	t.Helper()
	base := BaseURL()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("pgtest: %s is not a URL: %v", EnvURL, err)
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatalf("pgtest: random name: %v", err)
	}
	name := "mvtest_" + hex.EncodeToString(rnd[:])
	// template0 is never connected to, so parallel CREATE DATABASE calls
	// from other packages cannot collide on a busy template1.
	adminExec(t, base, "CREATE DATABASE "+name+" TEMPLATE template0")
	t.Cleanup(func() { adminExec(t, base, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") })
	u.Path = "/" + name
	return u.String()
}

func adminExec(t testing.TB, base, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("pgtest: PostgreSQL at %s is unreachable (%v); %s", redact(base), err, startHint)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
}

// redact hides a password in a URL for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}
