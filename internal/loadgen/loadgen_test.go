package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeVault answers the three endpoints the tool uses. It checks that
// every request is HTTP/1.1 with a token it issued, fails every tenth
// signature with 503, and records the client connections it sees.
type fakeVault struct {
	logins, signs, creates atomic.Int64
	expiresIn              int
	mu                     sync.Mutex
	tokens                 map[string]bool
	conns                  map[string]bool
	inflight, maxInflight  int // requests being served now, and at most
	protoErr               atomic.Bool
}

func (f *fakeVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The tool drives -c requests at once, one per HTTP/1.1 connection:
	// count them in flight (a connection the server has not yet seen
	// closed while its replacement arrives is no breach).
	f.mu.Lock()
	f.conns[r.RemoteAddr] = true
	f.inflight++
	f.maxInflight = max(f.maxInflight, f.inflight)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inflight--
		f.mu.Unlock()
	}()
	if r.ProtoMajor != 1 {
		f.protoErr.Store(true)
	}
	if r.URL.Path == "/v1/auth/login" {
		var in map[string]string
		_ = json.NewDecoder(r.Body).Decode(&in)
		if in["username"] != "admin" || in["password"] != "pw" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		tok := fmt.Sprintf("tok-%d", f.logins.Add(1))
		f.mu.Lock()
		f.tokens[tok] = true
		f.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": f.expiresIn})
		return
	}
	f.mu.Lock()
	ok := f.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	f.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/accounts":
		n := f.creates.Add(1)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"name":"acct-%08x","address":"0x0"}`, n)
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/sign-message"):
		if f.signs.Add(1)%10 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, `{"signature":"0x00"}`)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func startFake(t *testing.T, expiresIn int) (*fakeVault, *httptest.Server) {
	f := &fakeVault{expiresIn: expiresIn, tokens: map[string]bool{}, conns: map[string]bool{}}
	srv := httptest.NewTLSServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func tlsFor(srv *httptest.Server) *tls.Config {
	return srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
}

func TestSignMode(t *testing.T) {
	f, srv := startFake(t, 2) // 2 s tokens: the run must log in again
	var progress bytes.Buffer
	res, err := Run(context.Background(), Config{
		Addr: srv.URL, TLS: tlsFor(srv), Username: "admin", Password: "pw",
		Conns: 4, Duration: 2500 * time.Millisecond, Mode: ModeSign, Progress: &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Requests in flight at the deadline reach the server but are not
	// counted: at most one per connection.
	served := f.signs.Load()
	if res.Requests == 0 || served < res.Requests || served > res.Requests+4 {
		t.Fatalf("requests %d, server saw %d", res.Requests, served)
	}
	if res.Errors == 0 || res.Errors != res.ByStatus[503] || res.Errors > served/10 || res.Errors < served/10-4 {
		t.Fatalf("errors %d by status %v, server failed %d", res.Errors, res.ByStatus, served/10)
	}
	if f.creates.Load() != 1 {
		t.Fatalf("%d accounts created, want 1", f.creates.Load())
	}
	if f.logins.Load() < 2 {
		t.Fatalf("token not renewed: %d logins", f.logins.Load())
	}
	if f.protoErr.Load() {
		t.Fatal("a request was not HTTP/1.1")
	}
	f.mu.Lock()
	n, most := len(f.conns), f.maxInflight
	f.mu.Unlock()
	if n < 1 || most < 1 || most > 4 {
		t.Fatalf("%d connections, at most %d requests at once; want at most 4", n, most)
	}
	if !(res.P50 <= res.P90 && res.P90 <= res.P99 && res.P99 <= res.Max && res.Max > 0) {
		t.Fatalf("percentiles out of order: %+v", res)
	}
	if !strings.Contains(progress.String(), "requests") {
		t.Fatalf("no progress lines: %q", progress.String())
	}
	var out bytes.Buffer
	res.Print(&out)
	if !strings.Contains(out.String(), "req/s") || !strings.Contains(out.String(), "errors 503:") {
		t.Fatalf("summary: %s", out.String())
	}
}

func TestCreateModeWithToken(t *testing.T) {
	f, srv := startFake(t, 300)
	f.tokens["static"] = true
	res, err := Run(context.Background(), Config{
		Addr: srv.URL, TLS: tlsFor(srv), Token: "static", Conns: 2, Duration: 300 * time.Millisecond, Mode: ModeCreate,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || f.creates.Load()-res.Requests > 2 || res.Errors != 0 || f.logins.Load() != 0 {
		t.Fatalf("requests %d errors %d creates %d logins %d", res.Requests, res.Errors, f.creates.Load(), f.logins.Load())
	}
}

func TestLoginRefused(t *testing.T) {
	_, srv := startFake(t, 300)
	_, err := Run(context.Background(), Config{
		Addr: srv.URL, TLS: tlsFor(srv), Username: "admin", Password: "wrong", Conns: 1, Duration: time.Second, Mode: ModeSign,
	})
	if err == nil || !strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("want a login error without the password, got %v", err)
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.9, 900 * time.Millisecond}, {0.99, 990 * time.Millisecond}} {
		got := h.quantile(c.q)
		if got > c.want || float64(c.want-got) > 0.04*float64(c.want) {
			t.Errorf("q%.2f = %s, want within 4%% below %s", c.q, got, c.want)
		}
	}
	if h.max != time.Second {
		t.Errorf("max %s", h.max)
	}
	for us := uint64(0); us < 1<<20; us += 997 {
		if lb := lowerBound(bucket(us)); lb > us {
			t.Fatalf("bucket(%d) lower bound %d above value", us, lb)
		}
	}
}
