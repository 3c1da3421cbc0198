package connpark

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingListener counts the reads that reach the real connections.
type countingListener struct {
	net.Listener
	reads *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.reads}, nil
}

type countingConn struct {
	net.Conn
	reads *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

// serve starts an HTTPS server (HTTP/1.1 only) whose handler reads the
// body, holds the connection, and then waits (as a handler waiting for its
// audit line does) before answering.
func serve(t *testing.T, hold bool, wait time.Duration) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	reads := new(atomic.Int64)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if hold {
			defer Hold(r).Release()
		}
		time.Sleep(wait)
		fmt.Fprintf(w, "%d:%s", len(body), body)
	}))
	srv.Listener = Listener(countingListener{srv.Listener, reads})
	srv.Config.ConnContext = Context
	srv.EnableHTTP2 = false
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, reads
}

// Many requests in turn on one kept-alive connection: every answer is
// right, nothing hangs (net/http's abort wakes each parked read), and
// fewer reads reach the socket than without the hold.
func TestKeepAliveRequestsWithHold(t *testing.T) {
	const n = 50
	count := func(hold bool) int64 {
		srv, reads := serve(t, hold, 2*time.Millisecond)
		client := srv.Client()
		client.Timeout = 10 * time.Second
		client.Transport.(*http.Transport).MaxConnsPerHost = 1
		for i := range n {
			body := strings.Repeat("x", i)
			resp, err := client.Post(srv.URL, "text/plain", strings.NewReader(body))
			if err != nil {
				t.Fatalf("request %d (hold=%v): %v", i, hold, err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("%d:%s", i, body); string(got) != want {
				t.Fatalf("request %d (hold=%v): %q, want %q", i, hold, got, want)
			}
		}
		return reads.Load()
	}
	held, free := count(true), count(false)
	t.Logf("reads reaching the socket for %d requests: %d held, %d not held", n, held, free)
	if held >= free {
		t.Fatalf("holding saved no read: %d held, %d not held", held, free)
	}
}

// A parked read stays parked until something happens on the connection:
// a deadline already past ends it with the deadline error; any other
// deadline (later, or none) ends the hold and the read goes to the
// connection; a close ends it as a closed connection's read.
func TestParkedReadWakes(t *testing.T) {
	deadlineErr := func(_ int, err error) error {
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("err %v, want a deadline error", err)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return fmt.Errorf("err %v is not a net.Error timeout (net/http and crypto/tls expect one)", err)
		}
		return nil
	}
	readsByte := func(n int, err error) error {
		if n != 1 || err != nil {
			return fmt.Errorf("read %d, %v; want the byte sent", n, err)
		}
		return nil
	}
	for _, tc := range []struct {
		name string
		wake func(c *conn, peer net.Conn)
		want func(n int, err error) error
	}{
		{"past deadline", func(c *conn, _ net.Conn) { _ = c.SetReadDeadline(time.Unix(1, 0)) }, deadlineErr},
		{"past deadline on both", func(c *conn, _ net.Conn) { _ = c.SetDeadline(time.Unix(1, 0)) }, deadlineErr},
		{"later deadline, then data", func(c *conn, peer net.Conn) {
			_ = c.SetReadDeadline(time.Now().Add(time.Minute))
			_, _ = peer.Write([]byte("z"))
		}, readsByte},
		{"no deadline, then data", func(c *conn, peer net.Conn) {
			_ = c.SetReadDeadline(time.Time{})
			_, _ = peer.Write([]byte("z"))
		}, readsByte},
		{"close", func(c *conn, _ net.Conn) { _ = c.Close() }, func(_ int, err error) error {
			if err == nil {
				return fmt.Errorf("a closed connection read without error")
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			c := &conn{Conn: a}
			defer c.Close()
			c.held = true
			done := make(chan error, 1)
			go func() {
				n, err := c.Read(make([]byte, 1))
				done <- tc.want(n, err)
			}()
			waitParked(t, c)
			select {
			case err := <-done:
				t.Fatalf("the parked read ended by itself: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
			tc.wake(c, b)
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the parked read did not wake")
			}
			c.mu.Lock()
			held := c.held
			c.mu.Unlock()
			if held {
				t.Fatal("the hold outlived the deadline or close that ended the parked read")
			}
		})
	}
}

// A read deadline already set when the hold begins (not net/http's
// background read) is honoured: the read is not parked.
func TestReadWithDeadlineIsNotParked(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := &conn{Conn: a}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	c.held = true
	start := time.Now()
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err %v, want the deadline error of the real read", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the read took %v", d)
	}
}

func waitParked(t *testing.T, c *conn) {
	t.Helper()
	for range 500 {
		c.mu.Lock()
		parked := c.wake != nil
		c.mu.Unlock()
		if parked {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("the read never parked")
}

// Reads are not parked before Hold, after its release, or on HTTP/2, and
// a request without a holdable connection gets a harmless release.
func TestHoldOnlyWhereItApplies(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &conn{Conn: a}
	ctx := Context(t.Context(), tls.Server(c, &tls.Config{}))
	if ctx.Value(ctxKey{}) != c {
		t.Fatal("Context did not find the connection under the *tls.Conn")
	}
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(nil)).WithContext(ctx)
	r.ProtoMajor = 2
	Hold(r).Release()
	if c.held {
		t.Fatal("an HTTP/2 request held its connection")
	}
	r.ProtoMajor = 1
	held := Hold(r)
	if !c.held {
		t.Fatal("an HTTP/1 request did not hold its connection")
	}
	held.Release()
	if c.held {
		t.Fatal("release did not end the hold")
	}
	go func() { _, _ = b.Write([]byte("y")) }()
	if n, err := c.Read(make([]byte, 1)); n != 1 || err != nil {
		t.Fatalf("a read after release: %d, %v", n, err)
	}
	plain := httptest.NewRequest(http.MethodPost, "/", nil)
	Hold(plain).Release() // no connection in the context: nothing to hold
}

// Holding is on every audited request's path: it allocates nothing.
func TestHoldAllocatesNothing(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &conn{Conn: a}
	r := httptest.NewRequest(http.MethodPost, "/", nil).WithContext(Context(t.Context(), c))
	if n := testing.AllocsPerRun(100, func() { Hold(r).Release() }); n != 0 {
		t.Fatalf("Hold and Release allocate %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = c.SetReadDeadline(time.Time{}) }); n != 0 {
		t.Fatalf("a deadline set with no read parked allocates %v times", n)
	}
}
