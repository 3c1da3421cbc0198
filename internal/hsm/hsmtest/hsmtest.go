// Package hsmtest gives tests a fresh SoftHSM2 token.
package hsmtest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/hsm/softhsm"
)

var setup struct {
	once sync.Once
	lib  string
	err  error
}

// NewToken creates a new token (unique label, random PIN) and returns its
// Config with KeyLabel "test-key". All tokens of the test process share one
// token directory, activated once; when softhsm.EnsureToken already
// activated one in this process, that one is used. The test fails — never
// skips — when SoftHSM2 is missing.
func NewToken(t testing.TB) hsm.Config {
	t.Helper()
	setup.once.Do(func() {
		lib, ok := softhsm.FindLibrary()
		if !ok {
			setup.err = fmt.Errorf("SoftHSM2 not found in %v: apt-get install softhsm2", softhsm.Libraries)
			return
		}
		setup.lib = lib
		if softhsm.ActiveDir() != "" {
			return
		}
		removeStale()
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("moonvault-softhsm-%d", os.Getpid()))
		if err := os.RemoveAll(dir); err != nil {
			setup.err = err
			return
		}
		setup.err = softhsm.Activate(lib, dir)
	})
	if setup.err != nil {
		t.Fatalf("hsmtest: %v", setup.err)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	label := "t-" + hex.EncodeToString(b)
	pin, err := softhsm.NewToken(setup.lib, label)
	if err != nil {
		t.Fatalf("hsmtest: %v", err)
	}
	return hsm.Config{Lib: setup.lib, TokenLabel: label, PIN: pin, KeyLabel: "test-key", PoolSize: 4}
}

// removeStale deletes token directories left by test processes that have
// exited (a process-wide directory cannot be removed by t.Cleanup).
func removeStale() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), "moonvault-softhsm-*"))
	for _, m := range matches {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(m), "moonvault-softhsm-"))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			_ = os.RemoveAll(m)
		}
	}
}
