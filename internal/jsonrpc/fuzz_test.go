package jsonrpc

import (
	"context"
	"encoding/json"
	"testing"
)

// FuzzHandle: any body yields nil or valid JSON, never a panic.
func FuzzHandle(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"eth_accounts","params":[]}`))
	s := newKeySigner(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		out := Handle(context.Background(), s, body)
		if out != nil && !json.Valid(out) {
			t.Fatalf("invalid JSON response %q", out)
		}
	})
}
