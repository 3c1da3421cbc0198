package vectors

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadRegenerate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "good_x.json")
	cases := []struct{ Name, Data string }{{"one", "00ff"}}
	Regenerate(t, path, "built here", cases)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("written without MV_WRITE_TESTDATA: %v", err)
	}
	t.Setenv("MV_WRITE_TESTDATA", "1")
	Regenerate(t, path, "built here", cases)
	var f struct {
		Source string
		Cases  []struct{ Name, Data string }
	}
	Read(t, path, &f)
	if f.Source != "built here" || len(f.Cases) != 1 || f.Cases[0].Name != "one" {
		t.Fatalf("read back %+v", f)
	}
	if b := Hex(t, f.Cases[0].Data); len(b) != 2 || b[0] != 0 || b[1] != 0xff {
		t.Fatalf("hex %x", b)
	}
}
