// Package keypath holds the key rules every storage backend enforces, so
// that the backends accept and order exactly the same keys.
package keypath

import (
	"fmt"

	"github.com/moonvault/moonvault/internal/storage"
)

// MaxLen bounds a key's length. It stays well below PostgreSQL's btree row
// limit (~2.7 kB) and bbolt's MaxKeySize, so both backends accept the same keys.
const MaxLen = 1024

// errInvalid is wrapped by Check's errors.
var errInvalid = storage.ErrInvalidKey

// Check reports whether key is a valid storage key: non-empty, at most
// MaxLen bytes of printable ASCII (0x20..0x7e), as storage.Backend documents.
// Printable ASCII keeps byte order and PostgreSQL's "C" collation identical.
func Check(key string) error {
	if key == "" {
		return fmt.Errorf("%w: key is empty", errInvalid)
	}
	if len(key) > MaxLen {
		return fmt.Errorf("%w: key is %d bytes, longer than %d", errInvalid, len(key), MaxLen)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("%w: key has a non-printable byte 0x%02x at offset %d", errInvalid, c, i)
		}
	}
	return nil
}

// CheckPrefix validates a List prefix or after bound: like a key, but it may be
// empty. Bytes outside printable ASCII could never match a stored key.
func CheckPrefix(name, p string) error {
	if p == "" {
		return nil
	}
	if err := Check(p); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// PrefixEnd returns the smallest string greater than every string that starts
// with prefix, or "" when there is none (empty prefix). Valid keys are
// printable ASCII, so incrementing the last byte never overflows.
func PrefixEnd(prefix string) string {
	if prefix == "" {
		return ""
	}
	b := []byte(prefix)
	b[len(b)-1]++
	return string(b)
}
