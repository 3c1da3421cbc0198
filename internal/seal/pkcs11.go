package seal

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/miekg/pkcs11"

	"github.com/moonvault/moonvault/internal/hsm"
)

// Config chooses the token, the mechanism and the keys of a PKCS11 seal.
type Config struct {
	// HSM selects the token (library, label and/or slot) and the PIN.
	// HSM.KeyLabel is not read: KeyLabel below is.
	HSM hsm.Config
	// Mechanism is aes_gcm (default), aes_cbc_pad_hmac or rsa_oaep.
	Mechanism Mechanism
	// KeyLabel labels the AES key, or the RSA key pair.
	KeyLabel string
	// HMACKeyLabel labels the HMAC key of aes_cbc_pad_hmac; default
	// KeyLabel + "-hmac".
	HMACKeyLabel string
	// SigningKeyLabel labels the RSA signing key pair of rsa_oaep, which
	// signs every ciphertext (the OAEP public key alone authenticates
	// nothing); default KeyLabel + "-sign".
	SigningKeyLabel string
	// OAEPHash is rsa_oaep's hash, "sha256" (default) or "sha1".
	OAEPHash string
}

// scheme validates the configuration and returns the scheme new
// ciphertexts are made with.
func (c Config) scheme() (scheme, error) {
	m, err := ParseMechanism(string(c.Mechanism))
	if err != nil {
		return scheme{}, fmt.Errorf("seal: %w", err)
	}
	if c.KeyLabel == "" {
		return scheme{}, errNoKeyLabel
	}
	s := scheme{key: c.KeyLabel}
	switch m {
	case AESGCM:
		s.id = idAESGCM
	case AESCBCPadHMAC:
		s.id, s.auth = idAESCBCPadHMAC, c.HMACKeyLabel
		if s.auth == "" {
			s.auth = c.KeyLabel + "-hmac"
		}
		if s.auth == s.key {
			return scheme{}, fmt.Errorf("seal: the HMAC key label must differ from the key label %q", s.key)
		}
	case RSAOAEP:
		switch c.OAEPHash {
		case "", OAEPSHA256:
			s.id = idRSAOAEPSHA256
		case OAEPSHA1:
			s.id = idRSAOAEPSHA1
		default:
			return scheme{}, fmt.Errorf("seal: RSA-OAEP hash %q: use sha256 or sha1", c.OAEPHash)
		}
		s.auth = c.SigningKeyLabel
		if s.auth == "" {
			s.auth = c.KeyLabel + "-sign"
		}
		if s.auth == s.key {
			return scheme{}, fmt.Errorf("seal: the signing key label must differ from the key label %q (one key, one purpose)", s.key)
		}
	}
	if len(s.key) > maxLabel || len(s.auth) > maxLabel {
		return scheme{}, fmt.Errorf("seal: key labels are limited to %d bytes", maxLabel)
	}
	return s, nil
}

// PKCS11 is the Seal over a PKCS#11 token. It opens the token on first
// use and again after a failure that means the token went away, so that a
// vault started while the HSM is unreachable recovers without a restart.
// A refused or missing PIN, or a token without the configured mechanism,
// latches an ErrNoRetry error: the token is not called again (a real HSM
// locks after a few wrong PINs). Safe for concurrent use.
type PKCS11 struct {
	cfg Config
	cur scheme
	log *slog.Logger

	// rand draws rsa_oaep's data keys: crypto/rand until SetRand.
	rand atomic.Pointer[io.Reader]

	mu      sync.Mutex
	mod     *hsm.Module
	mechs   []uint // of mod, nil until read
	fatal   error  // latched ErrNoRetry failure
	waiting bool   // the last open failed (logged once per outage)
}

var _ Seal = (*PKCS11)(nil)

// NewPKCS11 validates cfg and returns the seal; the token is opened on
// first use.
func NewPKCS11(cfg Config, log *slog.Logger) (*PKCS11, error) {
	s, err := cfg.scheme()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &PKCS11{cfg: cfg, cur: s, log: log}, nil
}

// Type is "pkcs11".
func (s *PKCS11) Type() string { return "pkcs11" }

// KeyID names the mechanism and keys new ciphertexts are made with, e.g.
// "pkcs11:aes_gcm:moonvault-root".
func (s *PKCS11) KeyID() string { return s.cur.keyID() }

// Where names the token the seal uses, for logs: `token label "x", slot 3`.
func (s *PKCS11) Where() string { return s.cfg.HSM.Where() }

// module returns the open module, opening it if needed.
func (s *PKCS11) module() (*hsm.Module, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fatal != nil {
		return nil, s.fatal
	}
	if s.mod != nil {
		return s.mod, nil
	}
	m, err := hsm.Open(s.cfg.HSM, s.log)
	if err != nil {
		return nil, s.openFailedLocked(err)
	}
	if s.waiting {
		s.log.Info("HSM token is back", "token_label", s.cfg.HSM.TokenLabel, "slot", m.Slot())
		s.waiting = false
	}
	s.mod, s.mechs = m, nil
	return m, nil
}

func (s *PKCS11) openFailedLocked(err error) error {
	if fatal := s.noRetryLocked(err); fatal != nil {
		return fatal
	}
	where := s.Where()
	if errors.Is(err, hsm.ErrTokenNotFound) || hsm.Gone(err) {
		if !s.waiting {
			s.log.Warn("HSM token not found; the vault stays sealed and retries until it appears",
				"token_label", s.cfg.HSM.TokenLabel, "slot", slotString(s.cfg.HSM.Slot), "lib", s.cfg.HSM.Lib, "err", err)
		}
		s.waiting = true
		return fmt.Errorf("waiting for the HSM (%s): %w", where, err)
	}
	return fmt.Errorf("open HSM (%s): %w", where, err)
}

// noRetryLocked latches and returns an ErrNoRetry error when err means
// retrying cannot help; nil otherwise.
func (s *PKCS11) noRetryLocked(err error) error {
	var why string
	switch {
	case errors.Is(err, hsm.ErrPINMissing):
		why = "no HSM PIN is configured: set hsm_pin (MOONVAULT_HSM_PIN) and restart"
	case errors.Is(err, hsm.ErrPINRejected):
		why = "the HSM refused the PIN; stopped at once so that the token does not lock: fix hsm_pin (MOONVAULT_HSM_PIN) and restart"
	case errors.Is(err, hsm.ErrLibrary):
		why = "the PKCS#11 library does not load: fix hsm_lib and restart"
	default:
		return nil
	}
	s.fatal = fmt.Errorf("%w: %s (%s): %w", ErrNoRetry, why, s.Where(), err)
	s.log.Error("HSM unusable with this configuration; not retrying", "token_label", s.cfg.HSM.TokenLabel, "slot", slotString(s.cfg.HSM.Slot), "err", err)
	return s.fatal
}

func slotString(slot *uint) string {
	if slot == nil {
		return "any"
	}
	return fmt.Sprint(*slot)
}

// failed looks at the error of an operation on m: a token that went away
// is closed, so the next call opens it again; a refused PIN (on a session
// that had to log in again) latches ErrNoRetry.
func (s *PKCS11) failed(m *hsm.Module, err error) error {
	if err == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if fatal := s.noRetryLocked(err); fatal != nil {
		if s.mod == m {
			_ = m.Close()
			s.mod = nil
		}
		return fatal
	}
	if hsm.Gone(err) && s.mod == m {
		s.log.Warn("HSM connection lost; reopening on the next call", "token_label", s.cfg.HSM.TokenLabel, "slot", m.Slot(), "err", err)
		_ = m.Close()
		s.mod = nil
		if errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)) {
			// The library lost its state: initialise it afresh on reopen.
			_ = hsm.Reset(s.cfg.HSM.Lib)
		}
	}
	return err
}

// Close closes the token connection; a later call opens it again.
func (s *PKCS11) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mod != nil {
		_ = s.mod.Close()
		s.mod = nil
	}
}

// GenerateRandom draws n bytes from the token's generator
// (C_GenerateRandom); it feeds the entropy mixer and needs no mechanism.
func (s *PKCS11) GenerateRandom(ctx context.Context, n int) ([]byte, error) {
	m, err := s.module()
	if err != nil {
		return nil, err
	}
	b, err := m.GenerateRandom(ctx, n)
	return b, s.failed(m, err)
}

// needed lists the PKCS#11 mechanisms scheme sc uses.
func (sc scheme) needed() []uint {
	switch sc.id {
	case idAESGCM:
		return []uint{pkcs11.CKM_AES_GCM}
	case idAESCBCPadHMAC:
		return []uint{pkcs11.CKM_AES_CBC_PAD, pkcs11.CKM_SHA256_HMAC}
	default:
		return []uint{pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.CKM_SHA256_RSA_PKCS_PSS}
	}
}

var mechNames = map[uint]string{
	pkcs11.CKM_AES_GCM: "CKM_AES_GCM", pkcs11.CKM_AES_CBC_PAD: "CKM_AES_CBC_PAD",
	pkcs11.CKM_SHA256_HMAC: "CKM_SHA256_HMAC", pkcs11.CKM_RSA_PKCS_OAEP: "CKM_RSA_PKCS_OAEP",
	pkcs11.CKM_SHA256_RSA_PKCS_PSS: "CKM_SHA256_RSA_PKCS_PSS",
}

// ready returns the module after checking that the token offers what sc
// needs. A token without the configured mechanism latches ErrNoRetry.
func (s *PKCS11) ready(ctx context.Context, sc scheme) (*hsm.Module, error) {
	m, err := s.module()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	mechs := s.mechs
	s.mu.Unlock()
	if mechs == nil {
		if mechs, err = m.Mechanisms(ctx); err != nil {
			return nil, s.failed(m, err)
		}
		s.mu.Lock()
		if s.mod == m {
			s.mechs = mechs
		}
		s.mu.Unlock()
	}
	var missing []string
	for _, need := range sc.needed() {
		if !slices.Contains(mechs, need) {
			missing = append(missing, mechNames[need])
		}
	}
	if len(missing) == 0 {
		return m, nil
	}
	err = fmt.Errorf("the HSM (%s) does not offer %s, which %s needs", s.Where(), strings.Join(missing, " and "), sc.id)
	if sc == s.cur {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.fatal = fmt.Errorf("%w: %w: choose another hsm_mechanism (%s) and restart", ErrNoRetry, err, s.offered(mechs))
		s.log.Error("HSM mechanism not available; not retrying", "err", s.fatal)
		return nil, s.fatal
	}
	return nil, err
}

// offered says which of the seal's mechanisms the token supports.
func (s *PKCS11) offered(mechs []uint) string {
	var ok []string
	for _, mech := range Mechanisms {
		sc, _ := Config{Mechanism: mech, KeyLabel: "x"}.scheme()
		if !slices.ContainsFunc(sc.needed(), func(n uint) bool { return !slices.Contains(mechs, n) }) {
			ok = append(ok, string(mech))
		}
	}
	if len(ok) == 0 {
		return "the token offers none of aes_gcm, aes_cbc_pad_hmac, rsa_oaep"
	}
	return "the token offers " + strings.Join(ok, ", ")
}

// EnsureKey creates the key(s) of the configured mechanism unless they
// exist; existing keys are adopted only if sensitive, not extractable and
// of the right type.
func (s *PKCS11) EnsureKey(ctx context.Context) (bool, error) {
	m, err := s.ready(ctx, s.cur)
	if err != nil {
		return false, err
	}
	var created bool
	ensure := func(label string, t hsm.KeyType) error {
		c, err := m.EnsureKey(ctx, label, t)
		created = created || c
		if err != nil {
			return fmt.Errorf("seal: key %q: %w", label, s.failed(m, err))
		}
		return nil
	}
	switch s.cur.id {
	case idAESGCM:
		err = ensure(s.cur.key, hsm.KeyAES)
	case idAESCBCPadHMAC:
		if err = ensure(s.cur.key, hsm.KeyAES); err == nil {
			err = ensure(s.cur.auth, hsm.KeyHMAC)
		}
	default:
		if err = ensure(s.cur.key, hsm.KeyRSA); err == nil {
			err = ensure(s.cur.auth, hsm.KeyRSASign)
		}
	}
	return created, err
}

// SetRand makes r the source of the data keys rsa_oaep draws (the vault's
// entropy mixer, which itself draws from this token, so it is made after
// the seal); until then they come from crypto/rand.
func (s *PKCS11) SetRand(r io.Reader) { s.rand.Store(&r) }

// Encrypt encrypts plaintext bound to aad with the configured mechanism.
func (s *PKCS11) Encrypt(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	m, err := s.ready(ctx, s.cur)
	if err != nil {
		return nil, fmt.Errorf("seal: encrypt with %s: %w", s.KeyID(), err)
	}
	rnd := io.Reader(rand.Reader)
	if r := s.rand.Load(); r != nil {
		rnd = *r
	}
	ct, err := s.cur.encrypt(ctx, m, rnd, plaintext, aad)
	if err != nil {
		return nil, fmt.Errorf("seal: encrypt with %s: %w", s.KeyID(), s.failed(m, err))
	}
	return ct, nil
}

// Decrypt decrypts a ciphertext of any mechanism and key the token holds.
// A ciphertext that does not authenticate returns an error wrapping
// ErrDecrypt.
func (s *PKCS11) Decrypt(ctx context.Context, ciphertext, aad []byte) ([]byte, error) {
	if len(ciphertext) > 0 && ciphertext[0] == legacyVersion {
		return s.decryptLegacy(ctx, ciphertext, aad)
	}
	sc, header, body, err := parseBlob(ciphertext)
	if err != nil {
		return nil, err
	}
	m, err := s.ready(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("seal: decrypt with %s: %w", sc.keyID(), err)
	}
	pt, err := sc.decrypt(ctx, m, header, body, aad)
	return s.decrypted(m, sc.keyID(), pt, err)
}

// decryptLegacy opens a ciphertext made before the format recorded its
// key: aes_gcm under the configured key label.
func (s *PKCS11) decryptLegacy(ctx context.Context, ciphertext, aad []byte) ([]byte, error) {
	sc := scheme{id: idAESGCM, key: s.cfg.KeyLabel}
	m, err := s.ready(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("seal: decrypt with %s: %w", sc.keyID(), err)
	}
	pt, err := m.DecryptGCM(ctx, sc.key, ciphertext, aad)
	return s.decrypted(m, sc.keyID()+" (a ciphertext from before key labels were recorded: run operator rewrap before changing hsm_key_label)", pt, err)
}

func (s *PKCS11) decrypted(m *hsm.Module, keyID string, pt []byte, err error) ([]byte, error) {
	switch {
	case err == nil:
		return pt, nil
	case errors.Is(err, hsm.ErrDecrypt):
		return nil, fmt.Errorf("%w: %s: %w", ErrDecrypt, keyID, err)
	}
	return nil, fmt.Errorf("seal: decrypt with %s: %w", keyID, s.failed(m, err))
}
