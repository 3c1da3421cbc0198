// Package shamir implements Shamir's secret sharing over GF(2^8) (Shamir,
// "How to share a secret", CACM 1979), byte by byte, in Vault's share
// format: the y values for every secret byte followed by one x byte, so a
// share is one byte longer than the secret.
//
// Threshold 1 is accepted only together with parts 1 (Vault's "1 of 1"
// unseal key): the polynomial is the constant secret, so that one share is
// the secret followed by a random x byte, and Combine of exactly one share
// returns its y bytes. Shares carry no integrity check: combining the wrong
// or too few shares yields a wrong value, not an error, so callers must
// authenticate the result (the barrier does, with GCM over the keyring).
package shamir

import (
	"fmt"
	"io"

	"github.com/moonvault/moonvault/internal/errkind"
)

// MaxParts is the largest number of shares: x coordinates are the 255
// non-zero field elements.
const MaxParts = 255

var (
	// ErrInvalidParams reports parts/threshold out of range.
	ErrInvalidParams = errkind.New(errkind.Invalid, "", "shamir: invalid parameters")
	// ErrEmptySecret reports a zero-length secret.
	ErrEmptySecret = errkind.New(errkind.Invalid, "", "shamir: secret is empty")
	// ErrTooFewShares reports Combine called with no share.
	ErrTooFewShares = errkind.New(errkind.Invalid, "", "shamir: too few shares")
	// ErrShareTooShort reports a share shorter than 2 bytes (one y, one x).
	ErrShareTooShort = errkind.New(errkind.Invalid, "", "shamir: share too short")
	// ErrShareLengthMismatch reports shares of unequal length.
	ErrShareLengthMismatch = errkind.New(errkind.Invalid, "", "shamir: shares differ in length")
	// ErrZeroX reports a share whose x coordinate is 0 (it would be the
	// secret itself; no valid share has it).
	ErrZeroX = errkind.New(errkind.Invalid, "", "shamir: share has x coordinate 0")
	// ErrDuplicateX reports two shares with the same x coordinate.
	ErrDuplicateX = errkind.New(errkind.Invalid, "", "shamir: duplicate share x coordinate")
)

// Split divides secret into parts shares, any threshold of which recover it.
// It requires 2 <= threshold <= parts <= 255, or threshold == parts == 1.
// Every coefficient and x coordinate comes from rand, read with io.ReadFull;
// if rand fails, Split returns its error (wrapped) and no share.
func Split(secret []byte, parts, threshold int, rand io.Reader) ([][]byte, error) {
	switch {
	case len(secret) == 0:
		return nil, ErrEmptySecret
	case parts < 1 || parts > MaxParts:
		return nil, fmt.Errorf("%w: parts must be between 1 and %d, got %d", ErrInvalidParams, MaxParts, parts)
	case threshold < 1 || threshold > parts:
		return nil, fmt.Errorf("%w: threshold must be between 1 and parts (%d), got %d", ErrInvalidParams, parts, threshold)
	case threshold == 1 && parts != 1:
		return nil, fmt.Errorf("%w: threshold 1 is only allowed with parts 1 (every share would be the secret)", ErrInvalidParams)
	case rand == nil:
		return nil, fmt.Errorf("%w: rand is nil", ErrInvalidParams)
	}

	xs, err := randomXs(rand, parts)
	if err != nil {
		return nil, err
	}

	// coeffs[j*deg : (j+1)*deg] are the coefficients of x^1..x^deg of the
	// polynomial for secret byte j. They are uniform, zero included: that is
	// what makes any threshold-1 shares consistent with every secret equally.
	deg := threshold - 1
	coeffs := make([]byte, deg*len(secret))
	defer clear(coeffs)
	if _, err := io.ReadFull(rand, coeffs); err != nil {
		return nil, fmt.Errorf("shamir: reading polynomial coefficients: %w", err)
	}

	shares := make([][]byte, parts)
	for i, x := range xs {
		share := make([]byte, len(secret)+1)
		for j, s := range secret {
			share[j] = evaluate(s, coeffs[j*deg:(j+1)*deg], x)
		}
		share[len(secret)] = x
		shares[i] = share
	}
	return shares, nil
}

// evaluate returns s + c[0]*x + c[1]*x^2 + ... by Horner's rule.
func evaluate(s byte, c []byte, x byte) byte {
	var y byte
	for i := len(c) - 1; i >= 0; i-- {
		y = add(mul(y, x), c[i])
	}
	return add(mul(y, x), s)
}

// randomXs returns n distinct non-zero x coordinates: the first n entries of
// a uniform shuffle of 1..255 (Fisher-Yates with rejection sampling, so no
// modulo bias).
func randomXs(rand io.Reader, n int) ([]byte, error) {
	var perm [MaxParts]byte
	for i := range perm {
		perm[i] = byte(i + 1)
	}
	src := byteSource{r: rand}
	defer clear(src.buf[:])
	for i := range n {
		span := MaxParts - i // choose j uniformly in [i, 255)
		limit := 256 - 256%span
		for {
			b, err := src.next()
			if err != nil {
				return nil, fmt.Errorf("shamir: reading x coordinates: %w", err)
			}
			if int(b) < limit {
				j := i + int(b)%span
				perm[i], perm[j] = perm[j], perm[i]
				break
			}
		}
	}
	xs := make([]byte, n)
	copy(xs, perm[:n])
	return xs, nil
}

// byteSource hands out bytes from rand, read in blocks.
type byteSource struct {
	r   io.Reader
	buf [64]byte
	pos int
	n   int
}

func (s *byteSource) next() (byte, error) {
	if s.pos == s.n {
		want := len(s.buf)
		if _, err := io.ReadFull(s.r, s.buf[:want]); err != nil {
			return 0, err
		}
		s.pos, s.n = 0, want
	}
	b := s.buf[s.pos]
	s.pos++
	return b, nil
}

// Combine recovers the secret from shares made by Split. With at least
// threshold shares the result is the secret; with fewer it is an unrelated
// value (shares are not authenticated). Exactly one share is accepted for
// the 1-of-1 case and returns its y bytes.
func Combine(shares [][]byte) ([]byte, error) {
	if len(shares) == 0 {
		return nil, ErrTooFewShares
	}
	size := len(shares[0])
	var seen [256]bool
	xs := make([]byte, len(shares))
	for i, share := range shares {
		switch {
		case len(share) < 2:
			return nil, fmt.Errorf("%w: share %d has %d bytes", ErrShareTooShort, i, len(share))
		case len(share) != size:
			return nil, fmt.Errorf("%w: share %d has %d bytes, share 0 has %d", ErrShareLengthMismatch, i, len(share), size)
		}
		x := share[size-1]
		switch {
		case x == 0:
			return nil, fmt.Errorf("%w: share %d", ErrZeroX, i)
		case seen[x]:
			return nil, fmt.Errorf("%w: share %d", ErrDuplicateX, i)
		}
		seen[x] = true
		xs[i] = x
	}

	secret := make([]byte, size-1)
	if len(shares) == 1 {
		copy(secret, shares[0][:size-1])
		return secret, nil
	}

	// Lagrange interpolation at x = 0: secret = sum_i y_i * l_i(0) with
	// l_i(0) = prod_{j != i} x_j / (x_j - x_i); subtraction is XOR.
	for i, share := range shares {
		basis := byte(1)
		for j, xj := range xs {
			if j != i {
				basis = mul(basis, div(xj, add(xj, xs[i])))
			}
		}
		for k := range secret {
			secret[k] = add(secret[k], mul(share[k], basis))
		}
	}
	return secret, nil
}
