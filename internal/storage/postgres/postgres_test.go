package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/postgres"
	"github.com/moonvault/moonvault/internal/storage/postgres/pgtest"
	"github.com/moonvault/moonvault/internal/storage/storagetest"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func open(t testing.TB, url string) *postgres.Backend {
	t.Helper()
	b, err := postgres.Open(context.Background(), url, testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestContract(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		b, err := postgres.Open(t.Context(), pgtest.NewDatabase(t), testLogger(t))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return b
	})
}

func TestMigrationsIdempotent(t *testing.T) {
	url := pgtest.NewDatabase(t)
	open(t, url)
	open(t, url) // a second node starting against the same database
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var rows, distinct int
	err = conn.QueryRow(t.Context(), "SELECT count(*), count(DISTINCT version) FROM schema_migrations").Scan(&rows, &distinct)
	if err != nil {
		t.Fatal(err)
	}
	if rows != 1 || distinct != 1 {
		t.Fatalf("schema_migrations has %d rows (%d versions), want one row per migration (1)", rows, distinct)
	}
	var collation string
	err = conn.QueryRow(t.Context(), `SELECT collation_name FROM information_schema.columns
		WHERE table_name = 'moonvault_kv' AND column_name = 'key'`).Scan(&collation)
	if err != nil || collation != "C" {
		t.Fatalf("moonvault_kv.key collation = %q, %v; want C (bytewise order)", collation, err)
	}
}

func TestConcurrentOpenMigratesOnce(t *testing.T) {
	url := pgtest.NewDatabase(t)
	errc := make(chan error, 4)
	for range 4 {
		go func() {
			b, err := postgres.Open(t.Context(), url, nil)
			if err == nil {
				b.Close()
			}
			errc <- err
		}()
	}
	for range 4 {
		if err := <-errc; err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
}

func TestOpenUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: dial is refused
	_, err = postgres.Open(t.Context(), "postgres://postgres@"+addr+"/x?sslmode=disable", nil)
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Open of a refused address = %v, want ErrUnavailable", err)
	}
	_, err = postgres.Open(t.Context(), "postgres://user:hunter2@%zz", nil)
	if err == nil || errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Open of a bad URL = %v, want a parse error", err)
	}
}

func TestClosedIsUnavailable(t *testing.T) {
	b, err := postgres.Open(t.Context(), pgtest.NewDatabase(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := b.Put(t.Context(), "k", []byte("v")); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Put after Close = %v, want ErrUnavailable", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestSubscribeAcrossNodes: two Backends on one database are two nodes;
// each sees the other's commits through LISTEN/NOTIFY.
func TestSubscribeAcrossNodes(t *testing.T) {
	url := pgtest.NewDatabase(t)
	a, b := open(t, url), open(t, url)
	got := make(chan string, 64)
	defer b.Subscribe(func(k string) {
		if k != "" {
			got <- k
		}
	})()
	var total time.Duration
	const rounds = 20
	for i := range rounds {
		key := fmt.Sprintf("node/a/%d", i)
		start := time.Now()
		if err := a.Put(t.Context(), key, []byte("v")); err != nil {
			t.Fatal(err)
		}
		select {
		case k := <-got:
			if k != key {
				t.Fatalf("node b saw %q, want %q", k, key)
			}
			total += time.Since(start)
		case <-time.After(storagetest.SubscribeWait):
			t.Fatalf("node b saw no notification for %s", key)
		}
	}
	t.Logf("cross-node commit+notify latency: mean %v over %d writes", total/rounds, rounds)
}

// TestSubscribeResyncsAfterOutage: after the listener's connection drops
// and comes back, subscribers get "" (resync) and then live keys again.
func TestSubscribeResyncsAfterOutage(t *testing.T) {
	url := pgtest.NewDatabase(t)
	proxy := pgtest.NewProxy(t, pgtest.TargetOf(t, url))
	writer := open(t, url)
	watcher := open(t, proxy.URL(url))
	got := make(chan string, 64)
	defer watcher.Subscribe(func(k string) { got <- k })()
	waitKey(t, got, "") // the first connect
	proxy.Cut()
	time.Sleep(200 * time.Millisecond)
	proxy.Restore()
	waitKey(t, got, "")
	if err := writer.Put(t.Context(), "after/outage", nil); err != nil {
		t.Fatal(err)
	}
	waitKey(t, got, "after/outage")
}

func waitKey(t *testing.T, got <-chan string, want string) {
	t.Helper()
	deadline := time.After(2 * storagetest.SubscribeWait) // covers reconnect backoff
	for {
		select {
		case k := <-got:
			if k == want {
				return
			}
		case <-deadline:
			t.Fatalf("no notification %q", want)
		}
	}
}
