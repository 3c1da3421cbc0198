package entropy

import (
	"bytes"
	"crypto/rand"
	"math"
	"testing"
)

// critBinom is SP 800-90B's CRITBINOM(n, p, 1-α): the smallest k with
// P(X <= k) >= 1-α for X ~ Binomial(n, p), found by summing the upper tail.
func critBinom(n int, p float64, alphaLog2 float64) int {
	alpha := math.Exp2(-alphaLog2)
	lg := func(x float64) float64 { v, _ := math.Lgamma(x); return v }
	tail := func(k int) float64 { // P(X > k)
		s := 0.0
		for j := k + 1; j <= n; j++ {
			s += math.Exp(lg(float64(n+1)) - lg(float64(j+1)) - lg(float64(n-j+1)) +
				float64(j)*math.Log(p) + float64(n-j)*math.Log1p(-p))
		}
		return s
	}
	k := 0
	for tail(k) > alpha {
		k++
	}
	return k
}

func TestCutoffs(t *testing.T) {
	if got := 1 + int(math.Ceil(alphaLog2/assumedH)); got != rctCutoff {
		t.Fatalf("RCT cutoff = %d, constant %d", got, rctCutoff)
	}
	if got := 1 + critBinom(aptWindow, math.Exp2(-assumedH), alphaLog2); got != aptCutoff {
		t.Fatalf("APT cutoff = %d, constant %d", got, aptCutoff)
	}
	// SP 800-90B Table 2 (W = 512, α = 2^-20) as a check of critBinom.
	for _, c := range []struct {
		h    float64
		want int
	}{{1, 311}, {2, 177}, {4, 62}, {8, 13}} {
		if got := 1 + critBinom(512, math.Exp2(-c.h), 20); got != c.want {
			t.Errorf("Table 2 H=%v: %d, want %d", c.h, got, c.want)
		}
	}
}

func TestHealthTests(t *testing.T) {
	good := make([]byte, 1<<16)
	rand.Read(good)
	tests := []struct {
		name string
		in   []byte
		fail bool
	}{
		{"random", good, false},
		{"stuck zero", make([]byte, 64), true},
		{"ten repeats pass", append([]byte{1, 2}, bytes.Repeat([]byte{7}, rctCutoff-1)...), false},
		{"eleven repeats fail", bytes.Repeat([]byte{7}, rctCutoff), true},
		// Alternating two values never repeats, but one value fills half
		// the window: only the APT catches it.
		{"alternating", bytes.Repeat([]byte{0xAA, 0x55}, aptWindow), true},
		{"just below APT cutoff", aptPattern(aptCutoff - 1), false},
		{"APT cutoff", aptPattern(aptCutoff), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h healthTests
			err := h.feed(tc.in)
			if (err != nil) != tc.fail {
				t.Fatalf("feed: err = %v, want failure %v", err, tc.fail)
			}
		})
	}
}

// aptPattern is one window in which the first byte occurs n times, spread
// out so that the RCT never trips.
func aptPattern(n int) []byte {
	b := make([]byte, aptWindow)
	for i := range b {
		b[i] = byte(1 + i%200)
	}
	for i := 0; i < n; i++ {
		b[i*(aptWindow/n)] = 0
	}
	return b
}

func TestMixChangesWithEitherInput(t *testing.T) {
	osb, hsmb := make([]byte, drawSize), make([]byte, drawSize)
	rand.Read(osb)
	rand.Read(hsmb)
	base := make([]byte, 32)
	if err := mix(base, osb, hsmb); err != nil {
		t.Fatal(err)
	}
	for i := range drawSize {
		for _, which := range []string{"os", "hsm"} {
			o, h := bytes.Clone(osb), bytes.Clone(hsmb)
			if which == "os" {
				o[i] ^= 1
			} else {
				h[i] ^= 1
			}
			out := make([]byte, 32)
			mix(out, o, h)
			if bytes.Equal(out, base) {
				t.Fatalf("flipping %s byte %d did not change the output", which, i)
			}
		}
	}
	// Swapping the inputs is a different IKM too (the order is fixed).
	sw := make([]byte, 32)
	mix(sw, hsmb, osb)
	if bytes.Equal(sw, base) {
		t.Fatal("mix is symmetric in its inputs")
	}
}

// A constant (hostile) HSM input still yields OS-quality output.
func TestMixConstantHSM(t *testing.T) {
	const draws = 10000
	hsmb := bytes.Repeat([]byte{0x42}, drawSize)
	seen := make(map[[32]byte]bool, draws)
	ones := 0
	osb := make([]byte, drawSize)
	for range draws {
		rand.Read(osb)
		var out [32]byte
		if err := mix(out[:], osb, hsmb); err != nil {
			t.Fatal(err)
		}
		if seen[out] {
			t.Fatal("repeated output")
		}
		seen[out] = true
		for _, b := range out {
			for ; b != 0; b &= b - 1 {
				ones++
			}
		}
	}
	// n bits: mean n/2, σ = √n/2 (800 for 2,560,000 bits); 7σ. (This
	// bound was 2000 ones, written for 320,000 bits: 2.5σ, so the test
	// failed about once in 80 runs.)
	n := draws * 256
	if sigma := math.Sqrt(float64(n)) / 2; math.Abs(float64(ones)-float64(n)/2) > 7*sigma {
		t.Fatalf("monobit: %d ones of %d bits (mean %d, σ %.0f)", ones, n, n/2, sigma)
	}
}
