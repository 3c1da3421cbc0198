package cli

import (
	"runtime/debug"
	"testing"
)

// The server collects at serverGCPercent unless GOGC says otherwise.
func TestTuneGC(t *testing.T) {
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	for _, tc := range []struct {
		name string
		gogc string
		want int
	}{
		{"GOGC unset", "", serverGCPercent},
		{"GOGC set", "50", 77},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(77) // as the runtime would have from GOGC
			tuneGC(func(k string) string {
				if k == "GOGC" {
					return tc.gogc
				}
				return ""
			})
			if got := debug.SetGCPercent(77); got != tc.want {
				t.Fatalf("GC percent %d, want %d", got, tc.want)
			}
		})
	}
}
