// Package hd derives keys from a BIP-39 mnemonic: the mnemonic and seed
// (BIP-39), secp256k1 keys and extended public keys (BIP-32), and Ed25519
// keys (SLIP-0010). It is pure: no storage, no randomness of its own (the
// caller supplies entropy), no HTTP. Every secret it returns is a
// secret.Bytes or secret.String the caller destroys.
package hd

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/moonvault/moonvault/internal/errkind"
)

// HardenedOffset is added to an index to make it hardened (BIP-32: i ≥ 2^31).
const HardenedOffset uint32 = 0x80000000

// MaxDepth bounds a path. BIP-32 allows 255 levels; no standard path uses
// more than six, and a long path is a request to burn CPU.
const MaxDepth = 16

// ErrInvalidPath is the kind of every path error.
var ErrInvalidPath = errkind.New(errkind.Invalid, "invalid_derivation_path", "invalid derivation path")

// Path is a BIP-32 derivation path: child indexes from the master key,
// hardened ones with HardenedOffset added.
type Path []uint32

// H returns i as a hardened index.
func H(i uint32) uint32 { return i | HardenedOffset }

// ParsePath parses "m/44'/60'/0'/0/7". It is strict: the path starts with
// "m", components are decimal without sign or leading zeros, below 2^31,
// hardened with a trailing ' (h and H are accepted as the same), and there
// is no empty component, trailing slash or white space.
func ParsePath(s string) (Path, error) {
	if s == "m" {
		return Path{}, nil
	}
	rest, ok := strings.CutPrefix(s, "m/")
	if !ok {
		return nil, fmt.Errorf(`%w: must start with "m/"`, ErrInvalidPath)
	}
	parts := strings.Split(rest, "/")
	if len(parts) > MaxDepth {
		return nil, fmt.Errorf("%w: deeper than %d levels", ErrInvalidPath, MaxDepth)
	}
	p := make(Path, len(parts))
	for i, c := range parts {
		idx, err := parseComponent(c)
		if err != nil {
			return nil, fmt.Errorf("%w: level %d: %s", ErrInvalidPath, i+1, err.Error())
		}
		p[i] = idx
	}
	return p, nil
}

type pathError string

func (e pathError) Error() string { return string(e) }

func parseComponent(c string) (uint32, error) {
	hard := false
	if n := len(c); n > 0 && (c[n-1] == '\'' || c[n-1] == 'h' || c[n-1] == 'H') {
		hard, c = true, c[:n-1]
	}
	if c == "" {
		return 0, pathError("empty index")
	}
	for i := 0; i < len(c); i++ {
		if c[i] < '0' || c[i] > '9' {
			return 0, pathError("not a decimal index")
		}
	}
	if len(c) > 1 && c[0] == '0' {
		return 0, pathError("leading zero")
	}
	v, err := strconv.ParseUint(c, 10, 32)
	if err != nil || uint32(v) >= HardenedOffset {
		return 0, pathError("index must be below 2^31 (use ' for hardened)")
	}
	idx := uint32(v) // #nosec G115 -- ParseUint bounded it to 32 bits
	if hard {
		idx = H(idx)
	}
	return idx, nil
}

// String renders the path with ' for hardened levels.
func (p Path) String() string {
	var b strings.Builder
	b.WriteString("m")
	for _, i := range p {
		b.WriteByte('/')
		b.WriteString(strconv.FormatUint(uint64(i&^HardenedOffset), 10))
		if i >= HardenedOffset {
			b.WriteByte('\'')
		}
	}
	return b.String()
}

// Child returns a copy of p with i appended.
func (p Path) Child(i uint32) Path {
	c := make(Path, len(p), len(p)+1)
	copy(c, p)
	return append(c, i)
}

// Hardened reports whether every level is hardened (SLIP-0010 Ed25519
// requires it).
func (p Path) Hardened() bool {
	for _, i := range p {
		if i < HardenedOffset {
			return false
		}
	}
	return true
}
