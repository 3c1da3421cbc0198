package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestScriptsDevExecsTheServer runs scripts/dev as the README says: the
// process it leaves is the built server itself (exec, not `go run`), so a
// signal sent to it stops the server gracefully.
func TestScriptsDevExecsTheServer(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	cmd := exec.Command(filepath.Join(root, "scripts", "dev"), "-dev-listen-address", addr, "-data-dir", dir)
	cmd.Env = cleanEnv()
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sp := &serverProc{t: t, cmd: cmd, addr: addr, caFile: filepath.Join(dir, "dev-ca.pem"), out: out}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	waitHealthy(t, sp, 5*time.Minute) // the first run builds the binary
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	argv := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(argv) < 3 || !strings.HasSuffix(argv[0], "bin/moonvault") || argv[1] != "server" || argv[2] != "-dev" {
		t.Fatalf("scripts/dev's process runs %q, not the built server", argv)
	}
	sp.stop(syscall.SIGTERM)
	if !cmd.ProcessState.Success() || !strings.Contains(out.String(), "shutting down") {
		t.Fatalf("SIGTERM did not stop the server gracefully: %v\n%s", cmd.ProcessState, out.String())
	}
}

// waitHealthy waits for the server to answer its health endpoint.
func waitHealthy(t *testing.T, sp *serverProc, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(sp.caFile); err == nil {
			c := httpsClient(t, sp.caFile)
			if resp, err := c.Get("https://" + sp.addr + "/v1/sys/health"); err == nil {
				resp.Body.Close()
				return
			}
		}
		if sp.cmd.ProcessState != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("scripts/dev did not serve:\n%s", sp.out.String())
}
