//go:build linux

package tee

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

const hardenChildEnv = "MOONVAULT_TEE_HARDEN_CHILD"

type childResult struct {
	Applied  Hardening `json:"applied"`
	Observed Hardening `json:"observed"`
	CoreCur  uint64    `json:"core_cur"`
	CoreMax  uint64    `json:"core_max"`
	Dumpable int       `json:"dumpable"`
	VmLckKB  uint64    `json:"vmlck_kb"`
}

// measure reads the kernel's view directly, independently of Current.
func measure(t testing.TB) childResult {
	t.Helper()
	var r childResult
	var core unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_CORE, &core); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	r.CoreCur, r.CoreMax = core.Cur, core.Max
	d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	if err != nil {
		t.Fatalf("prctl: %v", err)
	}
	r.Dumpable = d
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatalf("read status: %v", err)
	}
	if r.VmLckKB, err = statusKB(st, "VmLck"); err != nil {
		t.Fatal(err)
	}
	return r
}

func checkHardened(t *testing.T, r childResult) {
	t.Helper()
	if r.CoreCur != 0 || r.CoreMax != 0 {
		t.Errorf("RLIMIT_CORE = %d/%d, want 0/0", r.CoreCur, r.CoreMax)
	}
	if r.Dumpable != 0 {
		t.Errorf("PR_GET_DUMPABLE = %d, want 0", r.Dumpable)
	}
	if !r.Applied.CoreDumpsDisabled || !r.Applied.NotDumpable {
		t.Errorf("Harden reported %+v", r.Applied)
	}
	// go test runs as root here, so mlockall must succeed.
	if !r.Applied.MemoryLocked {
		t.Errorf("memory not locked: %+v", r.Applied)
	}
	if r.Applied.MemoryLocked && r.VmLckKB == 0 {
		t.Errorf("Harden reported memory locked but VmLck is 0")
	}
	if !r.Applied.Complete() {
		t.Errorf("Complete() = false for %+v", r.Applied)
	}
	o := r.Observed
	if !o.CoreDumpsDisabled || !o.NotDumpable || o.MemoryLocked != (r.VmLckKB > 0) {
		t.Errorf("Current() = %+v, kernel says core=%d/%d dumpable=%d VmLck=%d", o, r.CoreCur, r.CoreMax, r.Dumpable, r.VmLckKB)
	}
	if o.MemlockMethod != MemlockAllObserved {
		t.Errorf("Current().MemlockMethod = %q, want %q (warnings %v)", o.MemlockMethod, MemlockAllObserved, o.Warnings)
	}
}

// TestMain doubles as the subprocess body of the hardening tests: with
// hardenChildEnv set, the binary hardens itself, prints what the kernel
// reports as one JSON line and exits.
func TestMain(m *testing.M) {
	if os.Getenv(hardenChildEnv) == "1" {
		os.Exit(hardenChild())
	}
	os.Exit(m.Run())
}

func hardenChild() int {
	r := childResult{Applied: Harden(slog.New(slog.NewTextHandler(os.Stderr, nil)))}
	var core unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_CORE, &core); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	r.CoreCur, r.CoreMax = core.Cur, core.Max
	d, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	r.Dumpable = d
	st, err := os.ReadFile("/proc/self/status")
	if err == nil {
		r.VmLckKB, err = statusKB(st, "VmLck")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	r.Observed = Current()
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		return 2
	}
	return 0
}

func runChild(t *testing.T, binary string, attr *syscall.SysProcAttr) (childResult, string) {
	t.Helper()
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), hardenChildEnv+"=1")
	cmd.SysProcAttr = attr
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s\n%s", err, out, stderr.String())
	}
	var r childResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("child output %q: %v", out, err)
	}
	return r, stderr.String()
}

func TestHardenSubprocess(t *testing.T) {
	r, stderr := runChild(t, os.Args[0], nil)
	checkHardened(t, r)
	if strings.Contains(stderr, "hardening measure not applied") {
		t.Errorf("unexpected hardening error log: %s", stderr)
	}
}

// TestHardenNonRoot runs the child as uid/gid 65532 (distroless nonroot)
// without capabilities, like a container without IPC_LOCK: core dumps and
// dumpability are still handled, mlockall fails against RLIMIT_MEMLOCK,
// which is reported and logged loudly.
func TestHardenNonRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatalf("this test needs root to switch to uid 65532 (go test runs as root on this machine)")
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "tee-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "tee.test")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r, stderr := runChild(t, exe, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65532, Gid: 65532}})
	if !r.Applied.CoreDumpsDisabled || r.CoreMax != 0 || !r.Applied.NotDumpable || r.Dumpable != 0 {
		t.Errorf("non-root: core/dumpable not applied: %+v", r)
	}
	if lim.Max == unix.RLIM_INFINITY {
		// With an unlimited hard limit a non-root process can lock everything.
		if !r.Applied.MemoryLocked {
			t.Errorf("non-root with unlimited RLIMIT_MEMLOCK: not locked: %+v", r.Applied)
		}
		return
	}
	if r.Applied.MemoryLocked || r.Applied.Complete() || r.Applied.MemlockMethod != MemlockNone {
		t.Errorf("non-root with RLIMIT_MEMLOCK %d: reported locked: %+v", lim.Max, r.Applied)
	}
	if len(r.Applied.Warnings) == 0 || !strings.Contains(stderr, "hardening measure not applied") || !strings.Contains(stderr, "measure=memory_locked") {
		t.Errorf("non-root: failure not reported loudly: warnings %v, log %s", r.Applied.Warnings, stderr)
	}
	if r.Observed.MemoryLocked {
		t.Errorf("Current() reports memory locked: %+v", r.Observed)
	}
	t.Logf("non-root report: %v", r.Applied.Warnings)
}

// TestHardenInProcess hardens the test process itself; the measures are
// harmless to the other tests (MCL_ONFAULT locks only touched pages).
func TestHardenInProcess(t *testing.T) {
	var logs bytes.Buffer
	applied := Harden(slog.New(slog.NewTextHandler(&logs, nil)))
	r := measure(t)
	r.Applied = applied
	r.Observed = Current()
	checkHardened(t, r)
	if applied.MemlockMethod != MemlockAllOnFault && applied.MemlockMethod != MemlockAll {
		t.Errorf("MemlockMethod = %q", applied.MemlockMethod)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("unexpected error log: %s", logs.String())
	}
	// Idempotent: a second call changes nothing and still succeeds.
	if again := Harden(slog.New(slog.NewTextHandler(&logs, nil))); !again.Complete() {
		t.Errorf("second Harden = %+v", again)
	}
}

func TestHardeningComplete(t *testing.T) {
	for _, tc := range []struct {
		h    Hardening
		want bool
	}{
		{Hardening{CoreDumpsDisabled: true, NotDumpable: true, MemoryLocked: true}, true},
		{Hardening{CoreDumpsDisabled: true, NotDumpable: true}, false},
		{Hardening{NotDumpable: true, MemoryLocked: true}, false},
		{Hardening{CoreDumpsDisabled: true, MemoryLocked: true}, false},
		{Hardening{}, false},
	} {
		if got := tc.h.Complete(); got != tc.want {
			t.Errorf("%+v.Complete() = %v, want %v", tc.h, got, tc.want)
		}
	}
}

func TestStatusKB(t *testing.T) {
	st := []byte("Name:\tx\nVmSize:\t  1000 kB\nVmLck:\t     12 kB\nBad:\tx kB\n")
	for _, tc := range []struct {
		key     string
		want    uint64
		wantErr bool
	}{
		{"VmSize", 1000, false},
		{"VmLck", 12, false},
		{"Bad", 0, true},
		{"Missing", 0, true},
		{"Name", 0, true},
	} {
		got, err := statusKB(st, tc.key)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("statusKB(%s) = %d, %v", tc.key, got, err)
		}
	}
}
