package snapshot

import (
	"crypto/sha256"
	"encoding/json"
	"hash"
	"testing"
)

func sha256New() hash.Hash { return sha256.New() }

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
