package main

// These tests run the real binary as a user would: a server subprocess and
// CLI subprocesses talking to it over HTTPS.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/moonvault/moonvault/internal/hsm/softhsm"
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

// anyPort lets the server pick a free port; startServer finds the one it
// got. (Closing a probe listener and passing its port on races with every
// other process looking for a port.)
const anyPort = "127.0.0.1:0"

// listenAddrOf returns the TCP address process pid listens on, from
// /proc/PID/fd (its socket inodes) and /proc/PID/net/tcp (proc(5)), or ""
// while it listens on none. Unlike the log, it does not depend on the log
// level.
func listenAddrOf(pid int) string {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return ""
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	tcp, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(tcp), "\n")[1:] {
		f := strings.Fields(line)
		// sl local_address rem_address st ... inode (the 10th field)
		if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] { // 0A: TCP_LISTEN
			continue
		}
		host, port, ok := strings.Cut(f[1], ":")
		ip, err1 := hex.DecodeString(host)
		p, err2 := strconv.ParseUint(port, 16, 16)
		if !ok || err1 != nil || err2 != nil || len(ip) != 4 {
			continue
		}
		// The address is in host (little-endian) byte order.
		return fmt.Sprintf("%d.%d.%d.%d:%d", ip[3], ip[2], ip[1], ip[0], p)
	}
	return ""
}

type serverProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has been waited for
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

// startServer runs `moonvault server` with args and waits for it to
// answer. addr is the listen address the test configured: with port 0 (see
// anyPort) the server picks the port; sp.addr is where it listens.
func startServer(t *testing.T, addr, caFile string, env []string, args ...string) *serverProc {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"server"}, args...)...) // #nosec G204 G702 -- the binary built by TestMain
	cmd.Env = append(os.Environ(), env...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	sp := &serverProc{t: t, cmd: cmd, caFile: caFile, out: out, env: env, exited: exited}
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("server output:\n%s", out.String())
		}
	})
	waitServing(t, sp, addr, 2*time.Minute)
	return sp
}

// waitServing waits until sp listens and answers its health endpoint over
// HTTPS; the limit is a hang guard, not a timing assertion.
func waitServing(t *testing.T, sp *serverProc, addr string, limit time.Duration) {
	t.Helper()
	deadline := time.After(limit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-sp.exited:
			t.Fatalf("server exited: %v\n%s", sp.cmd.ProcessState, sp.out.String())
		case <-deadline:
			t.Fatalf("server did not answer:\n%s", sp.out.String())
		case <-tick.C:
		}
		if sp.addr == "" {
			if sp.addr = listenAddrOf(sp.cmd.Process.Pid); sp.addr == "" {
				continue
			}
			if _, port, _ := strings.Cut(addr, ":"); addr != "" && port != "0" && sp.addr != addr {
				t.Fatalf("server listens on %s, want %s", sp.addr, addr)
			}
		}
		// dev mode writes a new certificate at each start, after it listens
		// and before it serves: the file may be missing or half-written.
		tc, err := tlsconfig.ClientConfig(sp.caFile)
		if err != nil {
			continue
		}
		tc.MinVersion = tls.VersionTLS13
		if h, _, _ := net.SplitHostPort(sp.addr); h != "127.0.0.1" {
			// Test certificates name 127.0.0.1 and localhost: another
			// loopback address is verified as localhost.
			tc.ServerName = "localhost"
		}
		sp.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
		resp, err := sp.client.Get("https://" + sp.addr + "/v1/sys/health")
		if err == nil {
			resp.Body.Close()
			return
		}
	}
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
	select {
	case <-sp.exited:
	case <-time.After(30 * time.Second):
		_ = sp.cmd.Process.Kill()
		sp.t.Fatalf("server did not stop on %v", sig)
	}
}

func TestBinaryLifecycle(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTLS(t, t.TempDir())
	cfg := filepath.Join(t.TempDir(), "moonvault.hcl")
	hcl := fmt.Sprintf("listen_address = %q\ndata_dir = %q\ntls_cert_file = %q\ntls_key_file = %q\n", anyPort, dir, cert, key)
	if err := os.WriteFile(cfg, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	sp := startServer(t, anyPort, cert, nil, "-config", cfg)

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
	sp = startServer(t, anyPort, cert, nil, "-config", cfg)
	if _, code := sp.cli(nil, "operator", "status"); code != 2 {
		t.Fatal("restarted unsealed")
	}
	sp.cli(nil, "operator", "unseal", ir.Keys[1])
	sp.cli(nil, "operator", "unseal", ir.Keys[0])
	if out, code := sp.cli(tok, "user", "get", "alice", "-format", "json"); code != 0 || !strings.Contains(out, "alice") {
		t.Fatalf("user after restart: %d %s", code, out)
	}
	out, code = sp.cli(tok, "operator", "rekey", "-key-shares", "2", "-key-threshold", "2", "-format", "json", ir.Keys[0], ir.Keys[2])
	var rk struct {
		Keys []string `json:"keys_b64"`
	}
	if err := json.Unmarshal([]byte(out), &rk); code != 0 || err != nil || len(rk.Keys) != 2 {
		t.Fatalf("rekey: %d %s %v", code, out, err)
	}
	sp.stop(syscall.SIGTERM)

	// After a restart the old shares no longer unseal; the new ones do.
	sp = startServer(t, anyPort, cert, nil, "-config", cfg)
	sp.cli(nil, "operator", "unseal", ir.Keys[0])
	sp.cli(nil, "operator", "unseal", ir.Keys[1])
	if _, code := sp.cli(nil, "operator", "status"); code != 2 {
		t.Fatal("the shares from before the rekey still unseal")
	}
	sp.cli(nil, "operator", "unseal", "-reset")
	sp.cli(nil, "operator", "unseal", rk.Keys[1])
	if out, code := sp.cli(nil, "operator", "unseal", rk.Keys[0]); code != 0 {
		t.Fatalf("unseal with the new shares: %d %s", code, out)
	}
	if out, code := sp.cli(nil, "operator", "status", "-format", "json"); code != 0 || !strings.Contains(out, `"sealed": false`) {
		t.Fatalf("status after unsealing with the new shares: %d %s", code, out)
	}
	if out, code := sp.cli(tok, "user", "get", "alice", "-format", "json"); code != 0 || !strings.Contains(out, "alice") {
		t.Fatalf("user after rekey and restart: %d %s", code, out)
	}
	sp.stop(syscall.SIGTERM)
}

// TestKill9Durability kills the server with SIGKILL while clients create
// accounts; after a restart every acknowledged (201) account is there.
func TestKill9Durability(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTLS(t, t.TempDir())
	args := []string{"-listen-address", anyPort, "-data-dir", dir, "-tls-cert-file", cert, "-tls-key-file", key}
	sp := startServer(t, anyPort, cert, nil, args...)
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
	const want = 150
	enough := make(chan struct{}) // closed at the want-th acknowledgement
	var n atomic.Int64
	killed := make(chan struct{}) // closed just before the SIGKILL
	werrs := make(chan error, 8)  // why a worker stopped before the kill
	failed := func(err error) {
		select {
		case <-killed: // the server is gone: expected
		default:
			werrs <- err
		}
	}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				name := fmt.Sprintf("w%d-%d", w, i)
				body := strings.NewReader(`{"name":"` + name + `"}`)
				req, _ := http.NewRequest("POST", "https://"+sp.addr+"/v1/accounts", body)
				req.Header.Set("Authorization", "Bearer "+ir.RootToken)
				resp, err := sp.client.Do(req)
				if err != nil {
					failed(err)
					return
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 201 {
					failed(fmt.Errorf("create %s: %d %s", name, resp.StatusCode, raw))
					return
				}
				var a struct{ Address string }
				_ = json.Unmarshal(raw, &a)
				mu.Lock()
				acked[name] = a.Address
				mu.Unlock()
				if n.Add(1) == want {
					close(enough)
				}
			}
		}(w)
	}
	workersDone := make(chan struct{})
	go func() { wg.Wait(); close(workersDone) }()
	// Wait for the acknowledgements, or for every worker to give up (then
	// the test fails with why, instead of waiting forever). The deadline is
	// a hang guard, not a timing assertion.
	select {
	case <-enough:
	case <-workersDone:
		t.Fatalf("all writers stopped after %d acknowledgements: %v", n.Load(), <-werrs)
	case <-time.After(5 * time.Minute):
		t.Fatalf("%d acknowledgements after 5 minutes", n.Load())
	}
	close(killed)
	_ = sp.cmd.Process.Signal(syscall.SIGKILL)
	<-sp.exited
	<-workersDone // every request now fails: the writers return
	select {
	case err := <-werrs:
		t.Fatalf("a writer failed before the kill: %v", err)
	default:
	}

	sp = startServer(t, anyPort, cert, nil, args...)
	sp.cli(nil, "operator", "unseal", ir.Keys[0])
	mu.Lock()
	defer mu.Unlock()
	for name, addrHex := range acked {
		req, _ := http.NewRequest("GET", "https://"+sp.addr+"/v1/accounts/"+name, nil)
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
// with the CLI: login, create an account, sign. With SoftHSM2 installed
// (always under CI=true) dev mode must use it for the seal.
func TestDevServer(t *testing.T) {
	_, haveSoftHSM := softhsm.FindLibrary()
	if !haveSoftHSM && os.Getenv("CI") == "true" {
		t.Fatalf("SoftHSM2 not found in %v: CI must run dev mode with the pkcs11 seal", softhsm.Libraries)
	}
	wantSeal := "shamir"
	if haveSoftHSM {
		wantSeal = "pkcs11"
	}
	dir := t.TempDir()
	env := []string{"MOONVAULT_DEV_ADMIN_PASSWORD=correct horse battery staple"}
	sp := startServer(t, anyPort, filepath.Join(dir, "dev-ca.pem"), env, "-dev", "-dev-listen-address", anyPort, "-data-dir", dir)
	banner := sp.out.String()
	for _, want := range []string{"SHA-256 fingerprint", "dev-ca.pem", "export MOONVAULT_ADDR", "https://" + sp.addr} {
		if !strings.Contains(banner, want) {
			t.Fatalf("banner lacks %q:\n%s", want, banner)
		}
	}
	if m := regexp.MustCompile(`Seal:\s+(\S+)`).FindStringSubmatch(banner); m == nil || m[1] != wantSeal {
		t.Fatalf("dev seal %v, want %s (SoftHSM2 installed: %v):\n%s", m, wantSeal, haveSoftHSM, banner)
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
	var acc struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal([]byte(out), &acc); code != 0 || err != nil || !common.IsHexAddress(acc.Address) {
		t.Fatalf("account create: %d %s %v", code, out, err)
	}
	out, code = sp.cli([]string{"HOME=" + home}, "account", "sign-message", "treasury", "hello", "-format", "json")
	var sm struct {
		Signature   string `json:"signature"`
		MessageHash string `json:"message_hash"`
	}
	if err := json.Unmarshal([]byte(out), &sm); code != 0 || err != nil {
		t.Fatalf("sign-message: %d %s %v", code, out, err)
	}
	if got := recoverEIP191(t, []byte("hello"), sm.Signature); got != common.HexToAddress(acc.Address) {
		t.Fatalf("sign-message signature recovers %s, want the account %s", got.Hex(), acc.Address)
	}
	if sm.MessageHash != hexutil.Encode(accounts.TextHash([]byte("hello"))) {
		t.Fatalf("message_hash %s is not the EIP-191 hash of the message", sm.MessageHash)
	}
	sp.stop(syscall.SIGTERM)
	// The dev data dir unseals again by itself.
	sp = startServer(t, anyPort, filepath.Join(dir, "dev-ca.pem"), env, "-dev", "-dev-listen-address", anyPort, "-data-dir", dir)
	if out, code := sp.cli([]string{"HOME=" + home}, "operator", "status", "-format", "json"); code != 0 || !strings.Contains(out, `"sealed": false`) || !strings.Contains(out, wantSeal) {
		t.Fatalf("dev restart: %d %s", code, out)
	}
	sp.stop(syscall.SIGTERM)
}

// recoverEIP191 returns the signer of an EIP-191 personal message signature
// (r || s || v, v in {27, 28}).
func recoverEIP191(t *testing.T, msg []byte, sigHex string) common.Address {
	t.Helper()
	sig, err := hexutil.Decode(sigHex)
	if err != nil || len(sig) != 65 || (sig[64] != 27 && sig[64] != 28) {
		t.Fatalf("signature %q is not r || s || v with v 27 or 28", sigHex)
	}
	sig = append([]byte(nil), sig...)
	sig[64] -= 27
	pub, err := crypto.SigToPub(accounts.TextHash(msg), sig)
	if err != nil {
		t.Fatal(err)
	}
	return crypto.PubkeyToAddress(*pub)
}

// TestAttestVerifyNeedsAReference: `moonvault attest verify` refuses to
// run without an expected measurement (or an explicit waiver), rejects a
// malformed one, and reads a policy file; against a server outside a TEE it
// then says so (exit 3). The verification itself is tested in internal/tee
// with go-sev-guest's simulated device and a recorded TDX quote.
func TestAttestVerifyNeedsAReference(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTLS(t, t.TempDir())
	cfg := filepath.Join(t.TempDir(), "moonvault.hcl")
	hcl := fmt.Sprintf("listen_address = %q\ndata_dir = %q\ntls_cert_file = %q\ntls_key_file = %q\n", anyPort, dir, cert, key)
	if err := os.WriteFile(cfg, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	sp := startServer(t, anyPort, cert, nil, "-config", cfg)
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
