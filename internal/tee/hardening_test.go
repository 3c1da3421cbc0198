package tee

import "testing"

// TestHardeningComplete: require_hardening starts the server only when
// every measure is in force; one missing is incomplete.
func TestHardeningComplete(t *testing.T) {
	for _, tc := range []struct {
		h    Hardening
		want bool
	}{
		{Hardening{CoreDumpsDisabled: true, NotDumpable: true, MemoryLocked: true}, true},
		{Hardening{CoreDumpsDisabled: true, NotDumpable: true}, false},
		{Hardening{NotDumpable: true, MemoryLocked: true}, false},
		{Hardening{CoreDumpsDisabled: true, MemoryLocked: true}, false},
		{Hardening{}, false},
	} {
		if got := tc.h.Complete(); got != tc.want {
			t.Errorf("%+v.Complete() = %v, want %v", tc.h, got, tc.want)
		}
	}
}
