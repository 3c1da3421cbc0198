package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/miekg/pkcs11"

	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/seal"
)

// hsmConn opens the PKCS#11 module on first use and again after a failure,
// so that a vault started while the HSM is unreachable, or with a wrong
// PIN that an operator then fixes, recovers without a restart.
type hsmConn struct {
	cfg hsm.Config
	log *slog.Logger

	mu  sync.Mutex
	mod *hsm.Module
	s   *seal.PKCS11
}

func newHSMConn(cfg hsm.Config, log *slog.Logger) *hsmConn {
	return &hsmConn{cfg: cfg, log: log}
}

func (c *hsmConn) get() (*hsm.Module, *seal.PKCS11, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mod != nil {
		return c.mod, c.s, nil
	}
	m, err := hsm.Open(c.cfg, c.log)
	if err != nil {
		return nil, nil, fmt.Errorf("open HSM: %w", err)
	}
	c.mod, c.s = m, seal.NewPKCS11(m, c.cfg.KeyLabel)
	return c.mod, c.s, nil
}

// failed drops the module after an error that may mean it went away, so
// the next call opens it again.
func (c *hsmConn) failed(m *hsm.Module, err error) {
	if err == nil || errors.Is(err, hsm.ErrKeyNotFound) {
		return
	}
	var pe *hsm.Error
	if !errors.Is(err, hsm.ErrTokenNotFound) && !errors.Is(err, hsm.ErrClosed) && !(errors.As(err, &pe) && moduleGone(pe.RV)) {
		return // the session pool already replaced a failed session
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mod == m && m != nil {
		_ = m.Close()
		c.mod, c.s = nil, nil
	}
}

// moduleGone reports return codes after which the module must be opened
// again rather than only given a new session.
func moduleGone(rv pkcs11.Error) bool {
	switch rv {
	case pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_TOKEN_NOT_RECOGNIZED, pkcs11.CKR_USER_NOT_LOGGED_IN:
		return true
	}
	return false
}

func (c *hsmConn) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mod != nil {
		_ = c.mod.Close()
		c.mod, c.s = nil, nil
	}
}

// GenerateRandom feeds the entropy mixer.
func (c *hsmConn) GenerateRandom(ctx context.Context, n int) ([]byte, error) {
	m, _, err := c.get()
	if err != nil {
		return nil, err
	}
	b, err := m.GenerateRandom(ctx, n)
	c.failed(m, err)
	return b, err
}

// The seal methods: core.AutoSeal and sealwrap.Wrapper.

func (c *hsmConn) Type() string  { return "pkcs11" }
func (c *hsmConn) KeyID() string { return "pkcs11:" + c.cfg.KeyLabel }

// Mechanism is the seal's (seal.PKCS11): provenance records name it.
func (c *hsmConn) Mechanism() string { return (&seal.PKCS11{}).Mechanism() }

func (c *hsmConn) EnsureKey(ctx context.Context) (bool, error) {
	m, s, err := c.get()
	if err != nil {
		return false, err
	}
	created, err := s.EnsureKey(ctx)
	c.failed(m, err)
	return created, err
}

func (c *hsmConn) Encrypt(ctx context.Context, pt, aad []byte) ([]byte, error) {
	m, s, err := c.get()
	if err != nil {
		return nil, err
	}
	out, err := s.Encrypt(ctx, pt, aad)
	c.failed(m, err)
	return out, err
}

func (c *hsmConn) Decrypt(ctx context.Context, ct, aad []byte) ([]byte, error) {
	m, s, err := c.get()
	if err != nil {
		return nil, err
	}
	out, err := s.Decrypt(ctx, ct, aad)
	c.failed(m, err)
	return out, err
}
