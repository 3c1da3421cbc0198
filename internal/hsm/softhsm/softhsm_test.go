package softhsm_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/hsm/softhsm"
)

// One process, dev-mode style: EnsureToken before the first Open, reuse on
// a second call, refuse to switch directories while a Module is open.
func TestEnsureToken(t *testing.T) {
	lib, ok := softhsm.FindLibrary()
	if !ok {
		t.Fatal("SoftHSM2 not found: apt-get install softhsm2")
	}
	dir := t.TempDir()
	cfg, err := softhsm.EnsureToken(dir, "moonvault-dev")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Lib != lib || cfg.TokenLabel != "moonvault-dev" || cfg.PIN == "" {
		t.Fatalf("config = %+v", cfg)
	}
	if got := os.Getenv("SOFTHSM2_CONF"); got != filepath.Join(dir, "softhsm2.conf") {
		t.Fatalf("SOFTHSM2_CONF = %q", got)
	}
	st, err := os.Stat(filepath.Join(dir, "pin"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("pin file: %v %v", st, err)
	}
	m, err := hsm.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.EnsureAESKey(context.Background(), cfg.KeyLabel); err != nil {
		t.Fatal(err)
	}
	again, err := softhsm.EnsureToken(dir, "moonvault-dev")
	if err != nil || again.PIN != cfg.PIN {
		t.Fatalf("second EnsureToken: %v (same PIN: %v)", err, again.PIN == cfg.PIN)
	}
	if _, err := softhsm.EnsureToken(t.TempDir(), "x"); !errors.Is(err, softhsm.ErrInUse) {
		t.Fatalf("switch while open: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if hsm.InUse(lib) {
		t.Fatal("library still in use after the last Close")
	}
	// Re-open after finalisation: the token and key persisted on disk.
	m, err = hsm.Open(again, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if ok, err := m.HasKey(context.Background(), cfg.KeyLabel); err != nil || !ok {
		t.Fatalf("HasKey after reopen = %v, %v", ok, err)
	}
}
