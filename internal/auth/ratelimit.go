package auth

import (
	"net"
	"sync"
	"time"
)

// limiter counts login failures per key (user or client address) in a
// fixed window (OWASP Authentication Cheat Sheet: throttle per account and
// per source, without locking the account out for good).
type limiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	m      map[string]*failWindow
}

type failWindow struct {
	start time.Time
	n     int
}

const maxLimiterEntries = 100000

func newLimiter(max int, window time.Duration) *limiter {
	return &limiter{max: max, window: window, m: map[string]*failWindow{}}
}

// retryAfter is how long the caller must wait, 0 when any key may try.
func (l *limiter) retryAfter(now time.Time, keys ...string) time.Duration {
	if l.max <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	for _, k := range keys {
		w := l.m[k]
		if k == "" || w == nil || now.Sub(w.start) >= l.window || w.n < l.max {
			continue
		}
		if d := w.start.Add(l.window).Sub(now); d > wait {
			wait = d
		}
	}
	return wait
}

func (l *limiter) fail(now time.Time, keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) >= maxLimiterEntries {
		l.pruneLocked(now)
	}
	for _, k := range keys {
		if k == "" {
			continue
		}
		w := l.m[k]
		if w == nil || now.Sub(w.start) >= l.window {
			w = &failWindow{start: now}
			l.m[k] = w
		}
		w.n++
	}
}

// reset clears a key after a successful login (only the user key: an
// attacker must not clear an address's count with its own account).
func (l *limiter) reset(key string) {
	l.mu.Lock()
	delete(l.m, key)
	l.mu.Unlock()
}

func (l *limiter) prune(now time.Time) {
	l.mu.Lock()
	l.pruneLocked(now)
	l.mu.Unlock()
}

func (l *limiter) pruneLocked(now time.Time) {
	for k, w := range l.m {
		if now.Sub(w.start) >= l.window {
			delete(l.m, k)
		}
	}
}

func userKey(username string) string { return "u:" + username }

// addrKey keys a client by host, ignoring the source port; "" (unknown
// address) is not limited per address.
func addrKey(remoteAddr string) string {
	if remoteAddr == "" {
		return ""
	}
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return "a:" + host
	}
	return "a:" + remoteAddr
}
