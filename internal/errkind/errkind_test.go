package errkind

import (
	"errors"
	"fmt"
	"testing"
)

func TestOf(t *testing.T) {
	sentinel := New(NotFound, "", "account not found")
	coded := New(Conflict, "already_enrolled", "TOTP is already enrolled")
	field := &Field{Name: "to", Msg: "not an address"}
	multi := errors.Join(errors.New("plain"), fmt.Errorf("ctx: %w", coded))
	for _, tc := range []struct {
		name string
		err  error
		kind Kind
		code string
	}{
		{"nil", nil, Other, ""},
		{"plain", errors.New("x"), Other, ""},
		{"sentinel", sentinel, NotFound, ""},
		{"wrapped sentinel", fmt.Errorf("get: %w", sentinel), NotFound, ""},
		{"coded", fmt.Errorf("a: %w", fmt.Errorf("b: %w", coded)), Conflict, "already_enrolled"},
		{"field", fmt.Errorf("parse: %w", field), Invalid, ""},
		{"field with kind", &Field{Name: "body", Msg: "too big", K: TooLarge, Code: "payload_too_large"}, TooLarge, "payload_too_large"},
		{"wrap", Wrap(Unavailable, errors.New("dial tcp")), Unavailable, ""},
		{"outer kind wins", Wrap(Sealed, sentinel), Sealed, ""},
		{"join", multi, Conflict, "already_enrolled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Of(tc.err); got != tc.kind {
				t.Errorf("Of = %v, want %v", got, tc.kind)
			}
			if got := CodeOf(tc.err); got != tc.code {
				t.Errorf("CodeOf = %q, want %q", got, tc.code)
			}
		})
	}
	if !errors.Is(fmt.Errorf("x: %w", sentinel), sentinel) {
		t.Error("errors.Is lost the sentinel")
	}
	s2 := errors.New("weak password")
	if !errors.Is(&Field{Name: "password", Msg: "short", Sentinel: s2}, s2) {
		t.Error("Field does not unwrap to its sentinel")
	}
	if Wrap(Invalid, nil) != nil {
		t.Error("Wrap(nil) is not nil")
	}
	if got := Wrap(Unavailable, errors.New("dial")).Error(); got != "dial" {
		t.Errorf("message = %q", got)
	}
}
