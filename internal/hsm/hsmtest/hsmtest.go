// Package hsmtest gives tests PKCS#11 tokens: a fresh SoftHSM2 token
// (NewToken), the opencryptoki software token (OpenCryptoki), and a
// fault-injecting wrapper around the real library calls (Faults).
package hsmtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
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
	"github.com/moonvault/moonvault/internal/secret"
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

// OpenCryptokiLibraries are the paths where distributions install
// opencryptoki's PKCS#11 module (which loads the soft token's
// libpkcs11_sw.so through pkcsslotd).
var OpenCryptokiLibraries = []string{
	"/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so",
	"/usr/lib/aarch64-linux-gnu/pkcs11/libopencryptoki.so",
	"/usr/lib64/opencryptoki/libopencryptoki.so",
	"/usr/lib/opencryptoki/libopencryptoki.so",
}

// Defaults of the opencryptoki software token that scripts/lib.sh
// (mv_ensure_opencryptoki) sets up; MOONVAULT_TEST_OCK_LIB,
// MOONVAULT_TEST_OCK_SLOT and MOONVAULT_TEST_OCK_PIN override them.
const (
	OpenCryptokiSlot = 3
	// #nosec G101 -- the user PIN of a throwaway test token, not a credential
	OpenCryptokiPIN = "mvtest42"
)

// OpenCryptoki returns a Config for the opencryptoki software token
// (slot 3, no token label: it is selected by slot) with a fresh key label
// ("o-<random>") and removes the test's keys from the shared token when
// the test ends: KeyLabel, KeyLabel+"-hmac", KeyLabel+"-sign" and
// extraLabels. The test
// fails, never skips, when the module, the slot daemon (pkcsslotd) or the
// token is missing: run scripts/test, which sets it up.
func OpenCryptoki(t testing.TB, extraLabels ...string) hsm.Config {
	t.Helper()
	lib := os.Getenv("MOONVAULT_TEST_OCK_LIB")
	if lib == "" {
		for _, p := range OpenCryptokiLibraries {
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				lib = p
				break
			}
		}
	}
	if lib == "" {
		t.Fatalf("hsmtest: opencryptoki not found in %v: apt-get install opencryptoki, or run scripts/test (it installs and initialises the soft token)", OpenCryptokiLibraries)
	}
	slot := uint(OpenCryptokiSlot)
	if s := os.Getenv("MOONVAULT_TEST_OCK_SLOT"); s != "" {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			t.Fatalf("hsmtest: MOONVAULT_TEST_OCK_SLOT %q: %v", s, err)
		}
		slot = uint(n)
	}
	pin := secret.String(OpenCryptokiPIN)
	if p := os.Getenv("MOONVAULT_TEST_OCK_PIN"); p != "" {
		pin = secret.String(p)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	cfg := hsm.Config{Lib: lib, Slot: &slot, PIN: pin, KeyLabel: "o-" + hex.EncodeToString(b), PoolSize: 4}
	m, err := hsm.Open(cfg, nil)
	if err != nil {
		t.Fatalf("hsmtest: opencryptoki token in slot %d (%s): %v; is pkcsslotd running and the token initialised with this user PIN? scripts/test sets it up", slot, lib, err)
	}
	labels := append([]string{cfg.KeyLabel, cfg.KeyLabel + "-hmac", cfg.KeyLabel + "-sign"}, extraLabels...)
	t.Cleanup(func() {
		defer m.Close()
		for _, l := range labels {
			if err := m.DestroyKey(context.Background(), l); err != nil && !errors.Is(err, hsm.ErrKeyNotFound) {
				t.Errorf("hsmtest: remove key %q from the opencryptoki token: %v", l, err)
			}
		}
	})
	return cfg
}
