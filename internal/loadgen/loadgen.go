// Package loadgen drives a running Moon Vault over HTTPS with a fixed
// number of HTTP/1.1 keep-alive connections for a fixed time, and reports
// throughput and latency percentiles. cmd/mvbench is its command line.
package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moonvault/moonvault/internal/secret"
)

// Modes.
const (
	ModeSign   = "sign"   // POST /v1/accounts/{name}/sign-message
	ModeCreate = "create" // POST /v1/accounts
)

// Config says what to drive.
type Config struct {
	Addr     string // https://host:port
	TLS      *tls.Config
	Username string
	Password secret.String
	Token    secret.String // used instead of Username/Password when set
	Conns    int
	Duration time.Duration
	Mode     string
	Progress io.Writer // one line per second; nil for none
}

// Result is what a run measured.
type Result struct {
	Requests           int64         // completed requests, successes and failures
	Errors             int64         // non-2xx answers and transport errors
	ByStatus           map[int]int64 // errors by HTTP status; 0 = transport error
	Elapsed            time.Duration
	P50, P90, P99, Max time.Duration
}

// Throughput is completed requests per second.
func (r *Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Print writes the summary.
func (r *Result) Print(w io.Writer) {
	fmt.Fprintf(w, "requests %d in %s: %.1f req/s, %d errors\n", r.Requests, r.Elapsed.Round(time.Millisecond), r.Throughput(), r.Errors)
	fmt.Fprintf(w, "latency p50 %s  p90 %s  p99 %s  max %s\n", r.P50, r.P90, r.P99, r.Max)
	codes := make([]int, 0, len(r.ByStatus))
	for c := range r.ByStatus {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	for _, c := range codes {
		label := fmt.Sprint(c)
		if c == 0 {
			label = "transport"
		}
		fmt.Fprintf(w, "  errors %s: %d\n", label, r.ByStatus[c])
	}
}

// Run logs in, prepares an account (mode sign), then drives requests on
// cfg.Conns connections until cfg.Duration has passed or ctx ends.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Conns <= 0 || cfg.Duration <= 0 {
		return nil, errors.New("loadgen: connections and duration must be positive")
	}
	if cfg.Mode != ModeSign && cfg.Mode != ModeCreate {
		return nil, fmt.Errorf("loadgen: unknown mode %q (sign or create)", cfg.Mode)
	}
	c := &client{base: strings.TrimRight(cfg.Addr, "/"), cfg: cfg, http: newHTTPClient(cfg.TLS, cfg.Conns)}
	defer c.http.CloseIdleConnections()
	path, body := "/v1/accounts", []byte(`{}`)
	if cfg.Mode == ModeSign {
		name, err := c.createAccount(ctx)
		if err != nil {
			return nil, err
		}
		path = "/v1/accounts/" + url.PathEscape(name) + "/sign-message"
		body = []byte(`{"data":"hello","encoding":"utf8"}`)
	}
	return c.drive(ctx, path, body)
}

// newHTTPClient keeps exactly n HTTP/1.1 connections: HTTP/2 is disabled
// (an empty TLSNextProto) so each worker owns one TCP connection.
func newHTTPClient(tlsConf *tls.Config, n int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     tlsConf,
			TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
			MaxConnsPerHost:     n,
			MaxIdleConnsPerHost: n,
			MaxIdleConns:        n,
			IdleConnTimeout:     90 * time.Second,
		},
	}
}

type client struct {
	base string
	cfg  Config
	http *http.Client

	mu      sync.Mutex
	token   string
	renewAt time.Time
}

// bearer returns a valid access token, logging in again when the current
// one nears expiry (tokens live minutes) or was refused.
func (c *client) bearer(ctx context.Context) (string, error) {
	if c.cfg.Token != "" {
		return c.cfg.Token.Reveal(), nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != "" && time.Now().Before(c.renewAt) {
		return c.token, nil
	}
	in, _ := json.Marshal(map[string]string{"username": c.cfg.Username, "password": c.cfg.Password.Reveal()})
	var out struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	status, err := c.post(ctx, "/v1/auth/login", "", in, &out)
	if err != nil {
		return "", fmt.Errorf("loadgen: login: %w", err)
	}
	if status != http.StatusOK || out.AccessToken == "" {
		return "", fmt.Errorf("loadgen: login refused (HTTP %d)", status)
	}
	life := time.Duration(out.ExpiresIn) * time.Second
	if life <= 0 {
		life = 5 * time.Minute
	}
	c.token, c.renewAt = out.AccessToken, time.Now().Add(life-min(30*time.Second, life/2))
	return c.token, nil
}

func (c *client) invalidate(tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token == tok {
		c.token = ""
	}
}

func (c *client) post(ctx context.Context, path, token string, body []byte, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode response: %w", err)
		}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // drain: keep the connection alive
	return resp.StatusCode, nil
}

func (c *client) createAccount(ctx context.Context) (string, error) {
	tok, err := c.bearer(ctx)
	if err != nil {
		return "", err
	}
	var out struct {
		Name string `json:"name"`
	}
	status, err := c.post(ctx, "/v1/accounts", tok, []byte(`{}`), &out)
	if err != nil {
		return "", fmt.Errorf("loadgen: create account: %w", err)
	}
	if status/100 != 2 || out.Name == "" {
		return "", fmt.Errorf("loadgen: create account refused (HTTP %d)", status)
	}
	return out.Name, nil
}

// worker is one connection's loop; it owns its histogram and counters.
type worker struct {
	hist     histogram
	byStatus map[int]int64
}

func (c *client) drive(ctx context.Context, path string, body []byte) (*Result, error) {
	if _, err := c.bearer(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Duration)
	defer cancel()
	var done, failed atomic.Int64
	workers := make([]*worker, c.cfg.Conns)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range workers {
		w := &worker{byStatus: map[int]int64{}}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				tok, err := c.bearer(ctx)
				if err != nil {
					if ctx.Err() == nil {
						w.byStatus[0]++
						failed.Add(1)
						done.Add(1)
						time.Sleep(100 * time.Millisecond) // do not spin on a refused login
					}
					continue
				}
				t0 := time.Now()
				status, err := c.post(ctx, path, tok, body, nil)
				if err != nil && ctx.Err() != nil {
					return // cut off by the deadline: not a measurement
				}
				w.hist.record(time.Since(t0))
				done.Add(1)
				if err != nil || status/100 != 2 {
					if status == http.StatusUnauthorized {
						c.invalidate(tok)
					}
					w.byStatus[status]++
					failed.Add(1)
				}
			}
		}()
	}
	stopProgress := c.progress(start, &done, &failed)
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()

	res := &Result{Requests: done.Load(), Errors: failed.Load(), ByStatus: map[int]int64{}, Elapsed: elapsed}
	var all histogram
	for _, w := range workers {
		all.merge(&w.hist)
		for k, v := range w.byStatus {
			res.ByStatus[k] += v
		}
	}
	res.P50, res.P90, res.P99, res.Max = all.quantile(0.50), all.quantile(0.90), all.quantile(0.99), all.max
	return res, nil
}

func (c *client) progress(start time.Time, done, failed *atomic.Int64) (stop func()) {
	if c.cfg.Progress == nil {
		return func() {}
	}
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last int64
		for {
			select {
			case <-quit:
				return
			case now := <-t.C:
				n := done.Load()
				fmt.Fprintf(c.cfg.Progress, "%4.0fs  requests %d  rate %d/s  errors %d\n", now.Sub(start).Seconds(), n, n-last, failed.Load())
				last = n
			}
		}
	}()
	return func() { close(quit); <-finished }
}
