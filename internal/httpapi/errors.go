package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/signpolicy"
)

// Handler errors. Each is an errkind value, like every domain error, so the
// one mapping below answers them; a field error names the field.
var errUnauthenticated = errkind.New(errkind.Unauthenticated, "unauthenticated", "missing, invalid or expired credentials")

func errInvalid(code, msg string) error { return errkind.New(errkind.Invalid, code, msg) }
func errField(name, msg string) error   { return &errkind.Field{Name: name, Msg: msg} }
func errNotFound(msg string) error      { return errkind.New(errkind.NotFound, "not_found", msg) }
func errForbidden(msg string) error     { return errkind.New(errkind.Denied, "forbidden", msg) }

var errTooLarge = errkind.New(errkind.TooLarge, "payload_too_large", "request body is larger than the limit")

// statuses, default codes and default messages per kind.
var kinds = [...]struct {
	status        int
	code, message string
}{
	errkind.Other:           {500, "internal", "internal error"},
	errkind.Invalid:         {400, "invalid_request", "invalid request"},
	errkind.Unauthenticated: {401, "unauthenticated", "missing, invalid or expired credentials"},
	errkind.Denied:          {403, "forbidden", "not allowed"},
	errkind.NotFound:        {404, "not_found", "not found"},
	errkind.Conflict:        {409, "conflict", "the current state does not allow this"},
	errkind.TooLarge:        {413, "payload_too_large", "request is larger than the limit"},
	errkind.RateLimited:     {429, "rate_limited", "too many requests; retry later"},
	errkind.Unavailable:     {503, "unavailable", "a dependency is unavailable; retry later"},
	errkind.Sealed:          {503, "sealed", "the vault is sealed"},
	errkind.Integrity:       {500, "integrity_error", "stored data failed its integrity check"},
	errkind.Unsupported:     {501, "not_supported", "this node does not offer this operation"},
}

// fixedMessages are the answers for codes whose declaring error speaks to
// operators rather than clients (or must not say which check failed).
var fixedMessages = map[string]string{
	"invalid_credentials": "invalid username, password or code",
	"unauthenticated":     "missing, invalid or expired credentials",
	"hsm_unavailable":     "the HSM is unavailable; retry later",
	"timeout":             "the request timed out",
	"internal":            "internal error",
	"integrity_error":     "stored data failed its integrity check",
}

// failure is what the client is told.
type failure struct {
	status        int
	code, message string
	field         string
	header        http.Header
	policy        *deniedBy
}

// classify turns any error into the answer the client sees: the one place
// that maps errors to statuses and codes. It reads kinds, never packages:
// the status from the kind, the code from the error (or the kind's
// default). 4xx messages are the domain error's own text, written for the
// caller; 401 and 5xx messages are fixed, so no internal detail (a path, a
// connection string) reaches the client.
func classify(err error) failure {
	k := errkind.Of(err)
	if k == errkind.Other && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return failure{status: 503, code: "timeout", message: fixedMessages["timeout"]}
	}
	if int(k) >= len(kinds) {
		k = errkind.Other
	}
	def := kinds[k]
	f := failure{status: def.status, code: errkind.CodeOf(err)}
	if f.code == "" || k == errkind.Other {
		f.code = def.code
	}
	switch {
	case fixedMessages[f.code] != "":
		f.message = fixedMessages[f.code]
	case f.status >= 500 || k == errkind.Unauthenticated || k == errkind.NotFound:
		// The declaring sentinel's own text, never its cause.
		if m, ok := errkind.Message(err); ok {
			f.message = m
		} else {
			f.message = def.message
		}
	default:
		f.message = err.Error()
	}
	var fe *errkind.Field
	if f.status < 500 && errors.As(err, &fe) {
		f.field = fe.Name
	}
	var de *signpolicy.DeniedError
	if errors.As(err, &de) {
		f.policy = &deniedBy{ID: de.Match.Policy, Name: de.Match.Name, Reason: de.Match.Reason}
	}
	if d, ok := errkind.RetryAfter(err); ok {
		secs := max(1, int(d.Seconds()+0.999))
		f.header = http.Header{"Retry-After": {strconv.Itoa(secs)}}
		if k == errkind.RateLimited {
			f.message = "too many failed attempts; retry in " + strconv.Itoa(secs) + "s"
		}
	}
	return f
}
