package httpapi

import (
	"bytes"
	"encoding/json"
	"testing"
)

// dupByTokens is the reference: encoding/json's tokenizer, as the inner
// parsers (wallet/evm checkJSON) walk a document.
func dupByTokens(data []byte) (string, bool, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var walk func() (string, bool, bool)
	walk = func() (string, bool, bool) {
		tok, err := dec.Token()
		if err != nil {
			return "", false, false
		}
		d, ok := tok.(json.Delim)
		if !ok {
			return "", false, true
		}
		seen := map[string]bool{}
		for dec.More() {
			if d == '{' {
				kt, err := dec.Token()
				if err != nil {
					return "", false, false
				}
				k, _ := kt.(string)
				if seen[k] {
					return k, true, true
				}
				seen[k] = true
			}
			if k, dup, ok := walk(); dup || !ok {
				return k, dup, ok
			}
		}
		if _, err := dec.Token(); err != nil {
			return "", false, false
		}
		return "", false, true
	}
	return walk()
}

func TestDuplicateKey(t *testing.T) {
	for _, tc := range []struct {
		body string
		dup  string
	}{
		{`{"data":"x"}`, ""},
		{`{"data":"x","data":"y"}`, "data"},
		{`{"data":"x","\u0064ata":"y"}`, "data"},
		{`{"a":{"b":1,"b":2}}`, "b"},
		{`{"a":[{"b":1},{"b":2}]}`, ""},
		{`{"a":"b","c":"a"}`, ""},
		{`{"a":"\"","a":1}`, "a"},
		{`{"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k1":0}`, "k1"},
		{`["a","a"]`, ""},
		{`{"a":1}{"a":2}`, ""},
		{`{"a`, ""},
	} {
		got, dup := duplicateKey([]byte(tc.body))
		if dup != (tc.dup != "") || got != tc.dup {
			t.Errorf("duplicateKey(%s) = %q %v, want %q", tc.body, got, dup, tc.dup)
		}
	}
}

// FuzzDuplicateKey: on every valid JSON document the scanner agrees with
// the tokenizer, and it never panics on anything.
func FuzzDuplicateKey(f *testing.F) {
	for _, s := range []string{`{"a":1,"a":2}`, `{"a":{"b":[1,{"c":1,"c":2}]}}`, `{"\u0061":1,"a":2}`, `{"x":"}\"{","x":1}`, `[{"a":1},{"a":1}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, dup := duplicateKey(data)
		if !json.Valid(data) {
			return
		}
		want, wantDup, ok := dupByTokens(data)
		if ok && (dup != wantDup || (dup && got != want)) {
			t.Fatalf("%q: scanner %q %v, tokenizer %q %v", data, got, dup, want, wantDup)
		}
	})
}

func BenchmarkDuplicateKeySignBody(b *testing.B) {
	body := []byte(`{"data":"hello world","encoding":"utf8"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, dup := duplicateKey(body); dup {
			b.Fatal("dup")
		}
	}
}
