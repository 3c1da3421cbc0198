package jsonkeys

import (
	"errors"
	"testing"

	"github.com/moonvault/moonvault/internal/errkind"
)

func TestCheck(t *testing.T) {
	onlyAB := func(object, name string) string {
		if object == "" && name != "a" && name != "b" {
			return "unknown field"
		}
		return ""
	}
	for _, c := range []struct {
		name, doc string
		member    func(object, name string) string
		path      string
		problem   string
	}{
		{"good object", `{"a":1,"b":{"c":[1,{"d":2}]}}`, onlyAB, "", ""},
		{"good scalar", `"x"`, nil, "", ""},
		{"duplicate", `{"a":1,"a":2}`, nil, "a", "duplicate key"},
		{"case variant", `{"to":1,"To":2}`, nil, "To", "duplicate key"},
		{"nested duplicate path", `{"b":{"c":[0,{"d":1,"d":2}]}}`, nil, "b.c[1].d", "duplicate key"},
		{"unknown member", `{"a":1,"z":2}`, onlyAB, "z", "unknown field"},
		{"too deep", `[[[[1]]]]`, nil, "[0][0][0]", "nested deeper than 2 levels"},
		{"malformed", `{"a":}`, nil, "a", "malformed JSON"},
		{"empty", ``, nil, "", "malformed JSON"},
		{"trailing", `{"a":1} {}`, nil, "", "trailing data after the JSON value"},
	} {
		t.Run(c.name, func(t *testing.T) {
			depth := 64
			if c.name == "too deep" {
				depth = 2
			}
			err := Check([]byte(c.doc), depth, c.member)
			if c.problem == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var pe *PathError
			if !errors.As(err, &pe) || pe.Path != c.path || pe.Problem != c.problem || errkind.Of(err) != errkind.Invalid {
				t.Fatalf("got %#v, want %q at %q", err, c.problem, c.path)
			}
		})
	}
}
