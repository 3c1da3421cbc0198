package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
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
	// SecretID names the enabled secret, PendingID the one awaiting
	// confirmation (see totpPath); empty means the single secret at
	// auth/totp/<username> that earlier builds wrote.
	SecretID  string `json:"secret_id,omitempty"`
	PendingID string `json:"pending_id,omitempty"`
	// LastStep is the last accepted time step: a code is single use
	// (RFC 6238 §5.2 "MUST NOT accept the second attempt").
	LastStep int64 `json:"last_step"`
	// Recovery holds SHA-256 hashes of unused recovery codes. They carry
	// 80 random bits, so a fast hash is enough.
	Recovery [][]byte `json:"recovery,omitempty"`
}

// totpPath is where the TOTP secret of one enrolment lives. Each
// enrolment writes its own secret once and never overwrites another: the
// user record alone says which one is pending and which one is enabled,
// so promoting a pending secret is one conditional update of the record,
// and a racing enrolment on another node can never replace an enabled
// factor's secret.
func totpPath(username, id string) string {
	if id == "" {
		return prefixTOTP + username // written by earlier builds
	}
	return prefixTOTPSecrets + username + "/" + id
}

func newTOTPID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on Linux; an id is not secret
	return hex.EncodeToString(b[:])
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
	before := rec.TOTP
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
	id := newTOTPID()
	path := totpPath(username, id)
	env, err := s.sealer.Wrap(ctx, path, raw)
	if err != nil {
		return "", "", fmt.Errorf("auth: totp: seal wrap: %w", err)
	}
	// The secret at a path of its own first, then the record names it,
	// only if the record is still as read: a failure in between leaves an
	// unnamed secret, removed here or at the next disable.
	if err := s.kv.Put(ctx, path, env); err != nil {
		return "", "", fmt.Errorf("auth: store totp: %w", err)
	}
	if _, err := s.updateUser(ctx, username, func(rec *userRecord) error {
		if rec.TOTP.Enabled || rec.TOTP.Pending != before.Pending || rec.TOTP.PendingID != before.PendingID {
			return fmt.Errorf("%w: the TOTP enrolment changed meanwhile (enabled or enrolled again on another node)", ErrConflict)
		}
		rec.TOTP = totpState{Pending: true, PendingID: id}
		return nil
	}); err != nil {
		_ = s.kv.Delete(ctx, path)
		return "", "", err
	}
	// The pending secret replaced is named by nothing now, and never will
	// be again (ids are not reused; confirming needs the record to name it).
	if before.Pending && before.PendingID != "" {
		_ = s.kv.Delete(ctx, totpPath(username, before.PendingID))
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
	id := rec.TOTP.PendingID
	sec, err := s.totpSecret(ctx, username, id)
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
	// Promotion is this one conditional update: the record must still
	// name the secret the code was checked against.
	if _, err := s.updateUser(ctx, username, func(rec *userRecord) error {
		if !rec.TOTP.Pending || rec.TOTP.PendingID != id {
			return fmt.Errorf("%w: no pending TOTP enrolment (it changed meanwhile)", ErrConflict)
		}
		step, ok := validateTOTP(strings.TrimSpace(code.Reveal()), sec, now, rec.TOTP.LastStep, otp.DigitsSix)
		if !ok {
			return invalid("code", "wrong or expired TOTP code")
		}
		rec.TOTP = totpState{Enabled: true, SecretID: id, LastStep: step, Recovery: hashes}
		return nil
	}); err != nil {
		return nil, err
	}
	if id != "" {
		_ = s.kv.Delete(ctx, totpPath(username, "")) // an earlier build's secret, unused now
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
	ops, err := s.totpDeletes(ctx, username)
	if err != nil {
		return err
	}
	if err := s.kv.Batch(ctx, ops); err != nil {
		return fmt.Errorf("auth: delete totp secret: %w", err)
	}
	s.log.Warn("totp disabled", "username", username)
	return nil
}

// totpDeletes lists the deletions of every TOTP secret of username.
func (s *Service) totpDeletes(ctx context.Context, username string) ([]storage.Op, error) {
	ops := []storage.Op{{Key: totpPath(username, ""), Delete: true}}
	keys, err := s.kv.List(ctx, prefixTOTPSecrets+username+"/", "", 0)
	if err != nil {
		return nil, fmt.Errorf("auth: list totp secrets: %w", err)
	}
	for _, k := range keys {
		ops = append(ops, storage.Op{Key: k, Delete: true})
	}
	return ops, nil
}

// totpSecret unwraps the TOTP secret id of username as base32 (pquerna/otp's form).
func (s *Service) totpSecret(ctx context.Context, username, id string) (string, error) {
	path := totpPath(username, id)
	env, err := s.kv.Get(ctx, path)
	if errors.Is(err, storage.ErrNotFound) {
		return "", fmt.Errorf("auth: totp secret missing: %w", ErrConflict)
	}
	if err != nil {
		return "", fmt.Errorf("auth: load totp: %w", err)
	}
	raw, err := s.sealer.Unwrap(ctx, path, env)
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
		rec, err := s.loadUser(ctx, username)
		if err != nil {
			return "", err
		}
		id := rec.TOTP.SecretID
		sec, err := s.totpSecret(ctx, username, id)
		if err != nil {
			return "", err
		}
		if _, err := s.updateUser(ctx, username, func(rec *userRecord) error {
			if !rec.TOTP.Enabled || rec.TOTP.SecretID != id {
				return ErrInvalidCredentials // the factor changed meanwhile
			}
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
