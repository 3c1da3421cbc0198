package fips

import (
	"os"
	"strings"
	"testing"
)

// TestMode: the mode follows GODEBUG=fips140 as the process was started
// (CI runs the suite both without it and with fips140=only).
func TestMode(t *testing.T) {
	want := "off"
	for _, kv := range strings.Split(os.Getenv("GODEBUG"), ",") {
		if v, ok := strings.CutPrefix(kv, "fips140="); ok && (v == "on" || v == "only") {
			want = v
		}
	}
	if got := Mode(); got != want {
		t.Fatalf("Mode() = %q with GODEBUG=%q, want %q", got, os.Getenv("GODEBUG"), want)
	}
	err := Check(true)
	if (want == "off") != (err == ErrRequired) {
		t.Fatalf("Check(true) = %v in mode %s", err, want)
	}
	if err := Check(false); err != nil {
		t.Fatalf("Check(false) = %v", err)
	}
	ran := false
	Outside(func() { ran = true })
	if !ran {
		t.Fatal("Outside did not run f")
	}
}
