package fsyncfault_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moonvault/moonvault/internal/fsyncfault"
	"github.com/moonvault/moonvault/internal/testdeps"
)

const childEnv = "MOONVAULT_FSYNCFAULT_CHILD"

// TestInstall: after Install, writes succeed and every sync fails with EIO
// in all threads; the test runs it in a re-executed child.
func TestInstall(t *testing.T) {
	if dir := os.Getenv(childEnv); dir != "" {
		child(dir)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestInstall$", "-test.count=1") // #nosec G204 G702 -- re-executes this test binary with fixed arguments
	cmd.Env = append(os.Environ(), childEnv+"="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), "fsyncfault: needs seccomp") {
		testdeps.Missing(t, "%s", out)
	}
	if err != nil || !strings.Contains(string(out), "child ok") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func child(dir string) {
	fail := func(what string) {
		os.Stdout.WriteString("child failed: " + what + "\n")
		os.Exit(1)
	}
	f, err := os.Create(filepath.Join(dir, "f"))
	if err != nil {
		fail("create")
	}
	if err := f.Sync(); err != nil {
		fail("sync before Install")
	}
	if err := fsyncfault.Install(); err != nil {
		os.Stdout.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	if _, err := f.WriteString("data"); err != nil {
		fail("write after Install")
	}
	// Every goroutine may run on any thread: try from many.
	errs := make(chan error, 16)
	for range 16 {
		go func() { errs <- f.Sync() }()
	}
	for range 16 {
		if err := <-errs; !errors.Is(err, syscall.EIO) {
			fail("sync after Install did not fail with EIO")
		}
	}
	if err := syscall.Fdatasync(int(f.Fd())); !errors.Is(err, syscall.EIO) {
		fail("fdatasync after Install did not fail with EIO")
	}
	os.Stdout.WriteString("child ok\n")
	os.Exit(0)
}
