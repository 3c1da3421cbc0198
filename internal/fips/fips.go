// Package fips reports and enforces Go's FIPS 140-3 mode (crypto/fips140):
// the fips140 field of the seal status and the fips_mode setting.
// docs/fips.md says what lies inside and outside the boundary.
package fips

import (
	"crypto/fips140"

	"github.com/moonvault/moonvault/internal/errkind"
)

// Mode is "off", "on" or "only": GODEBUG=fips140 as the process runs it
// ("only" refuses non-approved cryptography in the standard library).
func Mode() string {
	switch {
	case !fips140.Enabled():
		return "off"
	case fips140.Enforced():
		return "only"
	}
	return "on"
}

// ErrRequired is returned by Check when fips_mode is set and Go's FIPS
// 140-3 mode is off.
var ErrRequired = errkind.New(errkind.Invalid, "fips_required", "fips_mode is set but Go's FIPS 140-3 mode is off: start the server with GODEBUG=fips140=on (or =only), or build it with GOFIPS140=v1.0.0")

// Check enforces fips_mode: with required set, the process must run in
// FIPS 140-3 mode.
func Check(required bool) error {
	if required && !fips140.Enabled() {
		return ErrRequired
	}
	return nil
}

// Outside runs f with GODEBUG=fips140=only enforcement lifted, for the
// few algorithms that are outside the FIPS boundary on purpose and listed
// in docs/fips.md (TOTP's HMAC-SHA-1, which authenticator apps require by
// RFC 6238). Keep f as small as the one computation.
func Outside(f func()) { fips140.WithoutEnforcement(f) }
