package hsm

import (
	"errors"
	"fmt"
	"strings"

	"github.com/moonvault/moonvault/internal/errkind"

	"github.com/miekg/pkcs11"
)

var (
	// ErrTokenNotFound means no token with the configured label or slot.
	ErrTokenNotFound = errkind.New(errkind.Unavailable, "hsm_unavailable", "hsm: token not found")
	// ErrKeyNotFound means no secret key with the label on the token.
	ErrKeyNotFound = errkind.New(errkind.Unavailable, "hsm_unavailable", "hsm: key not found")
	// ErrDecrypt means the HSM rejected a ciphertext: wrong key, wrong
	// associated data, or tampered bytes.
	ErrDecrypt = errkind.New(errkind.Integrity, "integrity_error", "hsm: decryption failed")
	// ErrClosed is returned by every operation after Close.
	ErrClosed = errkind.New(errkind.Unavailable, "hsm_unavailable", "hsm: module closed")
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

// Unwrap lets errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)) match.
func (e *Error) Unwrap() error { return e.RV }

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
