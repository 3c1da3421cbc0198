package auth

import (
	"net"
	"sync"
	"time"

	"github.com/moonvault/moonvault/internal/clientaddr"
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
	// pending counts attempts being verified now: they count against the
	// limit, so a burst of concurrent guesses cannot all pass the check
	// before the first failure is recorded.
	pending int
}

const maxLimiterEntries = 100000

func newLimiter(max int, window time.Duration) *limiter {
	return &limiter{max: max, window: window, m: map[string]*failWindow{}}
}

// waitLocked is how long the caller must wait, 0 when every key may try.
func (l *limiter) waitLocked(now time.Time, keys []string) time.Duration {
	var wait time.Duration
	for _, k := range keys {
		w := l.m[k]
		if k == "" || w == nil || now.Sub(w.start) >= l.window || w.n+w.pending < l.max {
			continue
		}
		if d := w.start.Add(l.window).Sub(now); d > wait {
			wait = d
		}
	}
	return wait
}

// reserve checks the keys and, when they may try, counts this attempt as
// pending until release is called: check and count are one atomic step.
func (l *limiter) reserve(now time.Time, keys ...string) (time.Duration, func()) {
	if l.max <= 0 {
		return 0, func() {}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if wait := l.waitLocked(now, keys); wait > 0 {
		return wait, func() {}
	}
	held := l.windowsLocked(now, keys)
	for _, w := range held {
		w.pending++
	}
	return 0, func() {
		l.mu.Lock()
		for _, w := range held {
			w.pending--
		}
		l.mu.Unlock()
	}
}

func (l *limiter) fail(now time.Time, keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range l.windowsLocked(now, keys) {
		w.n++
	}
}

// windowsLocked returns the current window of each non-empty key, starting
// a new one where there is none or it has expired.
func (l *limiter) windowsLocked(now time.Time, keys []string) []*failWindow {
	if len(l.m) >= maxLimiterEntries {
		l.pruneLocked(now)
	}
	ws := make([]*failWindow, 0, len(keys))
	for _, k := range keys {
		if k == "" {
			continue
		}
		w := l.m[k]
		if w == nil || now.Sub(w.start) >= l.window {
			w = &failWindow{start: now}
			l.m[k] = w
		}
		ws = append(ws, w)
	}
	return ws
}

// failed reports whether key has a failure in its current window.
func (l *limiter) failed(now time.Time, key string) bool {
	if key == "" {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.m[key]
	return w != nil && now.Sub(w.start) < l.window && w.n > 0
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

// userAddrKey keys one name from one client address; "" (unknown address)
// is not limited.
func userAddrKey(username, remoteAddr string) string {
	a := addrKey(remoteAddr)
	if a == "" {
		return ""
	}
	return "u:" + username + "|" + a
}

// addrKey keys a client by host (an IPv6 client by its /64), ignoring the
// source port; "" (unknown address) is not limited per address.
func addrKey(remoteAddr string) string {
	if remoteAddr == "" {
		return ""
	}
	host := remoteAddr
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		host = h
	}
	return "a:" + clientaddr.Key(host)
}
