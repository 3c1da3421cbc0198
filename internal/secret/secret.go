// Package secret holds key material in a type that never prints itself and
// can be wiped.
package secret

import (
	"crypto/subtle"
	"log/slog"
)

// Bytes is secret material. Its String, GoString and LogValue forms are
// redacted so that formatting or logging one by accident reveals nothing.
type Bytes []byte

const redacted = "[redacted]"

func (Bytes) String() string               { return redacted }
func (Bytes) GoString() string             { return redacted }
func (Bytes) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (Bytes) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Destroy overwrites the bytes with zeros.
func (b Bytes) Destroy() { Wipe(b) }

// Equal compares in constant time.
func (b Bytes) Equal(o Bytes) bool { return subtle.ConstantTimeCompare(b, o) == 1 }

// Clone returns an independent copy.
func (b Bytes) Clone() Bytes {
	if b == nil {
		return nil
	}
	c := make(Bytes, len(b))
	copy(c, b)
	return c
}

// Wipe overwrites p with zeros. The built-in clear is not elided by the
// compiler for a slice that escapes, which key buffers always do.
func Wipe(p []byte) { clear(p) }

// String is a secret text such as a password, PIN or token.
type String string

func (String) String() string               { return redacted }
func (String) GoString() string             { return redacted }
func (String) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (String) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Reveal returns the underlying text for the one place that must use it.
func (s String) Reveal() string { return string(s) }
