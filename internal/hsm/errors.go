package hsm

import (
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"

	"github.com/moonvault/moonvault/internal/errkind"
)

var (
	// ErrUnavailable is in the chain of every failure of the token itself
	// (*Error, ErrTokenNotFound, ErrClosed): retry later. The HTTP edge
	// answers 503 hsm_unavailable.
	ErrUnavailable = errkind.New(errkind.Unavailable, "hsm_unavailable", "the HSM is unavailable")
	// ErrTokenNotFound means no token with the configured label or slot.
	ErrTokenNotFound = errkind.New(errkind.Unavailable, "hsm_unavailable", "hsm: token not found")
	// ErrKeyNotFound means no key with the label on the token.
	ErrKeyNotFound = errkind.New(errkind.Unavailable, "hsm_unavailable", "hsm: key not found")
	// ErrKeyUnsafe means a key found by its label may not be used: it is
	// extractable, not sensitive, or of the wrong type (PKCS#11 v2.40 §4.9).
	ErrKeyUnsafe = errkind.New(errkind.Conflict, "hsm_key_unsafe", "hsm: key refused")
	// ErrDecrypt means the HSM rejected a ciphertext: wrong key, wrong
	// associated data, or tampered bytes.
	ErrDecrypt = errkind.New(errkind.Integrity, "integrity_error", "hsm: decryption failed")
	// ErrClosed is returned by every operation after Close.
	ErrClosed = errkind.New(errkind.Unavailable, "hsm_unavailable", "hsm: module closed")
	// ErrPINMissing means Config.PIN is empty: Open refuses before calling
	// C_Login, which would answer with a misleading CKR_ARGUMENTS_BAD.
	ErrPINMissing = errkind.New(errkind.Unavailable, "hsm_unavailable", "hsm: no PIN configured")
	// ErrLibrary means the PKCS#11 library could not be loaded (no such
	// file, or not a PKCS#11 module): a configuration error, not an outage.
	ErrLibrary = errkind.New(errkind.Unavailable, "hsm_unavailable", "hsm: cannot load the PKCS#11 library")
	// ErrPINRejected matches an *Error whose return code means the token
	// refused the PIN itself (CKR_PIN_INCORRECT, CKR_PIN_LOCKED and the
	// like). Trying again with the same PIN cannot succeed and counts
	// against the token's failed-login limit, so callers must not retry.
	ErrPINRejected = errkind.New(errkind.Unavailable, "hsm_unavailable", "hsm: PIN rejected")
)

// Error is a PKCS#11 failure: the operation and the library's return code.
// Its message names the code (e.g. "pkcs11 login: CKR_PIN_INCORRECT") and
// carries nothing else, so no PIN or key material can reach it.
type Error struct {
	Op string
	RV pkcs11.Error
}

// Kind: the HSM is unreachable or refusing; nothing was done, retry later.
func (e *Error) Kind() errkind.Kind { return errkind.Unavailable }

// ErrorCode is the API code of every PKCS#11 failure.
func (e *Error) ErrorCode() string { return "hsm_unavailable" }

func (e *Error) Error() string { return "pkcs11 " + e.Op + ": " + rvName(e.RV) }

// Unwrap lets errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)) and
// errors.Is(err, ErrUnavailable) match.
func (e *Error) Unwrap() []error { return []error{e.RV, ErrUnavailable} }

// Is matches ErrPINRejected for the return codes of a refused PIN.
func (e *Error) Is(target error) bool {
	return target == ErrPINRejected && pinRejected(e.RV)
}

func pinRejected(rv pkcs11.Error) bool {
	switch rv {
	case pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_LOCKED, pkcs11.CKR_PIN_EXPIRED,
		pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE:
		return true
	}
	return false
}

// rvName extracts "CKR_..." from the library's "pkcs11: 0xA0: CKR_..." text.
func rvName(rv pkcs11.Error) string {
	s := rv.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s[i+2:], "CKR_") {
		return s[i+2:]
	}
	return fmt.Sprintf("CKR_0x%X", uint(rv))
}

// wrapRV turns a miekg/pkcs11 error into *Error; nil stays nil.
func wrapRV(op string, err error) error {
	if err == nil {
		return nil
	}
	var rv pkcs11.Error
	if errors.As(err, &rv) {
		return &Error{Op: op, RV: rv}
	}
	return fmt.Errorf("pkcs11 %s: %w", op, err)
}

// rvOf returns the PKCS#11 return code inside err, if any.
func rvOf(err error) (pkcs11.Error, bool) {
	var rv pkcs11.Error
	ok := errors.As(err, &rv)
	return rv, ok
}

// Gone reports return codes after which the module must be opened again
// rather than only given a new session: the device or token went away,
// the library lost its state, or the token logged us out.
func Gone(err error) bool {
	rv, ok := rvOf(err)
	if !ok {
		return errors.Is(err, ErrTokenNotFound) || errors.Is(err, ErrClosed)
	}
	switch rv {
	case pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_TOKEN_NOT_RECOGNIZED, pkcs11.CKR_USER_NOT_LOGGED_IN:
		return true
	}
	return false
}
