package signpolicy

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/moonvault/moonvault/internal/errkind"
)

// failField is the field each fail_ vector must name.
var failField = map[string]string{
	"fail_unknown_field.json":           "description",
	"fail_duplicate_key.json":           "effect",
	"fail_duplicate_nested_key.json":    "limit.window",
	"fail_trailing.json":                "body",
	"fail_not_object.json":              "body",
	"fail_effect.json":                  "effect",
	"fail_missing_condition.json":       "condition",
	"fail_amount_number.json":           "limit.amount",
	"fail_amount_decimal.json":          "limit.amount",
	"fail_amount_and_count.json":        "limit",
	"fail_window.json":                  "limit.window",
	"fail_window_short.json":            "limit.window",
	"fail_limit_on_allow.json":          "limit",
	"fail_approvals_missing.json":       "approvals",
	"fail_approvals_on_deny.json":       "approvals",
	"fail_threshold.json":               "approvals.threshold",
	"fail_approver_duplicate.json":      "approvals.approvers[1]",
	"fail_account_form.json":            "accounts[1]",
	"fail_accounts_and_owners.json":     "accounts",
	"fail_name_control.json":            "name",
	"fail_deep.json":                    "accounts[0][0][0][0][0][0][0][0]",
	"fail_case_variant_key.json":        "Effect",
	"fail_case_variant_nested_key.json": "limit.WINDOW",
	"fail_malformed.json":               "body",
}

func TestDecodeVectors(t *testing.T) {
	files, err := filepath.Glob("testdata/documents/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no vectors: %v", err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		name := filepath.Base(f)
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) {
			d, err := Decode(data)
			switch {
			case strings.HasPrefix(name, "good_"):
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				round, err := json.Marshal(d)
				if err != nil {
					t.Fatal(err)
				}
				d2, err := Decode(round)
				if err != nil || !reflect.DeepEqual(d, d2) {
					t.Fatalf("round trip: %v\n%+v\n%+v", err, d, d2)
				}
			case strings.HasPrefix(name, "fail_"):
				seen[name] = true
				want, ok := failField[name]
				if !ok {
					t.Fatalf("no expected field for %s", name)
				}
				var f *errkind.Field
				if !errors.As(err, &f) {
					t.Fatalf("Decode = %v, %v; want a field error", d, err)
				}
				if f.Name != want {
					t.Errorf("field = %q (%v), want %q", f.Name, err, want)
				}
				if !errors.Is(err, ErrInvalidDocument) || errkind.Of(err) != errkind.Invalid {
					t.Errorf("error %v: not ErrInvalidDocument of kind invalid", err)
				}
			default:
				t.Fatalf("vector %s is neither good_ nor fail_", name)
			}
		})
	}
	for name := range failField {
		if !seen[name] {
			t.Errorf("expected vector %s is missing", name)
		}
	}
}

func TestDecodeTooLarge(t *testing.T) {
	doc := `{"name": "x", "effect": "deny", "condition": "` + strings.Repeat(" ", MaxDocumentSize) + `true"}`
	_, err := Decode([]byte(doc))
	if errkind.Of(err) != errkind.TooLarge || errkind.CodeOf(err) != "payload_too_large" {
		t.Fatalf("err = %v (kind %v), want too_large", err, errkind.Of(err))
	}
}

// TestCompileErrors: a condition that does not parse or type-check is
// refused when written, naming line and column.
func TestCompileErrors(t *testing.T) {
	e := newEngine(t, newMemKV(), nil)
	for _, tc := range []struct {
		cond string
		want string
	}{
		{`intent.valu > 1`, "line 1, column 7: undefined field 'valu'"},
		{`intent.value >`, "line 1, column 15: Syntax error"},
		{"intent.chain == \"ethereum\" &&\n  intent.to == 5", "line 2, column 13: found no matching overload for '_==_' applied to '(string, int)'"},
		{`intent.value > 20000000000000000000000`, "line 1, column 16: invalid int literal (integers past 64 bits are written as a string"},
		{`intent.value == 0`, "line 1, column 14: found no matching overload for '_==_' applied to '(bigint, int)' (compare a bigint"},
		{`5 < intent.value`, "bigint on the left"},
		{`intent.value > 2.5`, "found no matching overload for '_>_' applied to '(bigint, double)'"},
		{`intent.value > ether("1.5.1")`, `line 1, column 22: ether: amount "1.5.1" is not a decimal number`},
		{`intent.value > ether("0.0000000000000000001")`, "has more than 18 decimal places"},
		{`intent.token.amount > units("1", 99)`, "line 1, column 34: units: decimals must be an integer 0..77"},
		{`intent.value`, "must be a bool expression, not bigint"},
		{`intent.chain.matches("(")`, "line 1, column 22:"},
		{`[1].all(a, [1].all(b, [1].all(c, true)))`, "comprehension exceeds nesting limit"},
		{`intent.to == "` + strings.Repeat("a", MaxConditionLength) + `"`, "must be valid UTF-8 of at most"},
		{`   `, "is required"},
		{`secret`, "undeclared reference to 'secret'"},
	} {
		t.Run(tc.cond[:min(len(tc.cond), 40)], func(t *testing.T) {
			err := e.Compile(&Document{Name: "x", Effect: EffectDeny, Condition: tc.cond})
			var f *errkind.Field
			if !errors.As(err, &f) || f.Name != "condition" {
				t.Fatalf("err = %v, want a field error on condition", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/documents/*.json")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Decode(data)
		if err != nil {
			var fe *errkind.Field
			if !errors.As(err, &fe) || fe.Name == "" {
				t.Fatalf("error without a field: %v", err)
			}
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("decoded document does not validate: %v", err)
		}
		round, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		d2, err := Decode(round)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", round, err)
		}
		if !reflect.DeepEqual(d, d2) {
			t.Fatalf("round trip changed the document:\n%+v\n%+v", d, d2)
		}
	})
}
