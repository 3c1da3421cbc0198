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
		var ve *VerifyError
		switch {
		case err == nil && rep == nil:
			t.Fatal("Verify returned neither a report nor an error")
		case errors.As(err, &ve) && rep != nil:
			t.Fatalf("a tampered log came with a report: %v", err)
		case err != nil && rep != nil && !errors.Is(err, ErrUnverified):
			t.Fatalf("report with an error other than ErrUnverified: %v", err)
		case err != nil && rep == nil && errors.Is(err, ErrUnverified):
			t.Fatalf("ErrUnverified without a report: %v", err)
		}
		if _, err := Verify(bytes.NewReader(data), nil, VerifyOptions{AllowMidChainStart: true, MinSeq: 3}); err == nil && len(data) == 0 {
			t.Fatal("empty input verified")
		}
		lastCheckpoint(bytes.NewReader(data), int64(len(data)))
	})
}

// TestVerifyVectors runs the seed files as a table: a name starting with
// good_ must verify fully, fail_ must not; any other name is an error (a
// crasher the fuzzer saved must be renamed once understood).
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
			case strings.HasPrefix(e.Name(), "good_"):
				if err != nil {
					t.Fatalf("want success: %v", err)
				}
			case strings.HasPrefix(e.Name(), "fail_"):
				if err == nil {
					t.Fatal("want a VerifyError or ErrUnverified")
				}
				var ve *VerifyError
				if !errors.As(err, &ve) && !errors.Is(err, ErrUnverified) {
					t.Fatalf("error is neither a *VerifyError nor ErrUnverified: %v", err)
				}
			default:
				t.Fatalf("vector %q is named neither good_* nor fail_*", e.Name())
			}
		})
	}
}
