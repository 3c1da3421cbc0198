package audit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzVerify feeds arbitrary bytes to Verify, which parses files an
// attacker may have written: it must return a report or an error, never
// panic. Seeds are under testdata/fuzz/FuzzVerify.
func FuzzVerify(f *testing.F) {
	_, _, keys := testKeys()
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := Verify(bytes.NewReader(data), keys)
		if (rep == nil) == (err == nil) {
			t.Fatalf("Verify returned report %v and error %v", rep, err)
		}
		if _, err := Verify(bytes.NewReader(data), nil, VerifyOptions{AllowMidChainStart: true, MinSeq: 3}); err == nil && len(data) == 0 {
			t.Fatal("empty input verified")
		}
		lastCheckpoint(bytes.NewReader(data), int64(len(data)))
	})
}

// TestVerifyVectors runs the seed files as a table: a name starting with
// good_ must verify, fail_ must not.
func TestVerifyVectors(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzVerify")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, _, keys := testKeys()
	for _, e := range entries {
		t.Run(e.Name(), func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			_, arg, ok := strings.Cut(strings.TrimSpace(string(raw)), "\n")
			arg, ok2 := strings.CutPrefix(arg, "[]byte(")
			arg, ok3 := strings.CutSuffix(arg, ")")
			data, err := strconv.Unquote(arg)
			if !ok || !ok2 || !ok3 || err != nil {
				t.Fatalf("not a go test fuzz v1 []byte file: %v", err)
			}
			_, err = Verify(strings.NewReader(data), keys)
			switch {
			case strings.HasPrefix(e.Name(), "good_") && err != nil:
				t.Fatalf("want success: %v", err)
			case strings.HasPrefix(e.Name(), "fail_") && err == nil:
				t.Fatal("want a VerifyError")
			}
			var ve *VerifyError
			if err != nil && !errors.As(err, &ve) {
				t.Fatalf("error is not a *VerifyError: %v", err)
			}
		})
	}
}
