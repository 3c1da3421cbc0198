// Package vectors reads and regenerates the known-answer vectors of tests:
// JSON files under a package's testdata/, named good_* or fail_* for the
// outcome they expect (shared/STYLE.md), and the hex strings in them.
package vectors

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

// Read decodes the JSON file at path (relative to the test's package,
// "testdata/good_x.json") into v.
func Read(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path) // #nosec G304 -- a test names its own vector file
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// Hex decodes a hex string of a vector.
func Hex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Regenerate rewrites the JSON file at path as {"cases": cases, "source":
// source} when MV_WRITE_TESTDATA=1, for vectors a test builds from its own
// cases; otherwise it leaves the file as it is.
func Regenerate(t testing.TB, path, source string, cases any) {
	t.Helper()
	if os.Getenv("MV_WRITE_TESTDATA") != "1" {
		return
	}
	b, err := json.MarshalIndent(map[string]any{"source": source, "cases": cases}, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
}
