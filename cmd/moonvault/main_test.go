package main

// These tests run the real binary as a user would: a server subprocess and
// CLI subprocesses talking to it over HTTPS.

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/tlsconfig"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "moonvault-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "moonvault")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build moonvault: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type serverProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string
	caFile string
	out    *syncBuffer
	env    []string
	client *http.Client
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// writeTLS writes a certificate and key for 127.0.0.1 into dir.
func writeTLS(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	dc, err := tlsconfig.NewDevCert("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(dc.Cert.PrivateKey.(*ecdsa.PrivateKey))
	cert, key = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(cert, dc.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// startServer runs `moonvault server` with args and waits for it to answer.
func startServer(t *testing.T, addr, caFile string, env []string, args ...string) *serverProc {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"server"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sp := &serverProc{t: t, cmd: cmd, addr: addr, caFile: caFile, out: out, env: env}
	t.Cleanup(func() {
		if sp.cmd.ProcessState == nil {
			_ = sp.cmd.Process.Kill()
			_ = sp.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("server output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(sp.caFile); err == nil {
			sp.client = httpsClient(t, sp.caFile) // dev mode writes a new certificate at each start
		}
		if sp.client != nil {
			resp, err := sp.client.Get("https://" + addr + "/v1/sys/health")
			if err == nil {
				resp.Body.Close()
				return sp
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("server did not answer:\n%s", out.String())
	return nil
}

func httpsClient(t *testing.T, caFile string) *http.Client {
	tc, err := tlsconfig.ClientConfig(caFile)
	if err != nil {
		t.Fatal(err)
	}
	tc.MinVersion = tls.VersionTLS13
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
}

// cli runs a client command and returns its stdout and exit code.
func (sp *serverProc) cli(env []string, args ...string) (string, int) {
	sp.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(append(os.Environ(), "MOONVAULT_ADDR=https://"+sp.addr, "MOONVAULT_CACERT="+sp.caFile, "HOME="+sp.t.TempDir()), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		sp.t.Fatal(err)
	}
	if code != 0 && code != 2 {
		sp.t.Logf("moonvault %s: exit %d: %s", strings.Join(args, " "), code, stderr.String())
	}
	return stdout.String(), code
}

func (sp *serverProc) stop(sig syscall.Signal) {
	sp.t.Helper()
	_ = sp.cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- sp.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = sp.cmd.Process.Kill()
		sp.t.Fatalf("server did not stop on %v", sig)
	}
}

func TestBinaryLifecycle(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTLS(t, t.TempDir())
	addr := freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "moonvault.hcl")
	hcl := fmt.Sprintf("listen_address = %q\ndata_dir = %q\ntls_cert_file = %q\ntls_key_file = %q\n", addr, dir, cert, key)
	if err := os.WriteFile(cfg, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	sp := startServer(t, addr, cert, nil, "-config", cfg)

	out, code := sp.cli(nil, "operator", "init", "-key-shares", "3", "-key-threshold", "2", "-format", "json")
	if code != 0 {
		t.Fatalf("init exit %d: %s", code, out)
	}
	var ir struct {
		Keys      []string `json:"unseal_keys_b64"`
		RootToken string   `json:"root_token"`
	}
	if err := json.Unmarshal([]byte(out), &ir); err != nil || len(ir.Keys) != 3 || ir.RootToken == "" {
		t.Fatalf("init output %q: %v", out, err)
	}
	if _, code := sp.cli(nil, "operator", "status"); code != 2 {
		t.Fatalf("status while sealed: exit %d, want 2", code)
	}
	if out, code := sp.cli(nil, "operator", "unseal", "garbage!!"); code == 0 || strings.Contains(out, "sealed") {
		t.Fatalf("garbage share accepted: %d %s", code, out)
	}
	sp.cli(nil, "operator", "unseal", ir.Keys[0])
	if out, code := sp.cli(nil, "operator", "unseal", ir.Keys[2]); code != 0 || !strings.Contains(out, "false") {
		t.Fatalf("unseal: %d %s", code, out)
	}
	if _, code := sp.cli(nil, "operator", "status"); code != 0 {
		t.Fatalf("status unsealed: exit %d", code)
	}
	tok := []string{"MOONVAULT_TOKEN=" + ir.RootToken}
	if out, code := sp.cli(tok, "operator", "rotate", "-format", "json"); code != 0 || !strings.Contains(out, `"term": 2`) {
		t.Fatalf("rotate: %d %s", code, out)
	}
	if _, code := sp.cli(append(tok, "MOONVAULT_NEW_PASSWORD=correct horse battery"), "user", "create", "alice"); code != 0 {
		t.Fatal("user create failed")
	}
	if _, code := sp.cli(tok, "operator", "seal"); code != 0 {
		t.Fatal("seal failed")
	}
	if _, code := sp.cli(nil, "operator", "status"); code != 2 {
		t.Fatal("not sealed after seal")
	}
	sp.stop(syscall.SIGTERM)

	// Restart: sealed; unseal; the data is there.
	sp = startServer(t, addr, cert, nil, "-config", cfg)
	if _, code := sp.cli(nil, "operator", "status"); code != 2 {
		t.Fatal("restarted unsealed")
	}
	sp.cli(nil, "operator", "unseal", ir.Keys[1])
	sp.cli(nil, "operator", "unseal", ir.Keys[0])
	if out, code := sp.cli(tok, "user", "get", "alice", "-format", "json"); code != 0 || !strings.Contains(out, "alice") {
		t.Fatalf("user after restart: %d %s", code, out)
	}
	out, code = sp.cli(tok, "operator", "rekey", "-key-shares", "2", "-key-threshold", "2", "-format", "json", ir.Keys[0], ir.Keys[2])
	if code != 0 || !strings.Contains(out, "keys_b64") {
		t.Fatalf("rekey: %d %s", code, out)
	}
	sp.stop(syscall.SIGTERM)
}

// TestKill9Durability kills the server with SIGKILL while clients create
// accounts; after a restart every acknowledged (201) account is there.
func TestKill9Durability(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTLS(t, t.TempDir())
	addr := freeAddr(t)
	args := []string{"-listen-address", addr, "-data-dir", dir, "-tls-cert-file", cert, "-tls-key-file", key}
	sp := startServer(t, addr, cert, nil, args...)
	out, _ := sp.cli(nil, "operator", "init", "-key-shares", "1", "-key-threshold", "1", "-format", "json")
	var ir struct {
		Keys      []string `json:"unseal_keys_b64"`
		RootToken string   `json:"root_token"`
	}
	if err := json.Unmarshal([]byte(out), &ir); err != nil {
		t.Fatalf("init: %q", out)
	}
	sp.cli(nil, "operator", "unseal", ir.Keys[0])

	var mu sync.Mutex
	acked := map[string]string{}
	var n atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d-%d", w, i)
				body := strings.NewReader(`{"name":"` + name + `"}`)
				req, _ := http.NewRequest("POST", "https://"+addr+"/v1/accounts", body)
				req.Header.Set("Authorization", "Bearer "+ir.RootToken)
				resp, err := sp.client.Do(req)
				if err != nil {
					return
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 201 {
					var a struct{ Address string }
					_ = json.Unmarshal(raw, &a)
					mu.Lock()
					acked[name] = a.Address
					mu.Unlock()
					n.Add(1)
				}
			}
		}(w)
	}
	for n.Load() < 150 {
		time.Sleep(5 * time.Millisecond)
	}
	_ = sp.cmd.Process.Signal(syscall.SIGKILL)
	_ = sp.cmd.Wait()
	close(stop)
	wg.Wait()

	sp = startServer(t, addr, cert, nil, args...)
	sp.cli(nil, "operator", "unseal", ir.Keys[0])
	mu.Lock()
	defer mu.Unlock()
	for name, addrHex := range acked {
		req, _ := http.NewRequest("GET", "https://"+addr+"/v1/accounts/"+name, nil)
		req.Header.Set("Authorization", "Bearer "+ir.RootToken)
		resp, err := sp.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var a struct{ Address string }
		_ = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if resp.StatusCode != 200 || a.Address != addrHex {
			t.Fatalf("acknowledged account %s lost after kill -9: %d %q", name, resp.StatusCode, a.Address)
		}
	}
	t.Logf("%d acknowledged accounts all present after kill -9", len(acked))
}

// TestDevServer runs `moonvault server -dev` as the README says and uses it
// with the CLI: login, create an account, sign.
func TestDevServer(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	env := []string{"MOONVAULT_DEV_ADMIN_PASSWORD=correct horse battery staple"}
	sp := startServer(t, addr, filepath.Join(dir, "dev-ca.pem"), env, "-dev", "-dev-listen-address", addr, "-data-dir", dir)
	banner := sp.out.String()
	for _, want := range []string{"SHA-256 fingerprint", "dev-ca.pem", "export MOONVAULT_ADDR"} {
		if !strings.Contains(banner, want) {
			t.Fatalf("banner lacks %q:\n%s", want, banner)
		}
	}
	if strings.Contains(banner, "correct horse battery staple") {
		t.Fatal("banner prints the admin password given in the environment")
	}
	home := t.TempDir()
	cenv := []string{"HOME=" + home, "MOONVAULT_PASSWORD=correct horse battery staple"}
	if out, code := sp.cli(cenv, "login", "-username", "admin"); code != 0 {
		t.Fatalf("login: %s", out)
	}
	out, code := sp.cli([]string{"HOME=" + home}, "account", "create", "treasury", "-format", "json")
	if code != 0 || !strings.Contains(out, `"address"`) {
		t.Fatalf("account create: %d %s", code, out)
	}
	out, code = sp.cli([]string{"HOME=" + home}, "account", "sign-message", "treasury", "hello", "-format", "json")
	if code != 0 || !strings.Contains(out, `"signature"`) {
		t.Fatalf("sign-message: %d %s", code, out)
	}
	sc := bufio.NewScanner(strings.NewReader(banner))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "Seal:") {
			t.Log(strings.TrimSpace(sc.Text()))
		}
	}
	sp.stop(syscall.SIGTERM)
	// The dev data dir unseals again by itself.
	sp = startServer(t, addr, filepath.Join(dir, "dev-ca.pem"), env, "-dev", "-dev-listen-address", addr, "-data-dir", dir)
	if out, code := sp.cli([]string{"HOME=" + home}, "operator", "status", "-format", "json"); code != 0 || !strings.Contains(out, `"sealed": false`) {
		t.Fatalf("dev restart: %d %s", code, out)
	}
	sp.stop(syscall.SIGTERM)
}

// TestAttestVerifyNeedsAReference: `moonvault attest verify` refuses to
// run without an expected measurement (or an explicit waiver), rejects a
// malformed one, and reads a policy file; against a server outside a TEE it
// then says so (exit 3). The verification itself is tested in internal/tee
// with go-sev-guest's simulated device and a recorded TDX quote.
func TestAttestVerifyNeedsAReference(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTLS(t, t.TempDir())
	addr := freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "moonvault.hcl")
	hcl := fmt.Sprintf("listen_address = %q\ndata_dir = %q\ntls_cert_file = %q\ntls_key_file = %q\n", addr, dir, cert, key)
	if err := os.WriteFile(cfg, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	sp := startServer(t, addr, cert, nil, "-config", cfg)
	policy := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(policy, []byte(`{"measurements":["`+strings.Repeat("ab", 48)+`"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want int // exit code; -1: any failure but 0 and 3
	}{
		{[]string{"attest", "verify"}, -1},
		{[]string{"attest", "verify", "-measurement", "zz"}, -1},
		{[]string{"attest", "verify", "-measurement", strings.Repeat("ab", 47)}, -1},
		{[]string{"attest", "verify", "-policy", filepath.Join(t.TempDir(), "missing.json")}, -1},
		{[]string{"attest", "verify", "-measurement", strings.Repeat("ab", 48)}, 3},
		{[]string{"attest", "verify", "-policy", policy}, 3},
		{[]string{"attest", "verify", "-allow-any-measurement", "-allow-unchecked-collateral"}, 3},
	} {
		_, code := sp.cli(nil, tc.args...)
		if tc.want == -1 && (code == 0 || code == 3) || tc.want != -1 && code != tc.want {
			t.Errorf("moonvault %s: exit %d, want %d", strings.Join(tc.args, " "), code, tc.want)
		}
	}
}
