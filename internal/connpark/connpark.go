// Package connpark spares an HTTP/1 connection the read net/http issues
// while a handler waits.
//
// Once a request's body has been read to its end, net/http starts a
// "background read" on the connection, so that it notices a client that
// goes away (and a pipelined request) while the handler runs; when the
// handler is done it aborts that read by setting a read deadline in the
// past. A handler that waits (for its audit line to be durable: issue 14)
// lets that read run first, and on Linux it costs a read(2) that finds
// nothing, a netpoll wait, and the wake-up at the abort: on a virtual
// machine where every system call is expensive, a few per cent of the
// request's CPU. A held connection instead parks such a read without a
// system call until net/http sets a deadline (the abort, answered as the
// deadline error the real read would have returned; any other deadline
// ends the hold and the read goes to the connection) or the connection
// closes.
//
// The vault holds a connection only while the response's audit line
// becomes durable, after the handler has run: that line is recorded
// whether or not the client is still there, so noticing a client that
// has gone would change nothing then (the response write notices it).
package connpark

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// Listener wraps ln so that its connections can be held.
func Listener(ln net.Listener) net.Listener { return listener{ln} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c}, nil
}

type ctxKey struct{}

// Context is for http.Server.ConnContext: it carries c's holdable
// connection (c itself, or the one under a *tls.Conn) to the handlers.
func Context(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if pc, ok := c.(*conn); ok {
		return context.WithValue(ctx, ctxKey{}, pc)
	}
	return ctx
}

// Hold parks reads on r's connection from now until Release is called or
// a deadline is set on it; a read parked by then stays parked until net/http
// sets a deadline or the connection closes. Call it only where nothing of
// the request's body is still to be read from the connection (after the
// handler: net/http reads what is left only once the handler has
// returned). HTTP/2 connections, whose reader serves every stream, are
// never held.
func Hold(r *http.Request) Held {
	pc, ok := r.Context().Value(ctxKey{}).(*conn)
	if !ok || r.ProtoMajor != 1 {
		return Held{}
	}
	pc.mu.Lock()
	pc.held = true
	pc.mu.Unlock()
	return Held{pc}
}

// Held is a hold on a connection (a value, so that holding allocates
// nothing on the request path); the zero Held holds nothing.
type Held struct{ c *conn }

// Release ends the hold; a read already parked stays parked (Hold).
func (h Held) Release() {
	if h.c == nil {
		return
	}
	h.c.mu.Lock()
	h.c.held = false
	h.c.mu.Unlock()
}

type conn struct {
	net.Conn
	mu       sync.Mutex
	held     bool
	deadline bool          // a read deadline is set: reads go to the connection
	wake     chan struct{} // non-nil while a read is parked; closed to wake it
	expired  bool          // the parked read ends with a deadline error
}

func (c *conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.held && !c.deadline && c.wake == nil {
		wake := make(chan struct{})
		c.wake = wake
		c.mu.Unlock()
		<-wake
		c.mu.Lock()
		if c.expired {
			c.expired = false
			c.mu.Unlock()
			return 0, os.ErrDeadlineExceeded
		}
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}

// SetReadDeadline ends the hold (net/http is taking the reads back) and
// wakes a parked read: with a deadline already past it fails as the real
// read would have; otherwise it reads the connection, under the deadline.
func (c *conn) SetReadDeadline(t time.Time) error {
	err := c.Conn.SetReadDeadline(t)
	c.deadlineSet(t)
	return err
}

// SetDeadline sets both deadlines, as SetReadDeadline and SetWriteDeadline.
func (c *conn) SetDeadline(t time.Time) error {
	err := c.Conn.SetDeadline(t)
	c.deadlineSet(t)
	return err
}

// Close closes the connection and wakes a parked read, which then reads
// the closed connection and fails as it would have.
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.mu.Lock()
	c.held = false
	c.wakeLocked(false)
	c.mu.Unlock()
	return err
}

// deadlineSet records a deadline set on the connection (net/http sets
// several per request, so the clock is read only when a read is parked).
func (c *conn) deadlineSet(t time.Time) {
	c.mu.Lock()
	c.held, c.deadline = false, !t.IsZero()
	if c.wake != nil {
		c.wakeLocked(!t.IsZero() && !t.After(time.Now()))
	}
	c.mu.Unlock()
}

func (c *conn) wakeLocked(expired bool) {
	if c.wake != nil {
		c.expired = expired
		close(c.wake)
		c.wake = nil
	}
}
