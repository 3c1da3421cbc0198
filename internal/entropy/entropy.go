// Package entropy produces the randomness for critical security parameters:
// the OS CSPRNG mixed with an HSM's generator, under continuous health tests.
package entropy

import "github.com/moonvault/moonvault/internal/errkind"

// ErrUnavailable means no CSP may be generated now: the HSM source failed or
// a health test tripped. Callers fail closed and answer 503
// entropy_unavailable, also when the cause in the chain is an HSM error
// (the client learns that no key could be generated; the log names the
// cause); generation resumes once the source is healthy.
var ErrUnavailable = errkind.New(errkind.Unavailable, "entropy_unavailable", "entropy source unavailable; no key was generated")
