package snapshot

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzRead: no input makes Read panic, hang or accept a file that does not
// verify; whatever it accepts has exactly the records its header announces.
func FuzzRead(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.snap")
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n := int64(0)
		hdr, err := Read(context.Background(), bytes.NewReader(data), Handler{Record: func(string, []byte) error {
			n++
			return nil
		}})
		if err == nil && hdr.Records != n {
			t.Fatalf("accepted a file with %d records whose header says %d", n, hdr.Records)
		}
	})
}
