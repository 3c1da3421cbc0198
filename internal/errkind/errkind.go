// Package errkind gives domain errors a kind (after upspin.io/errors): a
// handful of categories that say what sort of failure an error is, so that
// the HTTP edge maps kinds to statuses without knowing which package failed.
//
// Domain packages declare their sentinels with New, or wrap a cause with
// Wrap; errors.Is keeps working on the sentinels, and Of finds the kind of
// any error chain. A *Field error names the request field that is wrong.
package errkind

import (
	"fmt"
	"time"
)

// Kind is the category of a failure.
type Kind uint8

// The kinds. Other is the zero value: no kind was given (a bug, a 500).
const (
	Other           Kind = iota
	Invalid              // the request is malformed or violates a rule (400)
	Unauthenticated      // missing or bad credentials (401)
	Denied               // authenticated, but not allowed (403)
	NotFound             // the thing does not exist, or is hidden (404)
	Conflict             // the current state does not allow it (409)
	TooLarge             // a size limit was exceeded (413)
	RateLimited          // too many attempts (429)
	Unavailable          // a dependency is down; retry later (503)
	Sealed               // the vault is sealed or not ready (503)
	Integrity            // stored data failed authentication (500, logged)
	Unsupported          // this server does not offer the operation (501)
)

var names = [...]string{"other", "invalid", "unauthenticated", "denied", "not_found", "conflict",
	"too_large", "rate_limited", "unavailable", "sealed", "integrity", "unsupported"}

func (k Kind) String() string {
	if int(k) < len(names) {
		return names[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Error is an error with a kind. Code, when set, is the API code the edge
// answers with (snake_case); empty means the edge picks the kind's default.
type Error struct {
	Kind Kind
	Code string
	Msg  string
	Err  error // the cause, if any
}

func (e *Error) Error() string {
	switch {
	case e.Msg == "" && e.Err != nil:
		return e.Err.Error()
	case e.Err != nil:
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// New returns a sentinel of kind k. code may be empty.
func New(k Kind, code, msg string) error { return &Error{Kind: k, Code: code, Msg: msg} }

// Wrap returns err with kind k, keeping err in the chain. A nil err gives nil.
func Wrap(k Kind, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: k, Err: err}
}

// Field is invalid input that names the offending field, with a JSON path
// for nested values ("message.to.wallets[1]"). It is of kind Invalid unless
// K says otherwise; Sentinel, when set, is matched by errors.Is.
type Field struct {
	Name     string
	Msg      string
	Code     string // API code; default "invalid_request"
	K        Kind   // default Invalid
	Sentinel error
}

func (e *Field) Error() string { return "invalid " + e.Name + ": " + e.Msg }

// Unwrap lets errors.Is see the sentinel.
func (e *Field) Unwrap() error { return e.Sentinel }

// FieldErr returns a *Field of kind Invalid.
func FieldErr(name, msg string) *Field { return &Field{Name: name, Msg: msg} }

// Of returns the kind of the first error in err's chain that has one, or
// Other. Both *Error and *Field carry kinds, and so does any error with a
// `Kind() Kind` method.
func Of(err error) Kind {
	for err != nil {
		switch e := err.(type) {
		case *Error:
			if e.Kind != Other {
				return e.Kind
			}
		case *Field:
			if e.K != Other {
				return e.K
			}
			return Invalid
		case interface{ Kind() Kind }:
			if k := e.Kind(); k != Other {
				return k
			}
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if k := Of(e); k != Other {
					return k
				}
			}
			return Other
		default:
			return Other
		}
	}
	return Other
}

// CodeOf returns the API code of the outermost error in err's chain that
// names one, or "". *Error and *Field carry codes, and so does any error
// with an `ErrorCode() string` method.
func CodeOf(err error) string {
	code, _ := find(err, func(e error) (string, bool) {
		switch e := e.(type) {
		case *Error:
			return e.Code, e.Code != ""
		case *Field:
			return e.Code, e.Code != ""
		case interface{ ErrorCode() string }:
			c := e.ErrorCode()
			return c, c != ""
		}
		return "", false
	})
	return code
}

// RetryAfter returns how long to wait before trying again, when an error in
// err's chain says (rate limits): any error with a `RetryIn() time.Duration`
// method.
func RetryAfter(err error) (time.Duration, bool) {
	return find(err, func(e error) (time.Duration, bool) {
		if r, ok := e.(interface{ RetryIn() time.Duration }); ok {
			return r.RetryIn(), true
		}
		return 0, false
	})
}

// Message returns the message of the sentinel that declared err's code:
// the Msg of the outermost *Error or *Field with a code, without its cause
// (which may carry internals). ok is false when none has a code.
func Message(err error) (string, bool) {
	return find(err, func(e error) (string, bool) {
		switch e := e.(type) {
		case *Error:
			return e.Msg, e.Code != "" && e.Msg != ""
		case *Field:
			return e.Error(), e.Code != ""
		}
		return "", false
	})
}

// find walks err's chain outermost first (depth first through joined
// errors) and returns the first value f accepts.
func find[T any](err error, f func(error) (T, bool)) (T, bool) {
	var zero T
	for err != nil {
		if v, ok := f(err); ok {
			return v, true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if v, ok := find(e, f); ok {
					return v, true
				}
			}
			return zero, false
		default:
			return zero, false
		}
	}
	return zero, false
}

// Is reports whether err has kind k.
func Is(err error, k Kind) bool { return Of(err) == k }
