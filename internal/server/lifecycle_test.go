package server

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/moonvault/moonvault/internal/config"
)

type sealStatus struct {
	Type        string `json:"type"`
	Initialized bool   `json:"initialized"`
	Sealed      bool   `json:"sealed"`
	T, N        int
	Progress    int `json:"progress"`
}

type initResp struct {
	Keys      []string `json:"unseal_keys_b64"`
	Recovery  []string `json:"recovery_keys_b64"`
	RootToken string   `json:"root_token"`
}

func unsealAll(t testing.TB, tn *testNode, keys []string) {
	t.Helper()
	var st sealStatus
	for _, k := range keys {
		tn.mustCall(200, "POST", "/v1/sys/unseal", map[string]string{"key": k}, &st)
	}
	if st.Sealed {
		t.Fatalf("still sealed after %d shares: %+v", len(keys), st)
	}
}

func TestLifecycleShamir(t *testing.T) {
	dir := t.TempDir()
	tn := startNode(t, dir, nodeOpts{})

	if got := tn.call("GET", "/v1/sys/health", nil, nil); got != 501 {
		t.Fatalf("health before init = %d, want 501", got)
	}
	var e apiErr
	if got := tn.call("GET", "/v1/accounts", nil, &e); got != 503 || e.Error.Code != "sealed" {
		t.Fatalf("data endpoint before init = %d %+v, want 503 sealed", got, e)
	}
	if got := tn.call("POST", "/v1/sys/init", map[string]int{"secret_shares": 2, "secret_threshold": 3}, &e); got != 400 {
		t.Fatalf("bad split = %d", got)
	}
	var ir initResp
	tn.mustCall(200, "POST", "/v1/sys/init", map[string]int{"secret_shares": 5, "secret_threshold": 3}, &ir)
	if len(ir.Keys) != 5 || ir.RootToken == "" {
		t.Fatalf("init: %+v", ir)
	}
	if got := tn.call("POST", "/v1/sys/init", map[string]int{"secret_shares": 5, "secret_threshold": 3}, nil); got != 400 {
		t.Fatalf("second init = %d, want 400", got)
	}
	if got := tn.call("GET", "/v1/sys/health", nil, nil); got != 503 {
		t.Fatalf("health sealed = %d, want 503", got)
	}
	if got := tn.call("GET", "/v1/sys/health?sealedcode=200", nil, nil); got != 200 {
		t.Fatalf("health sealedcode override = %d", got)
	}

	// Garbage shares answer 400 and change nothing.
	var st sealStatus
	for _, bad := range []string{"", "not base64 !!", base64.StdEncoding.EncodeToString([]byte("short")), base64.StdEncoding.EncodeToString(make([]byte, 33))} {
		e = apiErr{}
		if got := tn.call("POST", "/v1/sys/unseal", map[string]string{"key": bad}, &e); got != 400 || e.Error.Message == "" {
			t.Errorf("garbage share %q = %d %+v", bad, got, e)
		}
	}
	if got := tn.call("POST", "/v1/sys/unseal", `{"key":`, &e); got != 400 || e.Error.Code != "invalid_json" {
		t.Errorf("malformed JSON = %d %+v", got, e)
	}
	tn.mustCall(200, "GET", "/v1/sys/seal-status", nil, &st)
	if st.Progress != 0 || !st.Sealed || st.T != 3 || st.N != 5 {
		t.Fatalf("state changed by garbage: %+v", st)
	}

	// Progress, duplicates ignored.
	tn.mustCall(200, "POST", "/v1/sys/unseal", map[string]string{"key": ir.Keys[0]}, &st)
	tn.mustCall(200, "POST", "/v1/sys/unseal", map[string]string{"key": ir.Keys[0]}, &st)
	if st.Progress != 1 {
		t.Fatalf("duplicate counted: %+v", st)
	}
	// A wrong combination: a well-formed share that is not ours.
	fake := make([]byte, 33)
	_, _ = rand.Read(fake)
	fake[32] = 0xEE
	tn.mustCall(200, "POST", "/v1/sys/unseal", map[string]string{"key": ir.Keys[1]}, &st)
	e = apiErr{}
	if got := tn.call("POST", "/v1/sys/unseal", map[string]string{"key": base64.StdEncoding.EncodeToString(fake)}, &e); got != 400 || e.Error.Code != "wrong_shares" {
		t.Fatalf("wrong combination = %d %+v", got, e)
	}
	tn.mustCall(200, "GET", "/v1/sys/seal-status", nil, &st)
	if !st.Sealed || st.Progress != 0 {
		t.Fatalf("after wrong combination: %+v", st)
	}
	unsealAll(t, tn, ir.Keys[2:5])
	if got := tn.call("GET", "/v1/sys/health", nil, nil); got != 200 {
		t.Fatalf("health unsealed = %d", got)
	}

	// The root token administers; data written before seal survives restart.
	tn.token = ir.RootToken
	tn.mustCall(201, "POST", "/v1/users", map[string]string{"username": "alice", "password": "correct horse battery"}, nil)
	var rot struct{ Term int }
	tn.mustCall(200, "POST", "/v1/sys/rotate", nil, &rot)
	if rot.Term != 2 {
		t.Fatalf("rotate term = %d", rot.Term)
	}
	tn.mustCall(201, "POST", "/v1/users", map[string]string{"username": "bob", "password": "correct horse battery"}, nil)
	tn.mustCall(204, "POST", "/v1/sys/seal", nil, nil)
	if got := tn.call("GET", "/v1/users", nil, &e); got != 503 || e.Error.Code != "sealed" {
		t.Fatalf("after seal = %d %+v", got, e)
	}
	tn.stop()

	tn = startNode(t, dir, nodeOpts{})
	tn.mustCall(200, "GET", "/v1/sys/seal-status", nil, &st)
	if !st.Initialized || !st.Sealed {
		t.Fatalf("after restart: %+v", st)
	}
	unsealAll(t, tn, []string{ir.Keys[4], ir.Keys[0], ir.Keys[2]})
	tn.token = ir.RootToken
	tn.mustCall(200, "GET", "/v1/users/alice", nil, nil)
	tn.mustCall(200, "GET", "/v1/users/bob", nil, nil)

	// Rekey to 4/2 with three current shares; old shares stop working.
	var rk struct {
		Nonce    string   `json:"nonce"`
		Complete bool     `json:"complete"`
		Keys     []string `json:"keys_b64"`
	}
	tn.mustCall(200, "POST", "/v1/sys/rekey/init", map[string]int{"secret_shares": 4, "secret_threshold": 2}, &rk)
	nonce := rk.Nonce
	for _, k := range ir.Keys[:3] {
		tn.mustCall(200, "POST", "/v1/sys/rekey/update", map[string]string{"nonce": nonce, "key": k}, &rk)
	}
	if !rk.Complete || len(rk.Keys) != 4 {
		t.Fatalf("rekey: %+v", rk)
	}
	tn.mustCall(204, "POST", "/v1/sys/seal", nil, nil)
	for _, k := range ir.Keys[:2] {
		tn.call("POST", "/v1/sys/unseal", map[string]string{"key": k}, nil)
	}
	tn.call("POST", "/v1/sys/unseal", map[string]string{"key": ir.Keys[2]}, nil)
	tn.mustCall(200, "GET", "/v1/sys/seal-status", nil, &st)
	if !st.Sealed {
		t.Fatal("old shares unsealed after rekey")
	}
	tn.mustCall(200, "POST", "/v1/sys/unseal", map[string]bool{"reset": true}, nil)
	unsealAll(t, tn, rk.Keys[1:3])
	tn.mustCall(200, "GET", "/v1/users/alice", nil, nil)
}

func TestTLSPolicy(t *testing.T) {
	tn := startNode(t, t.TempDir(), nodeOpts{})
	host := strings.TrimPrefix(tn.url, "https://")
	c12 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tn.pool, MaxVersion: tls.VersionTLS12}}}
	if _, err := c12.Get(tn.url + "/v1/sys/health"); err == nil {
		t.Fatal("TLS 1.2 accepted by default")
	}
	conn, err := tls.Dial("tcp", host, &tls.Config{RootCAs: tn.pool, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatalf("TLS 1.3 refused: %v", err)
	}
	if conn.ConnectionState().Version != tls.VersionTLS13 {
		t.Fatal("not TLS 1.3")
	}
	conn.Close()
	// No plaintext: an HTTP request to the port does not get an API answer.
	resp, err := http.Get("http://" + host + "/v1/sys/health")
	if err == nil {
		defer resp.Body.Close()
		if resp.StatusCode == 200 || resp.StatusCode == 501 {
			t.Fatalf("plaintext HTTP served: %d", resp.StatusCode)
		}
	}
	r, err := tn.client.Get(tn.url + "/v1/sys/health")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if !strings.Contains(r.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Fatal("no HSTS header")
	}

	// Explicit TLS 1.2 allows only ECDHE+AEAD suites.
	tn12 := startNode(t, t.TempDir(), nodeOpts{mutate: func(c *config.Server) { c.TLSMinVersion = "1.2" }})
	host12 := strings.TrimPrefix(tn12.url, "https://")
	conn, err = tls.Dial("tcp", host12, &tls.Config{RootCAs: tn12.pool, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS 1.2 refused when enabled: %v", err)
	}
	conn.Close()
	_, err = tls.Dial("tcp", host12, &tls.Config{RootCAs: tn12.pool, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}})
	if err == nil {
		t.Fatal("non-ECDHE or non-AEAD suite accepted")
	}
}

func TestBodyLimits(t *testing.T) {
	tn := startNode(t, t.TempDir(), nodeOpts{mutate: func(c *config.Server) { c.MaxRequestBytes = 1024 }})
	var e apiErr
	big := `{"key":"` + strings.Repeat("A", 4096) + `"}`
	if got := tn.call("POST", "/v1/sys/unseal", big, &e); got != 413 || e.Error.Code != "payload_too_large" {
		t.Fatalf("oversize body = %d %+v", got, e)
	}
	if got := tn.call("POST", "/v1/sys/init", `{"secret_shares":1,"secret_threshold":1,"bogus":1}`, &e); got != 400 || !strings.Contains(e.Error.Message, "bogus") {
		t.Fatalf("unknown field = %d %+v", got, e)
	}
	if got := tn.call("GET", "/v1/nope", nil, &e); got != 404 || e.Error.Code != "not_found" {
		t.Fatalf("unknown path = %d %+v", got, e)
	}
}
