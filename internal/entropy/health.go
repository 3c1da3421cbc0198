package entropy

import "fmt"

// Continuous health tests on the HSM byte stream, NIST SP 800-90B §4.4,
// with one byte as one (non-binary) sample.
//
// Assumed min-entropy H = 4 bits per byte. An HSM claims full entropy
// (8 bits); assuming half of that keeps false alarms negligible even for a
// somewhat biased source, while a stuck or grossly failing source still
// trips within a few samples. False-positive probability α = 2^-40 per
// test (SP 800-90B recommends 2^-20 <= α <= 2^-40; stricter than the 2^-20
// minimum).
//
// Repetition Count Test, §4.4.1: C = 1 + ceil(-log2(α) / H)
//
//	= 1 + ceil(40 / 4) = 11 identical consecutive bytes fail.
//
// Adaptive Proportion Test, §4.4.2, window W = 512 (non-binary samples):
//
//	C = 1 + CRITBINOM(W, 2^-H, 1-α), the smallest k with
//	P(X <= k) >= 1 - 2^-40 for X ~ Binomial(512, 1/16), plus one = 78.
//
// TestCutoffs recomputes both from these formulas (and reproduces SP
// 800-90B Table 2 for α = 2^-20).
const (
	assumedH    = 4.0
	alphaLog2   = 40
	rctCutoff   = 11
	aptWindow   = 512
	aptCutoff   = 78
	startupSize = 1024 // §4.3: start-up tests over at least 1024 samples
)

// healthTests holds the RCT and APT state across draws: the tests run on
// the stream, not per draw. Not safe for concurrent use (the Mixer locks).
type healthTests struct {
	rctLast  byte
	rctCount int
	aptFirst byte
	aptCount int
	aptPos   int // samples seen in the current window; 0 = start a new one
	started  bool
}

func (h *healthTests) reset() { *h = healthTests{} }

// feed runs both tests over b and reports the first failure.
func (h *healthTests) feed(b []byte) error {
	for _, x := range b {
		// §4.4.1 Repetition Count Test.
		if h.rctCount > 0 && x == h.rctLast {
			h.rctCount++
			if h.rctCount >= rctCutoff {
				return fmt.Errorf("repetition count test failed: %d identical bytes (cutoff %d)", h.rctCount, rctCutoff)
			}
		} else {
			h.rctLast, h.rctCount = x, 1
		}
		// §4.4.2 Adaptive Proportion Test.
		if h.aptPos == 0 {
			h.aptFirst, h.aptCount, h.aptPos = x, 1, 1
			continue
		}
		if x == h.aptFirst {
			h.aptCount++
			if h.aptCount >= aptCutoff {
				return fmt.Errorf("adaptive proportion test failed: %d of %d bytes equal (cutoff %d)", h.aptCount, aptWindow, aptCutoff)
			}
		}
		h.aptPos++
		if h.aptPos == aptWindow {
			h.aptPos = 0
		}
	}
	return nil
}
