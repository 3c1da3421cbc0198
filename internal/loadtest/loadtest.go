// Package loadtest drives a running vault over HTTPS with N keep-alive
// connections for a fixed time and reports throughput and latency
// percentiles: the project's load tool (`moonvault bench`).
package loadtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config says what to drive.
type Config struct {
	Addr     string
	TLS      *tls.Config
	Username string
	Password string
	Token    string // instead of Username/Password
	Conns    int
	Duration time.Duration
	Mode     string // "sign" or "create"
	Progress io.Writer
}

// Result is what a run measured.
type Result struct {
	Mode       string         `json:"mode"`
	Conns      int            `json:"connections"`
	Duration   time.Duration  `json:"duration_ns"`
	Requests   int64          `json:"requests"`
	Errors     int64          `json:"errors"`
	ByStatus   map[int]int64  `json:"by_status"`
	Throughput float64        `json:"requests_per_second"`
	P50, P90   time.Duration  `json:"-"`
	P99, Max   time.Duration  `json:"-"`
	Latency    map[string]any `json:"latency_ms"`
}

func (r *Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mode %s, %d connections, %s\n", r.Mode, r.Conns, r.Duration.Round(time.Millisecond))
	fmt.Fprintf(&b, "requests %d, errors %d, throughput %.0f req/s\n", r.Requests, r.Errors, r.Throughput)
	fmt.Fprintf(&b, "latency p50 %s  p90 %s  p99 %s  max %s\n", ms(r.P50), ms(r.P90), ms(r.P99), ms(r.Max))
	if len(r.ByStatus) > 0 {
		fmt.Fprintf(&b, "status counts %v\n", r.ByStatus)
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }

type client struct {
	base  string
	hc    *http.Client
	token atomic.Pointer[string]
}

func (c *client) do(ctx context.Context, method, path string, body []byte, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if t := c.token.Load(); t != nil {
		req.Header.Set("Authorization", "Bearer "+*t)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode < 300 {
		return resp.StatusCode, json.NewDecoder(resp.Body).Decode(out)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// login gets a fresh access token; tokens live minutes, so the run logs in
// again before expiry.
func (c *client) login(ctx context.Context, cfg Config) (time.Duration, error) {
	if cfg.Token != "" {
		c.token.Store(&cfg.Token)
		return 0, nil
	}
	body, _ := json.Marshal(map[string]string{"username": cfg.Username, "password": cfg.Password})
	var out struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	c.token.Store(nil)
	code, err := c.do(ctx, "POST", "/v1/auth/login", body, &out)
	if err != nil {
		return 0, fmt.Errorf("login: %w", err)
	}
	if code != 200 || out.AccessToken == "" {
		return 0, fmt.Errorf("login: HTTP %d", code)
	}
	c.token.Store(&out.AccessToken)
	return time.Duration(out.ExpiresIn) * time.Second, nil
}

// Run drives the vault and returns the measurements. It stops by itself
// after cfg.Duration.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Conns < 1 || cfg.Duration <= 0 {
		return nil, errors.New("connections and duration must be positive")
	}
	if cfg.Mode != "sign" && cfg.Mode != "create" {
		return nil, fmt.Errorf("mode %q: use sign or create", cfg.Mode)
	}
	// Exactly N HTTP/1.1 connections: HTTP/2 would multiplex them onto one.
	tr := &http.Transport{
		TLSClientConfig:     cfg.TLS,
		MaxConnsPerHost:     cfg.Conns,
		MaxIdleConnsPerHost: cfg.Conns,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	defer tr.CloseIdleConnections()
	c := &client{base: strings.TrimRight(cfg.Addr, "/"), hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
	ttl, err := c.login(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var acct struct{ Name string }
	if code, err := c.do(ctx, "POST", "/v1/accounts", []byte(`{}`), &acct); err != nil || code != 201 {
		return nil, fmt.Errorf("create the account to sign with: HTTP %d %v", code, err)
	}
	path, body := "/v1/accounts/"+acct.Name+"/sign-message", []byte(`{"data":"hello","encoding":"utf8"}`)
	if cfg.Mode == "create" {
		path, body = "/v1/accounts", []byte(`{}`)
	}

	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	if ttl > 0 {
		go func() { // re-login at 80 % of the token's life
			t := time.NewTicker(ttl * 4 / 5)
			defer t.Stop()
			for {
				select {
				case <-runCtx.Done():
					return
				case <-t.C:
					_, _ = c.login(runCtx, cfg)
				}
			}
		}()
	}
	var (
		count, errs atomic.Int64
		mu          sync.Mutex
		lat         = make([]time.Duration, 0, 1<<20)
		byStatus    = map[int]int64{}
		wg          sync.WaitGroup
	)
	start := time.Now()
	for i := 0; i < cfg.Conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			statuses := map[int]int64{}
			for runCtx.Err() == nil {
				t0 := time.Now()
				code, err := c.do(runCtx, "POST", path, body, nil)
				if runCtx.Err() != nil {
					break
				}
				local = append(local, time.Since(t0))
				count.Add(1)
				statuses[code]++
				if err != nil || code >= 300 {
					errs.Add(1)
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			for k, v := range statuses {
				byStatus[k] += v
			}
			mu.Unlock()
		}()
	}
	if cfg.Progress != nil {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			last := int64(0)
			for {
				select {
				case <-runCtx.Done():
					return
				case <-t.C:
					n := count.Load()
					fmt.Fprintf(cfg.Progress, "%6.0fs  %9d requests  %8d req/s  %d errors\n", time.Since(start).Seconds(), n, n-last, errs.Load())
					last = n
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	r := &Result{Mode: cfg.Mode, Conns: cfg.Conns, Duration: elapsed, Requests: count.Load(), Errors: errs.Load(), ByStatus: byStatus}
	r.Throughput = float64(r.Requests) / elapsed.Seconds()
	r.P50, r.P90, r.P99 = pct(lat, 0.50), pct(lat, 0.90), pct(lat, 0.99)
	if len(lat) > 0 {
		r.Max = lat[len(lat)-1]
	}
	r.Latency = map[string]any{"p50": msf(r.P50), "p90": msf(r.P90), "p99": msf(r.P99), "max": msf(r.Max)}
	return r, nil
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pct is the nearest-rank percentile of sorted samples.
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
