package keypath

import (
	"errors"
	"strings"
	"testing"

	"github.com/moonvault/moonvault/internal/storage"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"wallet/accounts/alice/main", true},
		{"a", true},
		{" ~", true},
		{strings.Repeat("x", MaxLen), true},
		{"", false},
		{strings.Repeat("x", MaxLen+1), false},
		{"tab\there", false},
		{"nul\x00", false},
		{"del\x7f", false},
		{"caf\u00e9", false},
	}
	for _, tc := range tests {
		err := Check(tc.key)
		if (err == nil) != tc.ok {
			t.Errorf("Check(%q) = %v, want ok=%v", tc.key, err, tc.ok)
		}
		if err != nil && !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Check(%q) error %v does not wrap storage.ErrInvalidKey", tc.key, err)
		}
	}
	if err := CheckPrefix("prefix", ""); err != nil {
		t.Errorf("empty prefix rejected: %v", err)
	}
	if err := CheckPrefix("after", "\n"); err == nil || !strings.Contains(err.Error(), "after") {
		t.Errorf("CheckPrefix error %v does not name the field", err)
	}
}

func TestPrefixEnd(t *testing.T) {
	tests := map[string]string{"": "", "a": "b", "a/b": "a/c", "x~": "x\x7f"}
	for in, want := range tests {
		if got := PrefixEnd(in); got != want {
			t.Errorf("PrefixEnd(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzPrefixEnd checks that for any valid prefix and key, the key starts
// with the prefix exactly when it falls in [prefix, PrefixEnd(prefix)),
// which is what the PostgreSQL range scan relies on.
func FuzzPrefixEnd(f *testing.F) {
	f.Add("a/b", "a/bc")
	f.Add("a/b", "a/b")
	f.Add("~", "~~")
	f.Fuzz(func(t *testing.T, prefix, key string) {
		if Check(prefix) != nil || Check(key) != nil {
			return
		}
		end := PrefixEnd(prefix)
		inRange := key >= prefix && key < end
		if inRange != strings.HasPrefix(key, prefix) {
			t.Fatalf("prefix %q end %q key %q: in range %v", prefix, end, key, inRange)
		}
	})
}
