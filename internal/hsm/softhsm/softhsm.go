// Package softhsm sets up SoftHSM2 tokens for development mode and tests.
// It is not for production: the user PIN is kept in a file next to the
// token.
//
// SoftHSM2 reads its configuration from the SOFTHSM2_CONF environment
// variable when the library is initialised (C_Initialize), and only then
// scans its token directory. In one process:
//
//   - Activate (and EnsureToken) must run before the first hsm.Open on the
//     library, or while no hsm.Module is open: the library is initialised
//     at the first Open, and only a fresh initialisation reads a new
//     SOFTHSM2_CONF, so Activate finalises the idle library (hsm.Reset).
//     Activating another directory while a Module is open fails with
//     ErrInUse.
//   - Tokens are created in-process (hsm.InitToken), so they are visible at
//     once to Modules already open, and several tokens (one per test) can
//     share one token directory. A token made by another process (e.g.
//     softhsm2-util) is only seen after every Module closed and hsm.Reset.
package softhsm

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/moonvault/moonvault/internal/errkind"

	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/secret"
)

// Libraries are the paths where Debian and Ubuntu install SoftHSM2.
var Libraries = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
}

// ErrInUse means SoftHSM2 is already initialised in this process with
// another configuration directory.
var ErrInUse = errkind.New(errkind.Unavailable, "", "softhsm: library in use with another configuration; close every hsm.Module first")

// FindLibrary returns the first SoftHSM2 library that exists.
func FindLibrary() (string, bool) {
	for _, p := range Libraries {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, true
		}
	}
	return "", false
}

var active struct {
	sync.Mutex
	dir string
}

// ActiveDir is the directory whose configuration this process activated,
// or "" when none.
func ActiveDir() string {
	active.Lock()
	defer active.Unlock()
	return active.dir
}

// Activate writes dir/softhsm2.conf (token directory dir/tokens, file
// object store, log level ERROR) and points SOFTHSM2_CONF at it for this
// process. See the package comment for when it may be called.
func Activate(lib, dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("softhsm: dir: %w", err)
	}
	active.Lock()
	defer active.Unlock()
	if active.dir == dir {
		return nil
	}
	if err := hsm.Reset(lib); errors.Is(err, hsm.ErrInUse) {
		return ErrInUse
	} else if err != nil {
		return fmt.Errorf("softhsm: %w", err)
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokens, 0o700); err != nil {
		return fmt.Errorf("softhsm: %w", err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := "directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return fmt.Errorf("softhsm: %w", err)
	}
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return fmt.Errorf("softhsm: %w", err)
	}
	active.dir = dir
	return nil
}

// EnsureToken activates dir (see Activate) and makes sure a token labelled
// label exists there, creating it with a random user PIN stored in
// dir/pin (mode 0600; development only) and a random SO PIN that is
// discarded. It returns a Config for hsm.Open with KeyLabel "moonvault-seal".
func EnsureToken(dir, label string) (hsm.Config, error) {
	lib, ok := FindLibrary()
	if !ok {
		return hsm.Config{}, errors.New("softhsm: SoftHSM2 library not found (apt-get install softhsm2)")
	}
	if err := Activate(lib, dir); err != nil {
		return hsm.Config{}, err
	}
	dir = ActiveDir()
	pinFile := filepath.Join(dir, "pin")
	cfg := hsm.Config{Lib: lib, TokenLabel: label, KeyLabel: "moonvault-seal"}
	if b, err := os.ReadFile(pinFile); err == nil {
		cfg.PIN = secret.String(strings.TrimSpace(string(b)))
		return cfg, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return hsm.Config{}, fmt.Errorf("softhsm: read pin file: %w", err)
	}
	pin, err := NewToken(lib, label)
	if err != nil {
		return hsm.Config{}, err
	}
	if err := os.WriteFile(pinFile, []byte(pin.Reveal()+"\n"), 0o600); err != nil {
		return hsm.Config{}, fmt.Errorf("softhsm: write pin file: %w", err)
	}
	cfg.PIN = pin
	return cfg, nil
}

// NewToken initialises a token labelled label in the active token
// directory with random PINs and returns the user PIN.
func NewToken(lib, label string) (secret.String, error) {
	pin, so := randomPIN(), randomPIN()
	if err := hsm.InitToken(lib, label, so, pin); err != nil {
		return "", fmt.Errorf("softhsm: %w", err)
	}
	return pin, nil
}

func randomPIN() secret.String {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand never fails (Go 1.24+)
	return secret.String(hex.EncodeToString(b))
}
