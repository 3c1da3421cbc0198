package auth

import (
	"fmt"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
)

// Sentinel errors the HTTP layer maps to a status and code.
var (
	// ErrInvalidCredentials: 401 invalid_credentials. Unknown user, wrong
	// password, wrong second factor and a bad refresh token all look alike.
	ErrInvalidCredentials = errkind.New(errkind.Unauthenticated, "invalid_credentials", "invalid credentials")
	// ErrMFARequired: 401 mfa_required. The password was right and the user
	// has TOTP enrolled, but no code was given.
	ErrMFARequired = errkind.New(errkind.Unauthenticated, "mfa_required", "a TOTP code is required")
	// ErrUnauthenticated: 401 unauthenticated. Every token failure wraps it;
	// the message names the check that failed, never the token.
	ErrUnauthenticated = errkind.New(errkind.Unauthenticated, "unauthenticated", "unauthenticated")
	// ErrSessionRevoked: the session was revoked, expired or idled out.
	ErrSessionRevoked = fmt.Errorf("%w: session revoked", ErrUnauthenticated)
	// ErrUserDisabled: the account is disabled (an authentication failure).
	ErrUserDisabled = fmt.Errorf("%w: user disabled", ErrUnauthenticated)
	// ErrRateLimited: 429. Returned as *RateLimitError, which carries
	// RetryAfter.
	ErrRateLimited = errkind.New(errkind.RateLimited, "rate_limited", "too many failed attempts")
	// ErrUserExists: 409.
	ErrUserExists = errkind.New(errkind.Conflict, "conflict", "user already exists")
	// ErrConflict: 409, the state does not allow the operation (e.g. TOTP
	// already enrolled).
	ErrConflict = errkind.New(errkind.Conflict, "conflict", "conflict")
	// ErrNotFound: 404.
	ErrNotFound = errkind.New(errkind.NotFound, "not_found", "not found")
	// ErrInvalidInput: 400. Returned as *InvalidInputError naming the field.
	ErrInvalidInput = errkind.New(errkind.Invalid, "invalid_request", "invalid input")
	// ErrWeakPassword: 400, also an *InvalidInputError for field "password".
	ErrWeakPassword error = &errkind.Error{Kind: errkind.Invalid, Code: "weak_password", Msg: "password does not meet the policy", Err: ErrInvalidInput}
	// ErrNotStarted: the service is sealed or not started; fail closed
	// (HTTP 503 sealed).
	ErrNotStarted = errkind.New(errkind.Sealed, "sealed", "the vault is sealed")
)

// RateLimitError is returned when login attempts are throttled.
type RateLimitError struct {
	RetryAfter time.Duration
}

// Kind: a rate limit.
func (e *RateLimitError) Kind() errkind.Kind { return errkind.RateLimited }

// RetryIn says how long to wait (the Retry-After header).
func (e *RateLimitError) RetryIn() time.Duration { return e.RetryAfter }

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("too many failed attempts, retry in %s", e.RetryAfter.Round(time.Second))
}

// Unwrap makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// InvalidInputError names the request field that is wrong: the vault's one
// field-error shape (errkind.Field), of kind Invalid. errors.Is matches
// ErrInvalidInput, and ErrWeakPassword for a password the policy refuses.
type InvalidInputError = errkind.Field

func invalid(field, reason string) error {
	return &InvalidInputError{Name: field, Msg: reason, Sentinel: ErrInvalidInput}
}

// unauth builds a token failure that names the check, never the token.
func unauth(check string) error {
	return fmt.Errorf("%w: %s", ErrUnauthenticated, check)
}
