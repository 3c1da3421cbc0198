package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"

	"github.com/moonvault/moonvault/internal/fips"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

// TOTP parameters: RFC 6238 defaults as authenticator apps expect them.
const (
	totpPeriod      = 30
	totpSkew        = 1 // RFC 6238 §5.2: one step either side for clock drift
	totpSecretLen   = 20
	recoveryCodes   = 10
	recoveryCodeLen = 10 // bytes: 80 bits, 16 base32 characters
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

type totpState struct {
	Enabled bool `json:"enabled"`
	Pending bool `json:"pending"`
	// LastStep is the last accepted time step: a code is single use
	// (RFC 6238 §5.2 "MUST NOT accept the second attempt").
	LastStep int64 `json:"last_step"`
	// Recovery holds SHA-256 hashes of unused recovery codes. They carry
	// 80 random bits, so a fast hash is enough.
	Recovery [][]byte `json:"recovery,omitempty"`
}

// validateTOTP checks code against a base32 secret at t with a ±1 step
// window, accepting only steps after `after`; it returns the matched step.
func validateTOTP(code, secretB32 string, t time.Time, after int64, digits otp.Digits) (int64, bool) {
	if len(code) != digits.Length() {
		return 0, false
	}
	counter := t.Unix() / totpPeriod
	for c := counter - totpSkew; c <= counter+totpSkew; c++ {
		if c <= after || c < 0 {
			continue
		}
		var ok bool
		var err error
		// HMAC-SHA-1, as RFC 6238 authenticator apps compute it: outside
		// Go's FIPS 140-3 boundary (docs/fips.md), so exempt from
		// GODEBUG=fips140=only.
		fips.Outside(func() {
			ok, err = hotp.ValidateCustom(code, uint64(c), secretB32, // #nosec G115 -- c >= 0 checked above
				hotp.ValidateOpts{Digits: digits, Algorithm: otp.AlgorithmSHA1})
		})
		if err == nil && ok {
			return c, true
		}
	}
	return 0, false
}

// EnrollTOTP creates a pending TOTP secret for username (20 bytes from the
// entropy source, seal-wrapped). It becomes active on ConfirmTOTP.
func (s *Service) EnrollTOTP(ctx context.Context, username string) (secret.String, string, error) {
	mu := s.lock("user:" + username)
	mu.Lock()
	defer mu.Unlock()
	rec, err := s.loadUser(ctx, username)
	if err != nil {
		return "", "", err
	}
	if rec.TOTP.Enabled {
		return "", "", fmt.Errorf("%w: TOTP already enabled; disable it first", ErrConflict)
	}
	raw, err := s.randomSecret(totpSecretLen)
	if err != nil {
		return "", "", err
	}
	defer secret.Wipe(raw)
	key, err := totp.Generate(totp.GenerateOpts{Issuer: s.cfg.Issuer, AccountName: username, Secret: raw,
		Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return "", "", fmt.Errorf("auth: totp: %w", err)
	}
	env, err := s.sealer.Wrap(ctx, prefixTOTP+username, raw)
	if err != nil {
		return "", "", fmt.Errorf("auth: totp: seal wrap: %w", err)
	}
	// The secret first, then the user record (conditionally): a failure in
	// between leaves a pending secret that the next enrolment replaces.
	if err := s.kv.Put(ctx, prefixTOTP+username, env); err != nil {
		return "", "", fmt.Errorf("auth: store totp: %w", err)
	}
	if _, err := s.updateUser(ctx, username, func(rec *userRecord) error {
		if rec.TOTP.Enabled {
			return fmt.Errorf("%w: TOTP already enabled; disable it first", ErrConflict)
		}
		rec.TOTP = totpState{Pending: true}
		return nil
	}); err != nil {
		return "", "", err
	}
	return secret.String(key.Secret()), key.URL(), nil
}

// ConfirmTOTP activates a pending enrolment with a current code and
// returns ten single-use recovery codes, shown once.
func (s *Service) ConfirmTOTP(ctx context.Context, username string, code secret.String) ([]string, error) {
	mu := s.lock("user:" + username)
	mu.Lock()
	defer mu.Unlock()
	rec, err := s.loadUser(ctx, username)
	if err != nil {
		return nil, err
	}
	if !rec.TOTP.Pending {
		return nil, fmt.Errorf("%w: no pending TOTP enrolment", ErrConflict)
	}
	sec, err := s.totpSecret(ctx, username)
	if err != nil {
		return nil, err
	}
	codes := make([]string, 0, recoveryCodes)
	hashes := make([][]byte, 0, recoveryCodes)
	for range recoveryCodes {
		raw, err := s.randomSecret(recoveryCodeLen)
		if err != nil {
			return nil, err
		}
		c := b32.EncodeToString(raw)
		secret.Wipe(raw)
		codes = append(codes, c[0:4]+"-"+c[4:8]+"-"+c[8:12]+"-"+c[12:16])
		h := sha256.Sum256([]byte(c))
		hashes = append(hashes, h[:])
	}
	now := s.now()
	if _, err := s.updateUser(ctx, username, func(rec *userRecord) error {
		if !rec.TOTP.Pending {
			return fmt.Errorf("%w: no pending TOTP enrolment", ErrConflict)
		}
		step, ok := validateTOTP(strings.TrimSpace(code.Reveal()), sec, now, rec.TOTP.LastStep, otp.DigitsSix)
		if !ok {
			return invalid("code", "wrong or expired TOTP code")
		}
		rec.TOTP = totpState{Enabled: true, LastStep: step, Recovery: hashes}
		return nil
	}); err != nil {
		return nil, err
	}
	s.log.Info("totp enabled", "username", username)
	return codes, nil
}

// DisableTOTP removes the user's second factor (policy: step-up first).
func (s *Service) DisableTOTP(ctx context.Context, username string) error {
	mu := s.lock("user:" + username)
	mu.Lock()
	defer mu.Unlock()
	if _, err := s.updateUser(ctx, username, func(rec *userRecord) error {
		rec.TOTP = totpState{}
		return nil
	}); err != nil {
		return err
	}
	if err := s.kv.Delete(ctx, prefixTOTP+username); err != nil {
		return fmt.Errorf("auth: delete totp secret: %w", err)
	}
	s.log.Warn("totp disabled", "username", username)
	return nil
}

// totpSecret unwraps the user's TOTP secret as base32 (pquerna/otp's form).
func (s *Service) totpSecret(ctx context.Context, username string) (string, error) {
	env, err := s.kv.Get(ctx, prefixTOTP+username)
	if errors.Is(err, storage.ErrNotFound) {
		return "", fmt.Errorf("auth: totp secret missing: %w", ErrConflict)
	}
	if err != nil {
		return "", fmt.Errorf("auth: load totp: %w", err)
	}
	raw, err := s.sealer.Unwrap(ctx, prefixTOTP+username, env)
	if err != nil {
		return "", fmt.Errorf("auth: totp: unwrap: %w", err)
	}
	defer raw.Destroy()
	return b32.EncodeToString(raw), nil
}

// checkSecondFactor accepts a fresh TOTP code ("otp") or an unused
// recovery code ("mfa"), consuming it; otherwise ErrInvalidCredentials.
// Consumption is a conditional update of the user record in storage, so a
// code is single use across every node, not just this one (RFC 6238 §5.2).
func (s *Service) checkSecondFactor(ctx context.Context, username string, code secret.String, now time.Time) (string, error) {
	c := strings.TrimSpace(code.Reveal())
	if len(c) == otp.DigitsSix.Length() {
		sec, err := s.totpSecret(ctx, username)
		if err != nil {
			return "", err
		}
		if _, err := s.updateUser(ctx, username, func(rec *userRecord) error {
			step, ok := validateTOTP(c, sec, now, rec.TOTP.LastStep, otp.DigitsSix)
			if !ok {
				return ErrInvalidCredentials
			}
			rec.TOTP.LastStep = step
			return nil
		}); err != nil {
			if errors.Is(err, ErrInvalidCredentials) {
				return "", err
			}
			return "", fmt.Errorf("auth: store totp step: %w", err)
		}
		return "otp", nil
	}
	norm := strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(c))
	h := sha256.Sum256([]byte(norm))
	remaining := 0
	if _, err := s.updateUser(ctx, username, func(rec *userRecord) error {
		for i, want := range rec.TOTP.Recovery {
			if subtle.ConstantTimeCompare(want, h[:]) == 1 {
				rec.TOTP.Recovery = append(rec.TOTP.Recovery[:i:i], rec.TOTP.Recovery[i+1:]...)
				remaining = len(rec.TOTP.Recovery)
				return nil
			}
		}
		return ErrInvalidCredentials
	}); err != nil {
		if errors.Is(err, ErrInvalidCredentials) {
			return "", err
		}
		return "", fmt.Errorf("auth: store recovery codes: %w", err)
	}
	s.log.Warn("recovery code used", "username", username, "remaining", remaining)
	return "mfa", nil
}
