package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moonvault/moonvault/internal/hsm/softhsm"
	"github.com/moonvault/moonvault/internal/storage/postgres/pgtest"
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

// TestScriptsBenchCluster runs scripts/bench-cluster, the command
// docs/scaling.md gives for its "Measured" table, with short runs: it must
// build, start two nodes over a fresh PostgreSQL database with the SoftHSM2
// seal, drive them with mvbench and print a positive req/s, with no
// errors, for every setup. Like the README's multi-node test it needs
// PostgreSQL and SoftHSM2, and fails, never skips, without them.
func TestScriptsBenchCluster(t *testing.T) {
	lib, ok := softhsm.FindLibrary()
	if !ok {
		t.Fatalf("SoftHSM2 not found in %v: scripts/bench-cluster needs it (scripts/test installs it)", softhsm.Libraries)
	}
	for _, tool := range []string{"softhsm2-util", "openssl", "psql", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: scripts/bench-cluster needs it", tool)
		}
	}
	base := pgtest.BaseURL()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	conn, err := pgx.Connect(ctx, base)
	cancel()
	if err != nil {
		t.Fatalf("PostgreSQL is unreachable (%v): scripts/bench-cluster needs it (scripts/test starts it, or set %s)", err, pgtest.EnvURL)
	}
	_ = conn.Close(context.Background())

	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Minute) // a hang guard
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "bench-cluster"))
	// SIGTERM lets the script's trap stop the nodes and drop the database.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	cmd.Env = append(cleanEnv(), "BENCH_DURATION=2s", pgtest.EnvURL+"="+base, "MOONVAULT_HSM_LIB="+lib)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("scripts/bench-cluster: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("scripts/bench-cluster printed:\n%s", stdout.String())

	want := []string{
		"1 node, PostgreSQL, sign-message, 64 connections",
		"1 node, PostgreSQL, account creation, 64 connections",
		"2 nodes, PostgreSQL, sign-message, node A, 32 connections",
		"2 nodes, PostgreSQL, sign-message, node B, 32 connections",
		"2 nodes, PostgreSQL, sign-message, both (p50, p99: the slower node)",
	}
	var got []string
	for _, line := range strings.Split(stdout.String(), "\n") {
		if !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "| setup |") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) != 5 {
			t.Fatalf("table row %q: want 5 cells (setup, req/s, p50, p99, errors)", line)
		}
		got = append(got, cells[0])
		if rps, err := strconv.ParseFloat(cells[1], 64); err != nil || rps <= 0 {
			t.Errorf("%s: req/s %q, want a positive number", cells[0], cells[1])
		}
		for _, p := range cells[2:4] {
			if ms, err := strconv.ParseFloat(strings.TrimSuffix(p, " ms"), 64); err != nil || !strings.HasSuffix(p, " ms") || ms < 0 {
				t.Errorf("%s: latency %q, want milliseconds", cells[0], p)
			}
		}
		if cells[4] != "0" {
			t.Errorf("%s: %s errors, want none", cells[0], cells[4])
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("table rows %q, want %q", got, want)
	}
}
