package server

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/audit"
	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/fakeclock"
	"github.com/moonvault/moonvault/internal/hsm/hsmtest"
)

// slowLogin opens a login whose body never arrives in full; ended reports
// whether the server has given up on it (answered or closed).
func slowLogin(t *testing.T, tn *testNode) (ended *atomic.Bool, stop func()) {
	t.Helper()
	host := strings.TrimPrefix(tn.url, "https://")
	conn, err := tls.Dial("tcp", host, &tls.Config{RootCAs: tn.pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(conn, "POST /v1/auth/login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"username\":", host); err != nil {
		t.Fatal(err)
	}
	ended = new(atomic.Bool)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(io.Discard, conn)
		ended.Store(true)
	}()
	return ended, func() { conn.Close(); <-done }
}

// TestUnauthenticatedCannotStallTheNode: a login sending its body slowly
// and a token-less request to an exclusive route (operator rewrap) used to
// hold every other request of the node until the login's read timeout
// (review M1). Now credentials are checked before the gate and bodies
// read before it: the token-less request is refused at once, and
// authenticated work, exclusive or not, goes on while the slow login is
// still open.
func TestUnauthenticatedCannotStallTheNode(t *testing.T) {
	tn := startNode(t, t.TempDir(), nodeOpts{mutate: withBoltHSM(hsmtest.NewToken(t))})
	root := initHSM(t, tn)
	tn.token = root
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "a"}, nil)

	ended, stop := slowLogin(t, tn)
	defer stop()
	var e apiErr
	if got := tn.callTok("", "POST", "/v1/sys/rewrap", nil, &e); got != 401 {
		t.Fatalf("token-less rewrap = %d %+v, want 401", got, e)
	}
	if ended.Load() {
		t.Fatal("the token-less exclusive request was answered only after the slow login ended")
	}
	tn.mustCall(200, "POST", "/v1/accounts/a/sign-message", map[string]string{"data": "still served"}, nil)
	tn.mustCall(200, "POST", "/v1/sys/rewrap", nil, nil)
	if ended.Load() {
		t.Fatal("authenticated requests were served only after the slow login ended")
	}
}

// countingAudit counts audit lines by operation.
func auditCounter() *countingSink { return &countingSink{ops: map[string]int{}} }

// TestFailedAuthenticationLimited: requests without valid credentials to
// authenticated routes spend the address's bucket: a flood gets 429 and
// leaves one audit line per 10 s of refusals, not one per request (review
// M2); an authenticated request from the same address is still served.
func TestFailedAuthenticationLimited(t *testing.T) {
	sink := auditCounter()
	clock := fakeclock.New(time.Now()) // no bucket refills while the test counts
	tn := startNode(t, t.TempDir(), nodeOpts{auditSinks: []audit.Sink{sink}, rateClock: clock.Now})
	ir := initShamirKeys(t, tn)
	clock.Advance(10 * time.Second) // the bucket is full again: exactly the burst of 100 passes
	const n = 400
	limited := 0
	for i := range n {
		req, _ := http.NewRequest("GET", tn.url+"/v1/accounts", nil)
		if i%2 == 1 {
			req.Header.Set("Authorization", "Bearer not-a-token")
		}
		resp, err := tn.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case 429:
			limited++
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		case 401:
		default:
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
	if limited != n-100 {
		t.Fatalf("%d requests without valid credentials from one address: %d limited, want %d", n, limited, n-100)
	}
	if got := sink.count("accounts.list"); got != n-limited+1 {
		t.Fatalf("%d audit lines for %d answered and %d refused requests: want one per answer and one for the refusals", got, n-limited, limited)
	}
	tn.token = ir.RootToken
	tn.mustCall(200, "GET", "/v1/accounts", nil, nil)
}

// TestTrustedProxies: behind a trusted proxy each client has its own
// bucket (X-Forwarded-For names it, and the audit line records it); from
// anywhere else the header is ignored, so it cannot be used to dodge the
// limit; IPv6 clients share a bucket per /64 (review L3).
func TestTrustedProxies(t *testing.T) {
	sink := auditCounter()
	clock := fakeclock.New(time.Now()) // no bucket refills during a flood
	behind := startNode(t, t.TempDir(), nodeOpts{auditSinks: []audit.Sink{sink}, rateClock: clock.Now, mutate: func(c *config.Server) {
		c.TrustedProxies = []string{"127.0.0.1/32"}
	}})
	direct := startNode(t, t.TempDir(), nodeOpts{rateClock: clock.Now})
	flood := func(tn *testNode, xff func(i int) string) int {
		limited := 0
		for i := range 300 {
			req, _ := http.NewRequest("GET", tn.url+"/v1/no-such-route", nil)
			req.Header.Set("X-Forwarded-For", xff(i))
			resp, err := tn.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == 429 {
				limited++
			}
		}
		return limited
	}
	distinct := func(i int) string { return fmt.Sprintf("198.51.%d.%d", i/250, i%250+1) }
	if got := flood(behind, distinct); got != 0 {
		t.Fatalf("300 requests from 300 clients behind a trusted proxy: %d limited", got)
	}
	if got := flood(direct, distinct); got == 0 {
		t.Fatal("X-Forwarded-For from an untrusted peer dodged the limit")
	}
	sameSlash64 := func(i int) string { return fmt.Sprintf("2001:db8::%x", i+1) }
	if got := flood(behind, sameSlash64); got == 0 {
		t.Fatal("300 addresses of one IPv6 /64 were limited as 300 clients")
	}
	if !sink.sawAddr("198.51.0.1") {
		t.Fatal("the audit log does not record the client named by the trusted proxy")
	}
}
