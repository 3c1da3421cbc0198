package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/audit"
	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/tlsconfig"
)

// testCert writes a fresh self-signed certificate and key for 127.0.0.1.
func testCert(t testing.TB, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	dc, err := tlsconfig.NewDevCert("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	der, err := x509.MarshalECPrivateKey(dc.Cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, dc.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(dc.PEM)
	return certFile, keyFile, pool
}

// testNode is a node serving real HTTPS on a loopback port.
type testNode struct {
	t      testing.TB
	node   *Node
	url    string
	client *http.Client
	pool   *x509.CertPool
	stop   func()
	token  string
}

type nodeOpts struct {
	mutate func(*config.Server)
	dev    bool
	logTo  io.Writer
	// auditSinks are extra audit sinks (fault injection).
	auditSinks []audit.Sink
	wrapRandom func(HSMRandom) HSMRandom
	wrapAPI    func(hsm.API) hsm.API
	// rateClock is the rate limiters' clock (nil: time.Now).
	rateClock func() time.Time
}

// startNode runs a node over dir until the test ends (or stop is called).
func startNode(t testing.TB, dir string, o nodeOpts) *testNode {
	t.Helper()
	cfg := config.Defaults()
	cfg.DataDir = dir
	cfg.ListenAddress = "127.0.0.1:0"
	certFile, keyFile, pool := testCert(t, t.TempDir())
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	if o.mutate != nil {
		o.mutate(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if o.logTo != nil {
		log = slog.New(slog.NewTextHandler(o.logTo, &slog.HandlerOptions{Level: slog.LevelDebug}))
	} else if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := Build(ctx, Options{Config: cfg, Dev: o.dev, Logger: log, Out: io.Discard, AuditSinks: o.auditSinks, WrapHSMRandom: o.wrapRandom, WrapHSMAPI: o.wrapAPI, RateLimitClock: o.rateClock})
	if err != nil {
		cancel()
		t.Fatalf("build node: %v", err)
	}
	ln, err := net.Listen("tcp", cfg.ListenAddress)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if o.dev {
		if err := n.devSetup(ctx, ln.Addr().String()); err != nil {
			cancel()
			t.Fatalf("dev setup: %v", err)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = n.Serve(ctx, ln)
	}()
	tn := &testNode{t: t, node: n, url: "https://" + ln.Addr().String(), pool: pool}
	tn.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	stopped := false
	tn.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
	}
	t.Cleanup(tn.stop)
	return tn
}

// call sends a JSON request with the node's token and decodes the answer.
func (tn *testNode) call(method, path string, body any, out any) int {
	tn.t.Helper()
	return tn.callTok(tn.token, method, path, body, out)
}

func (tn *testNode) callTok(tok, method, path string, body any, out any) int {
	tn.t.Helper()
	code, err := tn.tryCall(tok, method, path, body, out)
	if err != nil {
		tn.t.Fatal(err)
	}
	return code
}

// tryCall is callTok for goroutines (which must not call t.Fatal): it
// returns what went wrong instead.
func (tn *testNode) tryCall(tok, method, path string, body any, out any) (int, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, tn.url+path, rd)
	if err != nil {
		return 0, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := tn.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("X-Request-Id") == "" {
		return resp.StatusCode, fmt.Errorf("%s %s: no X-Request-Id", method, path)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode %q: %w", method, path, raw, err)
		}
	}
	return resp.StatusCode, nil
}

type apiErr struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// mustCall fails the test unless the status is want.
func (tn *testNode) mustCall(want int, method, path string, body any, out any) {
	tn.t.Helper()
	var raw json.RawMessage
	got := tn.call(method, path, body, &raw)
	if got != want {
		tn.t.Fatalf("%s %s: status %d, want %d: %s", method, path, got, want, raw)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			tn.t.Fatal(err)
		}
	}
}
