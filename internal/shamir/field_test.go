package shamir

import "testing"

// refMul is an independent reference: log/exp tables built from the
// generator 0x03 by repeated xtime, as in FIPS-197.
type refField struct {
	exp [510]byte
	log [256]int
}

func newRefField() *refField {
	f := &refField{}
	v := byte(1)
	for i := range 255 {
		f.exp[i] = v
		f.log[v] = i
		x2 := v << 1
		if v&0x80 != 0 {
			x2 ^= 0x1b
		}
		v ^= x2
	}
	for i := 255; i < 510; i++ {
		f.exp[i] = f.exp[i-255]
	}
	return f
}

func (f *refField) mul(a, b byte) byte {
	if a == 0 || b == 0 {
		return 0
	}
	return f.exp[f.log[a]+f.log[b]]
}

func TestFieldKnownAnswers(t *testing.T) {
	// FIPS-197 section 4.2: {57}*{83} = {c1}, {57}*{13} = {fe};
	// section 5.1.1 S-box derivation: {53}^-1 = {ca}.
	cases := []struct{ a, b, want byte }{
		{0x57, 0x83, 0xc1}, {0x57, 0x13, 0xfe}, {0x53, 0xca, 0x01},
		{3, 7, 9}, {0, 0xff, 0}, {1, 0xab, 0xab},
	}
	for _, c := range cases {
		if got := mul(c.a, c.b); got != c.want {
			t.Errorf("mul(%#x, %#x) = %#x, want %#x", c.a, c.b, got, c.want)
		}
	}
	if got := inv(0x53); got != 0xca {
		t.Errorf("inv(0x53) = %#x, want 0xca", got)
	}
	if got := inv(0); got != 0 {
		t.Errorf("inv(0) = %#x, want 0", got)
	}
}

func TestFieldMatchesReferenceExhaustive(t *testing.T) {
	ref := newRefField()
	for a := range 256 {
		for b := range 256 {
			x, y := byte(a), byte(b)
			if got, want := mul(x, y), ref.mul(x, y); got != want {
				t.Fatalf("mul(%#x, %#x) = %#x, reference %#x", x, y, got, want)
			}
			if mul(x, y) != mul(y, x) {
				t.Fatalf("mul not commutative at %#x, %#x", x, y)
			}
			if y != 0 && mul(div(x, y), y) != x {
				t.Fatalf("div(%#x, %#x) * %#x != %#x", x, y, y, x)
			}
		}
	}
}

func TestFieldInverseExhaustive(t *testing.T) {
	seen := map[byte]bool{}
	for a := 1; a < 256; a++ {
		i := inv(byte(a))
		if mul(byte(a), i) != 1 {
			t.Fatalf("%#x * inv = %#x, want 1", a, mul(byte(a), i))
		}
		if seen[i] {
			t.Fatalf("inv not injective at %#x", a)
		}
		seen[i] = true
	}
}

// TestFieldAxiomsExhaustive checks associativity and distributivity for
// every triple (2^24 of them).
func TestFieldAxiomsExhaustive(t *testing.T) {
	if testing.Short() {
		t.Skip("exhaustive 2^24 triples; run without -short")
	}
	for a := range 256 {
		for b := range 256 {
			x, y := byte(a), byte(b)
			xy := mul(x, y)
			for c := range 256 {
				z := byte(c)
				if mul(xy, z) != mul(x, mul(y, z)) {
					t.Fatalf("associativity fails at %#x %#x %#x", x, y, z)
				}
				if mul(x, add(y, z)) != add(xy, mul(x, z)) {
					t.Fatalf("distributivity fails at %#x %#x %#x", x, y, z)
				}
			}
		}
	}
}
