package auth

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors the HTTP layer maps to a status and code.
var (
	// ErrInvalidCredentials: 401 invalid_credentials. Unknown user, wrong
	// password, wrong second factor and a bad refresh token all look alike.
	ErrInvalidCredentials = errors.New("invalid credentials")
	// ErrMFARequired: 401 mfa_required. The password was right and the user
	// has TOTP enrolled, but no code was given.
	ErrMFARequired = errors.New("second factor required")
	// ErrUnauthenticated: 401 unauthenticated. Every token failure wraps it;
	// the message names the check that failed, never the token.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrSessionRevoked: the session was revoked, expired or idled out.
	ErrSessionRevoked = fmt.Errorf("%w: session revoked", ErrUnauthenticated)
	// ErrUserDisabled: the account is disabled (an authentication failure).
	ErrUserDisabled = fmt.Errorf("%w: user disabled", ErrUnauthenticated)
	// ErrRateLimited: 429. Returned as *RateLimitError, which carries
	// RetryAfter.
	ErrRateLimited = errors.New("too many failed attempts")
	// ErrUserExists: 409.
	ErrUserExists = errors.New("user already exists")
	// ErrConflict: 409, the state does not allow the operation (e.g. TOTP
	// already enrolled).
	ErrConflict = errors.New("conflict")
	// ErrNotFound: 404.
	ErrNotFound = errors.New("not found")
	// ErrInvalidInput: 400. Returned as *InvalidInputError naming the field.
	ErrInvalidInput = errors.New("invalid input")
	// ErrWeakPassword: 400, also an *InvalidInputError for field "password".
	ErrWeakPassword = errors.New("password does not meet the policy")
	// ErrNotStarted: the service is sealed or not started; fail closed
	// (HTTP 503 sealed).
	ErrNotStarted = errors.New("auth: service not started")
)

// RateLimitError is returned when login attempts are throttled.
type RateLimitError struct {
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("too many failed attempts, retry in %s", e.RetryAfter.Round(time.Second))
}

// Unwrap makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// InvalidInputError names the request field that is wrong.
type InvalidInputError struct {
	Field  string
	Reason string
	kind   error // an extra sentinel, e.g. ErrWeakPassword
}

func (e *InvalidInputError) Error() string {
	return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason)
}

// Unwrap makes errors.Is work for ErrInvalidInput and any extra sentinel.
func (e *InvalidInputError) Unwrap() []error {
	if e.kind != nil {
		return []error{ErrInvalidInput, e.kind}
	}
	return []error{ErrInvalidInput}
}

func invalid(field, reason string) error {
	return &InvalidInputError{Field: field, Reason: reason}
}

// unauth builds a token failure that names the check, never the token.
func unauth(check string) error {
	return fmt.Errorf("%w: %s", ErrUnauthenticated, check)
}
