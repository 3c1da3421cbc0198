package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/moonvault/moonvault/internal/audit"
	"github.com/moonvault/moonvault/internal/auth"
	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/core"
	"github.com/moonvault/moonvault/internal/entropy"
	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/policy"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/wallet"
	"github.com/moonvault/moonvault/internal/wallet/evm"
)

// apiError is an error the handlers return with its status and code chosen.
type apiError struct {
	status  int
	code    string
	message string
	header  http.Header
}

func (e *apiError) Error() string { return e.message }

func errBadRequest(code, msg string) error { return &apiError{status: 400, code: code, message: msg} }
func errNotFound(msg string) error         { return &apiError{status: 404, code: "not_found", message: msg} }
func errForbidden(msg string) error        { return &apiError{status: 403, code: "forbidden", message: msg} }

// errUnauthenticated is the single answer to a missing or bad credential.
var errUnauthenticated = &apiError{status: 401, code: "unauthenticated", message: "missing, invalid or expired credentials"}

// classify turns any error into the status, code and message the client
// sees. It is the one place that maps internal errors to API codes; the
// message of an unexpected error is never shown (it may carry internals).
func classify(err error) (int, string, string, http.Header) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status, ae.code, ae.message, ae.header
	}
	var fe *evm.FieldError
	if errors.As(err, &fe) {
		return 400, "invalid_request", fe.Error(), nil
	}
	var rl *auth.RateLimitError
	if errors.As(err, &rl) {
		h := http.Header{}
		h.Set("Retry-After", strconv.Itoa(max(1, int(rl.RetryAfter.Seconds()+0.999))))
		return 429, "rate_limited", "too many failed attempts; retry later", h
	}
	if errors.Is(err, entropy.ErrUnavailable) {
		// Before the HSM check: a failed CSP generation is
		// entropy_unavailable whatever its cause (docs/threat-model.md).
		return 503, "entropy_unavailable", "entropy source unavailable; no key was generated", nil
	}
	var he *hsm.Error
	if errors.As(err, &he) || errors.Is(err, hsm.ErrUnavailable) || errors.Is(err, hsm.ErrTokenNotFound) || errors.Is(err, hsm.ErrClosed) {
		// The HSM is unreachable or refusing: nothing was done; retry later.
		return 503, "hsm_unavailable", "the HSM is unavailable; retry later", nil
	}
	var ie *auth.InvalidInputError
	if errors.As(err, &ie) {
		return 400, "invalid_request", ie.Error(), nil
	}
	switch {
	case errors.Is(err, core.ErrSealed), errors.Is(err, barrier.ErrSealed), errors.Is(err, auth.ErrNotStarted):
		return 503, "sealed", "the vault is sealed", nil
	case errors.Is(err, core.ErrNotInitialized):
		return 503, "not_initialized", "the vault is not initialized", nil
	case errors.Is(err, storage.ErrUnavailable):
		return 503, "storage_unavailable", "storage is unavailable; retry later", nil
	case errors.Is(err, audit.ErrUnavailable):
		return 503, "audit_unavailable", "the request could not be audited and was refused", nil
	case errors.Is(err, barrier.ErrIntegrity):
		return 500, "integrity_error", "stored data failed its integrity check", nil
	case errors.Is(err, core.ErrAlreadyInitialized):
		return 400, "already_initialized", "the vault is already initialized", nil
	case errors.Is(err, core.ErrInvalidShare), errors.Is(err, core.ErrWrongCombination),
		errors.Is(err, core.ErrInvalidRequest), errors.Is(err, core.ErrAutoSeal),
		errors.Is(err, core.ErrNoRekey), errors.Is(err, core.ErrNonceMismatch), errors.Is(err, core.ErrMigrationRequired):
		return 400, codeFor(err), err.Error(), nil
	case errors.Is(err, core.ErrUnsealRefused):
		return 503, "unseal_refused", err.Error(), nil
	case errors.Is(err, auth.ErrMFARequired):
		return 401, "mfa_required", "a TOTP code is required", nil
	case errors.Is(err, auth.ErrInvalidCredentials):
		return 401, "invalid_credentials", "invalid username, password or code", nil
	case errors.Is(err, auth.ErrUnauthenticated):
		return 401, "unauthenticated", "missing, invalid or expired credentials", nil
	case errors.Is(err, policy.ErrStepUpRequired):
		return 403, "mfa_required", "this operation needs a recent login with a TOTP code (step-up)", nil
	case errors.Is(err, policy.ErrDenied):
		return 403, "forbidden", "not allowed", nil
	case errors.Is(err, auth.ErrWeakPassword):
		return 400, "weak_password", err.Error(), nil
	case errors.Is(err, auth.ErrUserExists), errors.Is(err, wallet.ErrExists):
		return 409, "conflict", err.Error(), nil
	case errors.Is(err, wallet.ErrKeyMismatch):
		return 500, "integrity_error", "stored key does not match the account", nil
	case errors.Is(err, wallet.ErrInvalidName), errors.Is(err, wallet.ErrInvalidKey), errors.Is(err, wallet.ErrInvalidOwner):
		return 400, "invalid_request", err.Error(), nil
	case errors.Is(err, auth.ErrNotFound), errors.Is(err, wallet.ErrNotFound):
		return 404, "not_found", "not found", nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return 503, "timeout", "the request timed out", nil
	}
	return 500, "internal", "internal error", nil
}

func codeFor(err error) string {
	switch {
	case errors.Is(err, core.ErrWrongCombination):
		return "wrong_shares"
	case errors.Is(err, core.ErrInvalidShare):
		return "invalid_share"
	case errors.Is(err, core.ErrMigrationRequired):
		return "migration_required"
	}
	return "invalid_request"
}
