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
	cmd := exec.Command(filepath.Join(root, "scripts", "dev"), "-dev-listen-address", anyPort, "-data-dir", dir)
	cmd.Env = cleanEnv()
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	sp := &serverProc{t: t, cmd: cmd, caFile: filepath.Join(dir, "dev-ca.pem"), out: out, exited: exited}
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	waitServing(t, sp, anyPort, 5*time.Minute) // the first run builds the binary; scripts/dev execs it, so the pid is the server's
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
