package jsonkeys

import (
	"bytes"
	"encoding/json"
	"strings"
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
				for prev := range seen {
					if strings.EqualFold(prev, k) {
						return k, true, true
					}
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

func TestDuplicate(t *testing.T) {
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
		// encoding/json matches member names to fields case-insensitively
		// (bytes.EqualFold, with Unicode simple folding) and keeps the
		// last: a case variant is the same field.
		{`{"data":"shown","Data":"signed"}`, "Data"},
		{`{"to":"a","TO":"b"}`, "TO"},
		{`{"sign":1,"ſign":2}`, "ſign"}, // long s folds to s
		{`{"kind":1,"Kind":2}`, "Kind"}, // Kelvin sign folds to k
		{`{"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"K1":0}`, "K1"},
		{`{"a":{"Data":1},"data":2}`, ""},
	} {
		got, dup := Duplicate([]byte(tc.body))
		if dup != (tc.dup != "") || got != tc.dup {
			t.Errorf("Duplicate(%s) = %q %v, want %q", tc.body, got, dup, tc.dup)
		}
	}
}

// FuzzDuplicate: on every valid JSON document the scanner agrees with
// the tokenizer, and it never panics on anything.
func FuzzDuplicate(f *testing.F) {
	for _, s := range []string{`{"a":1,"a":2}`, `{"a":{"b":[1,{"c":1,"c":2}]}}`, `{"\u0061":1,"a":2}`, `{"x":"}\"{","x":1}`, `[{"a":1},{"a":1}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, dup := Duplicate(data)
		if !json.Valid(data) {
			return
		}
		want, wantDup, ok := dupByTokens(data)
		if ok && (dup != wantDup || (dup && got != want)) {
			t.Fatalf("%q: scanner %q %v, tokenizer %q %v", data, got, dup, want, wantDup)
		}
	})
}

func BenchmarkDuplicateSignBody(b *testing.B) {
	body := []byte(`{"data":"hello world","encoding":"utf8"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, dup := Duplicate(body); dup {
			b.Fatal("dup")
		}
	}
}

// TestFoldMatchesEncodingJSON: Fold and Same agree with the field matching
// of encoding/json itself: a struct field receives a member exactly when
// the names are Same.
func TestFoldMatchesEncodingJSON(t *testing.T) {
	for _, name := range []string{"data", "Data", "DATA", "\u017fign", "Sign", "\u212aind", "kind", "ß", "SS", "é", "É", "x_y", "X_Y", "\u0130d", "id"} {
		var v struct {
			Data string `json:"data"`
			Sign string `json:"sign"`
			Kind string `json:"kind"`
			Id   string `json:"id"`
			E    string `json:"é"`
		}
		raw, _ := json.Marshal(map[string]string{name: "v"})
		_ = json.Unmarshal(raw, &v)
		got := map[string]bool{"data": v.Data != "", "sign": v.Sign != "", "kind": v.Kind != "", "id": v.Id != "", "é": v.E != ""}
		for field, set := range got {
			if Same(field, name) != set || (Fold(field) == Fold(name)) != set {
				t.Errorf("name %q, field %q: encoding/json sets it %v, Same %v, Fold equal %v", name, field, set, Same(field, name), Fold(field) == Fold(name))
			}
		}
	}
}
