package loadtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunAgainstFake checks the tool itself (login, account, the request
// loop, percentiles) against a stand-in server; the vault is measured with
// the tool in the notes, not here.
func TestRunAgainstFake(t *testing.T) {
	var logins, signs atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/auth/login":
			var in map[string]string
			_ = json.NewDecoder(r.Body).Decode(&in)
			if in["password"] != "pw" {
				w.WriteHeader(401)
				return
			}
			logins.Add(1)
			_, _ = w.Write([]byte(`{"access_token":"t","expires_in":300}`))
		case "/v1/accounts":
			w.WriteHeader(201)
			_, _ = w.Write([]byte(`{"name":"a1"}`))
		case "/v1/accounts/a1/sign-message":
			if r.Header.Get("Authorization") != "Bearer t" {
				w.WriteHeader(401)
				return
			}
			signs.Add(1)
			_, _ = w.Write([]byte(`{"signature":"0x"}`))
		default:
			w.WriteHeader(404)
		}
	}))
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	res, err := Run(context.Background(), Config{Addr: srv.URL, TLS: &tls.Config{RootCAs: pool}, Username: "admin", Password: "pw", Conns: 4, Duration: 300 * time.Millisecond, Mode: "sign"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Errors != 0 || res.Requests > signs.Load() || signs.Load()-res.Requests > 4 || logins.Load() != 1 {
		t.Fatalf("result %+v, signs %d", res, signs.Load())
	}
	if !(res.P50 <= res.P90 && res.P90 <= res.P99 && res.P99 <= res.Max) || res.Throughput <= 0 {
		t.Fatalf("percentiles out of order: %s", res)
	}
	if _, err := Run(context.Background(), Config{Addr: srv.URL, TLS: &tls.Config{RootCAs: pool}, Username: "admin", Password: "bad", Conns: 1, Duration: time.Second, Mode: "sign"}); err == nil {
		t.Fatal("bad password accepted")
	}
}

func TestPercentile(t *testing.T) {
	s := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 5}, {0.9, 9}, {0.99, 10}, {0.01, 1}} {
		if got := pct(s, c.p); got != c.want {
			t.Errorf("p%.2f = %d, want %d", c.p, got, c.want)
		}
	}
	if pct(nil, 0.5) != 0 {
		t.Error("empty")
	}
}
