package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/signpolicy"
	"github.com/moonvault/moonvault/internal/storage/postgres/pgtest"
)

// benchPolicies are 20 stateless policies, every one in scope of every
// request: the stateless examples of docs/policies.md (scope widened to
// every account) and typical rules, as internal/signpolicy's benchmark.
func benchPolicies(b *testing.B) []*signpolicy.Document {
	var out []*signpolicy.Document
	for name, raw := range docPolicies(b) {
		if name == "daily-eth-cap" {
			continue
		}
		d, err := signpolicy.Decode(raw)
		if err != nil {
			b.Fatal(err)
		}
		d.Owners = nil
		out = append(out, d)
	}
	extra := []string{
		`intent.value > ether(%d)`,
		`intent.chain == "solana" && intent.value > sol("%d")`,
		`intent.to in ["0x1111111111111111111111111111111111111111", "0x%040d"]`,
		`intent.selector == "0x%08d"`,
		`"apikey" in intent.amr && intent.value > ether(%d)`,
		`intent.kind == "message" && intent.account == "ops/signer-%d"`,
	}
	for i := 0; len(out) < 20; i++ {
		out = append(out, &signpolicy.Document{Name: fmt.Sprint("extra ", i), Effect: signpolicy.EffectDeny,
			Condition: fmt.Sprintf(extra[i%len(extra)], i+50)})
	}
	return out
}

// BenchmarkSignMessagePolicies measures what transaction policies add to
// the whole sign-message path over real HTTPS (TLS, JWT, policy step,
// key, secp256k1, response; no audit sink, so the policy step's share is
// not hidden behind fsync): no policy, 20 stateless policies in scope,
// and a stateful limit (a count limit matching every message: one atomic
// update of the shared total per request), on bolt and on PostgreSQL.
// "serial" is one client (latency), "parallel" 32 per core (throughput).
//
//	go test -run '^$' -bench SignMessagePolicies -benchtime 3s ./internal/server
func BenchmarkSignMessagePolicies(b *testing.B) {
	limit := &signpolicy.Document{Name: "message count", Effect: signpolicy.EffectDeny, Condition: `intent.kind == "message"`,
		Limit: &signpolicy.Limit{Count: 1 << 50, Window: "24h"}}
	for _, storage := range []string{"bolt", "postgres"} {
		for _, set := range []struct {
			name      string
			stateless bool
			limit     bool
		}{
			{"none", false, false},
			{"stateless-20", true, false},
			{"limit", false, true},
			{"stateless-20+limit", true, true},
		} {
			b.Run(storage+"/"+set.name, func(b *testing.B) {
				var mutate func(*config.Server)
				if storage == "postgres" {
					url := pgtest.NewDatabase(b)
					mutate = func(c *config.Server) { c.Storage, c.PostgresURL = "postgres", secret.String(url) }
				}
				tn := startNode(b, b.TempDir(), nodeOpts{mutate: mutate})
				tn.token = initShamir(b, tn)
				tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "bench"}, nil)
				var docs []*signpolicy.Document
				if set.stateless {
					docs = benchPolicies(b)
				}
				if set.limit {
					docs = append(docs, limit)
				}
				for _, d := range docs {
					if _, err := tn.node.Policies.Create(context.Background(), d, signpolicy.Actor{User: "bench"}); err != nil {
						b.Fatal(err)
					}
				}
				for _, mode := range []string{"serial", "parallel"} {
					b.Run(mode, func(b *testing.B) { benchSign(b, tn, mode == "parallel") })
				}
			})
		}
	}
}

func benchSign(b *testing.B, tn *testNode, parallel bool) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tn.pool, MinVersion: tls.VersionTLS13}, MaxIdleConnsPerHost: 256,
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	body := []byte(`{"data":"hello","encoding":"utf8"}`)
	url := tn.url + "/v1/accounts/bench/sign-message"
	one := func() bool {
		req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tn.token)
		resp, err := client.Do(req)
		if err != nil {
			b.Error(err)
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Errorf("status %d", resp.StatusCode)
			return false
		}
		return true
	}
	one() // warm the connection and the key cache
	cpu0 := cpuTime(b)
	b.ResetTimer()
	if parallel {
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !one() {
					return
				}
			}
		})
	} else {
		for b.Loop() {
			if !one() {
				return
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	// CPU time of the process (client and server) per request: steadier
	// than wall time on a shared machine.
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/req")
}

// cpuTime is the process's user+system CPU time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
