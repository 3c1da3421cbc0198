package loadgen

import (
	"math/bits"
	"time"
)

// histogram records latencies in microseconds in fixed log-linear buckets:
// exact below 64 µs, then 32 buckets per power of two (≤ 3.2% error),
// up to about 2^40 µs. Fixed size, no allocation per sample.
type histogram struct {
	counts [64 + 40*32]int64
	total  int64
	max    time.Duration
}

func bucket(us uint64) int {
	if us < 64 {
		return int(us) // #nosec G115 -- us < 64
	}
	shift := bits.Len64(us) - 6                        // us>>shift is in [32, 64)
	i := 64 + (shift-1)*32 + int(us>>uint(shift)) - 32 // #nosec G115 -- us>>shift < 64
	return min(i, len(histogram{}.counts)-1)
}

// lowerBound is the smallest value, in µs, that falls in bucket i.
func lowerBound(i int) uint64 {
	if i < 64 {
		return uint64(i) // #nosec G115 -- 0 <= i < 64
	}
	k := i - 64
	return uint64(k%32+32) << uint(k/32+1)
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucket(uint64(d/time.Microsecond))]++
	h.total++
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// quantile returns the lower bound of the bucket holding the q-th sample.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := int64(q*float64(h.total) + 0.999999)
	rank = max(rank, 1)
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(lowerBound(i))*time.Microsecond, h.max) // #nosec G115 -- bucket bounds are below 2^40 µs
		}
	}
	return h.max
}
