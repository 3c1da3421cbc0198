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

// Capability bits (capabilities(7)).
const (
	capIPCLock     = 14
	capSysResource = 24
)

// memlockExpectation says what mlockall must do for a process with this
// process's privileges: lock everything with CAP_IPC_LOCK, or when
// RLIMIT_MEMLOCK can be raised to unlimited (CAP_SYS_RESOURCE, or an
// unlimited hard limit); fail, and say so, when the hard limit is far
// below any Go process's address space (mlockall(2) compares the whole
// address space with the limit, MCL_ONFAULT or not). In between either
// outcome is correct as long as it is reported truthfully.
type memlockExpectation int

const (
	memlockEither memlockExpectation = iota
	memlockMust
	memlockMustFail
)

func expectMemlock(t testing.TB) (memlockExpectation, string) {
	t.Helper()
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var capEff uint64
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%x", &capEff); err != nil {
				t.Fatalf("CapEff %q: %v", v, err)
			}
		}
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		t.Fatal(err)
	}
	why := fmt.Sprintf("euid %d, CapEff %#x, RLIMIT_MEMLOCK hard %d", os.Geteuid(), capEff, lim.Max)
	switch {
	case capEff&(1<<capIPCLock) != 0, capEff&(1<<capSysResource) != 0, lim.Max == unix.RLIM_INFINITY:
		return memlockMust, why
	case lim.Max < 64<<20:
		return memlockMustFail, why
	}
	return memlockEither, why
}

// checkCoreAndDumpable: these need no privilege, so they always hold.
func checkCoreAndDumpable(t *testing.T, r childResult) {
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
	if o := r.Observed; !o.CoreDumpsDisabled || !o.NotDumpable {
		t.Errorf("Current() = %+v, kernel says core=%d/%d dumpable=%d", o, r.CoreCur, r.CoreMax, r.Dumpable)
	}
}

// checkMemlock checks the memory lock against what the privileges allow,
// and that Harden, Current and the log tell the truth about it.
func checkMemlock(t *testing.T, r childResult, log string, want memlockExpectation, why string) {
	t.Helper()
	switch {
	case want == memlockMust && !r.Applied.MemoryLocked:
		t.Fatalf("memory not locked although %s allows it: %+v", why, r.Applied)
	case want == memlockMustFail && r.Applied.MemoryLocked:
		t.Fatalf("memory reported locked although %s cannot lock a Go process: %+v (VmLck %d kB)", why, r.Applied, r.VmLckKB)
	}
	if r.Applied.MemoryLocked {
		if r.VmLckKB == 0 {
			t.Errorf("Harden reported memory locked but VmLck is 0")
		}
		if !r.Applied.Complete() {
			t.Errorf("Complete() = false for %+v", r.Applied)
		}
		if r.Observed.MemlockMethod != MemlockAllObserved || !r.Observed.MemoryLocked {
			t.Errorf("Current() = %+v, want %q (warnings %v)", r.Observed, MemlockAllObserved, r.Observed.Warnings)
		}
		if strings.Contains(log, "hardening measure not applied") {
			t.Errorf("unexpected hardening error log: %s", log)
		}
		return
	}
	// Not locked: reported, logged loudly, and never claimed.
	if r.Applied.Complete() || r.Applied.MemlockMethod != MemlockNone {
		t.Errorf("%s: not locked, but reported %+v", why, r.Applied)
	}
	if len(r.Applied.Warnings) == 0 || !strings.Contains(log, "hardening measure not applied") || !strings.Contains(log, "measure=memory_locked") {
		t.Errorf("%s: failure not reported loudly: warnings %v, log %s", why, r.Applied.Warnings, log)
	}
	if r.Observed.MemoryLocked || r.VmLckKB != 0 {
		t.Errorf("%s: Current() = %+v with VmLck %d kB", why, r.Observed, r.VmLckKB)
	}
	t.Logf("%s: memory not locked, reported: %v", why, r.Applied.Warnings)
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

// TestHardenSubprocess hardens a child running with this process's
// privileges: as root (or with CAP_IPC_LOCK) everything is in force; as an
// unprivileged user (the GitHub runner) the memory lock fails and says so.
func TestHardenSubprocess(t *testing.T) {
	want, why := expectMemlock(t)
	r, stderr := runChild(t, os.Args[0], nil)
	checkCoreAndDumpable(t, r)
	checkMemlock(t, r, stderr, want, why)
}

// TestHardenNonRoot checks what an unprivileged process gets, like a
// container without IPC_LOCK: core dumps and dumpability are handled,
// mlockall fails against RLIMIT_MEMLOCK, which is reported and logged
// loudly. As root the child runs as uid/gid 65532 (distroless nonroot),
// without capabilities; otherwise this process is already unprivileged.
func TestHardenNonRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		want, why := expectMemlock(t)
		if want == memlockMust {
			t.Fatalf("not root, yet privileged (%s): this test cannot show an unprivileged process here", why)
		}
		r, stderr := runChild(t, os.Args[0], nil)
		checkCoreAndDumpable(t, r)
		checkMemlock(t, r, stderr, want, why)
		return
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
	if err := os.WriteFile(exe, bin, 0o755); err != nil { // #nosec G306 -- the nonroot child must execute it
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // #nosec G302 -- the nonroot child must reach it
		t.Fatal(err)
	}
	r, stderr := runChild(t, exe, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65532, Gid: 65532}})
	checkCoreAndDumpable(t, r)
	// Switching uid drops every capability; the limits are inherited.
	want, why := memlockEither, fmt.Sprintf("uid 65532 without capabilities, RLIMIT_MEMLOCK hard %d", lim.Max)
	switch {
	case lim.Max == unix.RLIM_INFINITY:
		want = memlockMust
	case lim.Max < 64<<20:
		want = memlockMustFail
	}
	checkMemlock(t, r, stderr, want, why)
}

// TestHardenInProcess hardens the test process itself; the measures are
// harmless to the other tests (MCL_ONFAULT locks only touched pages).
func TestHardenInProcess(t *testing.T) {
	want, why := expectMemlock(t)
	var logs bytes.Buffer
	applied := Harden(slog.New(slog.NewTextHandler(&logs, nil)))
	r := measure(t)
	r.Applied = applied
	r.Observed = Current()
	checkCoreAndDumpable(t, r)
	checkMemlock(t, r, logs.String(), want, why)
	if applied.MemoryLocked && applied.MemlockMethod != MemlockAllOnFault && applied.MemlockMethod != MemlockAll {
		t.Errorf("MemlockMethod = %q", applied.MemlockMethod)
	}
	// Idempotent: a second call reports the same.
	if again := Harden(slog.New(slog.NewTextHandler(&logs, nil))); again.Complete() != applied.Complete() || again.MemoryLocked != applied.MemoryLocked {
		t.Errorf("second Harden = %+v, first %+v", again, applied)
	}
}
