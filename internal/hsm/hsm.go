// Package hsm gives the vault access to a PKCS#11 token through
// github.com/miekg/pkcs11: random numbers (C_GenerateRandom) and the
// mechanisms the seal uses (CKM_AES_GCM, CKM_AES_CBC_PAD, CKM_SHA256_HMAC,
// CKM_RSA_PKCS_OAEP, CKM_SHA256_RSA_PKCS_PSS) with non-extractable,
// sensitive keys that never leave the token. One Module holds a pool of
// logged-in sessions that is safe for concurrent use. Reconnecting after the token went away is the seal
// layer's job (package seal); a Module only reports it (Gone).
package hsm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/miekg/pkcs11"

	"github.com/moonvault/moonvault/internal/secret"
)

// DefaultPoolSize is the number of sessions when Config.PoolSize is zero.
const DefaultPoolSize = 4

// Config selects a token and how to log in to it.
type Config struct {
	Lib        string        // path of the PKCS#11 library (.so)
	TokenLabel string        // token label; used when Slot is nil, checked when both are set
	Slot       *uint         // slot id; optional
	PIN        secret.String // CKU_USER PIN; never logged
	KeyLabel   string        // label of the seal key; consumers read it, Open does not
	PoolSize   int           // sessions kept open; DefaultPoolSize when <= 0
	// WrapAPI, when set, wraps the library's calls for this Module (fault
	// injection in tests: a token that disappears mid-operation).
	WrapAPI func(API) API
}

// Where names the token a Config selects, for logs and errors:
// `token label "x", slot 3` (either part may be "any").
func (c Config) Where() string {
	label, slot := "any", "any"
	if c.TokenLabel != "" {
		label = fmt.Sprintf("%q", c.TokenLabel)
	}
	if c.Slot != nil {
		slot = fmt.Sprint(*c.Slot)
	}
	return "token label " + label + ", slot " + slot
}

// Module is an open, logged-in token. Safe for concurrent use.
type Module struct {
	lib  *library
	api  API // lib.ctx, or its test wrapper
	slot uint
	pin  secret.String
	log  *slog.Logger

	permits chan struct{}             // one per session that may exist
	idle    chan pkcs11.SessionHandle // sessions ready for reuse

	keysMu sync.RWMutex
	keys   map[keyRef]pkcs11.ObjectHandle
	genMu  sync.Mutex // serialises the Ensure*Key find-then-create

	closeOnce sync.Once
	closed    chan struct{}
}

// Open loads the library (shared with other Modules in the process), finds
// the token, and logs in as CKU_USER.
func Open(cfg Config, log *slog.Logger) (*Module, error) {
	if cfg.Lib == "" {
		return nil, errors.New("hsm: config field lib is empty")
	}
	if cfg.TokenLabel == "" && cfg.Slot == nil {
		return nil, errors.New("hsm: config needs token_label or slot")
	}
	if cfg.PIN == "" {
		return nil, fmt.Errorf("%w for %s", ErrPINMissing, cfg.Where())
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := cfg.PoolSize
	if n <= 0 {
		n = DefaultPoolSize
	}
	lib, err := acquire(cfg.Lib)
	if err != nil {
		return nil, err
	}
	var api API = lib.ctx
	if cfg.WrapAPI != nil {
		api = cfg.WrapAPI(api)
	}
	slot, err := resolveSlot(api, cfg)
	if err != nil {
		lib.release()
		return nil, err
	}
	m := &Module{
		lib: lib, api: api, slot: slot, pin: cfg.PIN, log: log,
		permits: make(chan struct{}, n),
		idle:    make(chan pkcs11.SessionHandle, n),
		keys:    map[keyRef]pkcs11.ObjectHandle{},
		closed:  make(chan struct{}),
	}
	for range n {
		m.permits <- struct{}{}
	}
	// Open and log in one session now so that a wrong PIN or a missing
	// token fails Open, not the first request.
	s, err := m.newSession()
	if err != nil {
		lib.release()
		return nil, err
	}
	m.idle <- s
	log.Info("hsm opened", "lib", cfg.Lib, "token", cfg.TokenLabel, "slot", slot, "sessions", n)
	return m, nil
}

// Slot is the slot the token was found in.
func (m *Module) Slot() uint { return m.slot }

func resolveSlot(api API, cfg Config) (uint, error) {
	if cfg.Slot == nil {
		return findSlot(api, cfg.TokenLabel)
	}
	ti, err := api.GetTokenInfo(*cfg.Slot)
	if err != nil {
		if rv, ok := rvOf(err); ok && (rv == pkcs11.CKR_SLOT_ID_INVALID || rv == pkcs11.CKR_TOKEN_NOT_PRESENT) {
			return 0, fmt.Errorf("%w: slot %d", ErrTokenNotFound, *cfg.Slot)
		}
		return 0, wrapRV("get token info", err)
	}
	if cfg.TokenLabel != "" && ti.Label != cfg.TokenLabel {
		return 0, fmt.Errorf("%w: slot %d holds token %q, want %q", ErrTokenNotFound, *cfg.Slot, ti.Label, cfg.TokenLabel)
	}
	return *cfg.Slot, nil
}

// Close waits for in-flight operations, closes this Module's sessions and
// releases the library (finalised when no other Module uses it).
func (m *Module) Close() error {
	var err error = ErrClosed
	m.closeOnce.Do(func() {
		close(m.closed)
		for range cap(m.permits) { // wait until every session is back
			<-m.permits
		}
		for {
			select {
			case s := <-m.idle:
				_ = m.api.CloseSession(s)
				continue
			default:
			}
			break
		}
		err = m.lib.release()
	})
	return err
}

func (m *Module) newSession() (pkcs11.SessionHandle, error) {
	s, err := m.api.OpenSession(m.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return 0, wrapRV("open session", err)
	}
	// Login state is per token: a new session is usually logged in already,
	// but not after every session of the token was closed.
	if err := m.lib.login(m.api, s, m.slot, m.pin); err != nil {
		_ = m.api.CloseSession(s)
		return 0, err
	}
	return s, nil
}

// withSession runs fn on a pooled session. A session whose call failed with
// a PKCS#11 error is closed and replaced, never reused: after
// CKR_SESSION_HANDLE_INVALID, CKR_DEVICE_REMOVED and the like it is dead,
// and after other failures it may hold an unfinished operation.
func (m *Module) withSession(ctx context.Context, fn func(pkcs11.SessionHandle) error) error {
	select {
	case <-m.closed:
		return ErrClosed
	default:
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("hsm: %w", err)
	}
	select {
	case <-m.permits:
	case <-m.closed:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("hsm: waiting for a session: %w", ctx.Err())
	}
	defer func() { m.permits <- struct{}{} }()
	var s pkcs11.SessionHandle
	select {
	case s = <-m.idle:
	default:
		var err error
		if s, err = m.newSession(); err != nil {
			return err
		}
	}
	err := fn(s)
	if _, isRV := rvOf(err); isRV {
		_ = m.api.CloseSession(s)
		m.log.Debug("hsm session discarded", "err", err)
		return err
	}
	m.idle <- s
	return err
}
