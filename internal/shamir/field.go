package shamir

// Arithmetic in GF(2^8) with the AES reduction polynomial
// x^8 + x^4 + x^3 + x + 1 (0x11b, FIPS-197 section 4.2), the field Vault's
// shamir package uses, so shares are interchangeable with Vault's format.
//
// Every operation runs in constant time: no branch and no table lookup
// depends on an operand, because the operands are secret bytes and the
// coefficients that hide them (cache-timing attacks on log/exp tables).

// add is addition (and subtraction) in GF(2^8).
func add(a, b byte) byte { return a ^ b }

// mul multiplies by shift-and-add; masks replace the data-dependent branches
// (FIPS-197 section 4.2.1, xtime).
func mul(a, b byte) byte {
	var r byte
	for range 8 {
		r ^= -(b & 1) & a
		b >>= 1
		a = (a << 1) ^ (-(a >> 7) & 0x1b)
	}
	return r
}

// inv returns the multiplicative inverse, a^254 = a^-1 since a^255 = 1 for
// a != 0; inv(0) is 0. The exponent is fixed, so the sequence of
// multiplications is the same for every input.
func inv(a byte) byte {
	b := mul(a, a) // a^2
	r := b
	for range 6 {
		b = mul(b, b) // a^4, a^8, ..., a^128
		r = mul(r, b)
	}
	return r // a^(2+4+...+128) = a^254
}

// div returns a / b; b must not be 0 (callers guarantee distinct non-zero x).
func div(a, b byte) byte { return mul(a, inv(b)) }
