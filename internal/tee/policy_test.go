package tee

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMeasurementPolicyFiles runs testdata/policy/good_* and fail_*.
func TestMeasurementPolicyFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/policy/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no policy vectors: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			p, err := LoadMeasurementPolicy(f)
			switch {
			case strings.HasPrefix(name, "good_"):
				if err != nil || len(p.Measurements) == 0 {
					t.Fatalf("LoadMeasurementPolicy = %v, %v", p, err)
				}
				for _, m := range p.Measurements {
					if len(m) != 48 {
						t.Fatalf("measurement of %d bytes", len(m))
					}
				}
			case strings.HasPrefix(name, "fail_"):
				if err == nil {
					t.Fatal("accepted")
				}
				t.Logf("refused: %v", err)
			default:
				t.Fatal("vector named neither good_ nor fail_")
			}
		})
	}
	if _, err := LoadMeasurementPolicy(filepath.Join(t.TempDir(), "missing.json")); err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("missing file: %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}
