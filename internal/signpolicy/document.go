package signpolicy

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/jsonkeys"
)

// Effect is what a matching policy does to a request.
type Effect string

// Effects, strongest first: deny wins, then require_approval, then allow.
const (
	EffectDeny            Effect = "deny"
	EffectRequireApproval Effect = "require_approval"
	EffectAllow           Effect = "allow"
)

// Bounds of a document.
const (
	// MaxDocumentSize is the largest policy document accepted, in bytes.
	MaxDocumentSize = 64 << 10
	// MaxScope bounds accounts, owners and approvers.
	MaxScope = 1000
	// MaxWindow is the longest limit window.
	MaxWindow = 366 * 24 * time.Hour
	// MinWindow is the shortest limit window.
	MinWindow = time.Minute
	// maxNameLen bounds a policy name.
	maxNameLen = 128
	// maxJSONNesting bounds document nesting (the schema needs 3).
	maxJSONNesting = 8
)

// Document is a policy as written by an admin (shared/DESIGN.md,
// "Policies"). It round-trips through JSON unchanged.
type Document struct {
	Name      string     `json:"name"`
	Effect    Effect     `json:"effect"`
	Condition string     `json:"condition"`
	Accounts  []string   `json:"accounts,omitempty"`
	Owners    []string   `json:"owners,omitempty"`
	Limit     *Limit     `json:"limit,omitempty"`
	Approvals *Approvals `json:"approvals,omitempty"`
}

// Limit caps the running total of `value` (Amount, a decimal string in the
// account chain's base units) or the number (Count) of signed requests
// matching the condition, per account, in a sliding Window ("24h").
type Limit struct {
	Amount string `json:"amount,omitempty"`
	Count  int64  `json:"count,omitempty"`
	Window string `json:"window"`
}

// Approvals says who must approve a request that matches a
// require_approval policy: Threshold distinct Approvers, none of them the
// requester.
type Approvals struct {
	Threshold int      `json:"threshold"`
	Approvers []string `json:"approvers"`
}

var (
	// usernameRE is auth's username rule (internal/auth).
	usernameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	// accountRE is "owner/name" with the wallet's owner and name rules.
	accountRE = regexp.MustCompile(`^[A-Za-z0-9._@:+-]{1,128}/[a-zA-Z0-9._-]{1,64}$`)
)

// ErrInvalidDocument is the sentinel of every decoding and validation
// error; the returned *errkind.Field names the field.
var ErrInvalidDocument = errkind.New(errkind.Invalid, "invalid_policy", "invalid policy")

func fieldErr(name, msg string) error {
	if name == "" {
		name, msg = "body", `field "": `+msg
	}
	return &errkind.Field{Name: name, Msg: msg, Code: "invalid_policy", Sentinel: ErrInvalidDocument}
}

// Decode reads a policy document strictly: one JSON object, no unknown
// fields, no duplicate keys, no trailing data, at most MaxDocumentSize
// bytes. It then validates everything but the condition's CEL, which
// Engine.Compile checks.
func Decode(data []byte) (*Document, error) {
	if len(data) > MaxDocumentSize {
		return nil, &errkind.Field{Name: "body", Msg: fmt.Sprintf("policy document exceeds %d bytes", MaxDocumentSize),
			K: errkind.TooLarge, Code: "payload_too_large"}
	}
	if err := checkJSON(data); err != nil {
		return nil, err
	}
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
		return nil, fieldErr("body", "must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var d Document
	if err := dec.Decode(&d); err != nil {
		return nil, jsonFieldErr(err)
	}
	// "owners": [] means the same as no owners; keep one form.
	if len(d.Accounts) == 0 {
		d.Accounts = nil
	}
	if len(d.Owners) == 0 {
		d.Owners = nil
	}
	if d.Approvals != nil && len(d.Approvals.Approvers) == 0 {
		d.Approvals.Approvers = nil
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &d, nil
}

// objectKeys are the exact member names of each object of a document.
// encoding/json matches names case-insensitively, so {"name": "a",
// "NAME": "b"} would be two names for one field; refusing every key that
// is not exactly a field closes that door.
var objectKeys = map[string][]string{
	"":          {"name", "effect", "condition", "accounts", "owners", "limit", "approvals"},
	"limit":     {"amount", "count", "window"},
	"approvals": {"threshold", "approvers"},
}

// jsonFieldErr turns encoding/json errors into field errors.
func jsonFieldErr(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		name := te.Field
		if name == "" {
			name = "body"
		}
		return fieldErr(name, "must be "+jsonTypeName(te.Type.Kind().String()))
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		return fieldErr(strings.Trim(strings.TrimPrefix(msg, "json: unknown field "), `"`), "unknown field")
	}
	return fieldErr("body", "malformed JSON")
}

func jsonTypeName(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "int", "int64":
		return "an integer"
	case "slice":
		return "an array"
	case "ptr", "struct":
		return "an object"
	}
	return "a " + kind
}

// checkJSON refuses malformed JSON, duplicate keys (which a reviewer and the
// vault could read differently), members no object of a document has, and
// nesting past maxJSONNesting; the error names the field ("body" for the
// document itself).
func checkJSON(data []byte) error {
	err := jsonkeys.Check(data, maxJSONNesting, func(object, name string) string {
		if keys, ok := objectKeys[object]; ok && !slices.Contains(keys, name) {
			return "unknown field"
		}
		return ""
	})
	var pe *jsonkeys.PathError
	if errors.As(err, &pe) {
		return fieldErr(cmp.Or(pe.Path, "body"), pe.Problem)
	}
	return err
}

// Validate checks every field but the CEL of the condition.
func (d *Document) Validate() error {
	switch n := strings.TrimSpace(d.Name); {
	case n == "":
		return fieldErr("name", "is required")
	case n != d.Name:
		return fieldErr("name", "must not begin or end with spaces")
	case utf8.RuneCountInString(d.Name) > maxNameLen:
		return fieldErr("name", fmt.Sprintf("is longer than %d characters", maxNameLen))
	case !printable(d.Name):
		return fieldErr("name", "must be printable text")
	}
	switch d.Effect {
	case EffectDeny, EffectRequireApproval, EffectAllow:
	case "":
		return fieldErr("effect", `is required: "deny", "require_approval" or "allow"`)
	default:
		return fieldErr("effect", `must be "deny", "require_approval" or "allow"`)
	}
	if strings.TrimSpace(d.Condition) == "" {
		return fieldErr("condition", "is required (write true to match every request)")
	}
	if n := utf8.RuneCountInString(d.Condition); n > MaxConditionLength || !utf8.ValidString(d.Condition) {
		return fieldErr("condition", fmt.Sprintf("must be valid UTF-8 of at most %d characters", MaxConditionLength))
	}
	if len(d.Accounts) > 0 && len(d.Owners) > 0 {
		return fieldErr("accounts", "set accounts or owners, not both (neither: every account)")
	}
	if err := checkList("accounts", d.Accounts, accountRE, `"owner/name"`); err != nil {
		return err
	}
	if err := checkList("owners", d.Owners, usernameRE, "a username"); err != nil {
		return err
	}
	if err := d.validateLimit(); err != nil {
		return err
	}
	return d.validateApprovals()
}

func (d *Document) validateLimit() error {
	l := d.Limit
	if l == nil {
		return nil
	}
	if d.Effect == EffectAllow {
		return fieldErr("limit", `needs effect "deny" or "require_approval": a limit matches the request that would exceed it`)
	}
	if (l.Amount == "") == (l.Count == 0) {
		return fieldErr("limit", "set exactly one of amount and count")
	}
	if l.Amount != "" {
		if _, err := l.amount(); err != nil {
			return err
		}
	}
	if l.Count < 0 {
		return fieldErr("limit.count", "must be a positive integer")
	}
	_, err := l.window()
	return err
}

// amount parses Limit.Amount: a positive decimal integer in base units.
func (l *Limit) amount() (*big.Int, error) {
	if !isDigits(l.Amount) || len(l.Amount) > 80 {
		return nil, fieldErr("limit.amount", "must be a decimal integer string in base units (wei, sats, lamports), e.g. \"2000000000000000000\"")
	}
	v, _ := new(big.Int).SetString(l.Amount, 10)
	if v.Sign() <= 0 {
		return nil, fieldErr("limit.amount", "must be positive")
	}
	return v, nil
}

func (l *Limit) window() (time.Duration, error) {
	if l.Window == "" {
		return 0, fieldErr("limit.window", `is required, e.g. "24h"`)
	}
	w, err := time.ParseDuration(l.Window)
	if err != nil {
		return 0, fieldErr("limit.window", `must be a duration such as "24h", "90m" or "168h"`)
	}
	if w < MinWindow || w > MaxWindow {
		return 0, fieldErr("limit.window", fmt.Sprintf("must be between %v and %v", MinWindow, MaxWindow))
	}
	return w, nil
}

func (d *Document) validateApprovals() error {
	a := d.Approvals
	if d.Effect != EffectRequireApproval {
		if a != nil {
			return fieldErr("approvals", `is only for effect "require_approval"`)
		}
		return nil
	}
	if a == nil {
		return fieldErr("approvals", `is required for effect "require_approval": {"threshold": n, "approvers": [user...]}`)
	}
	if len(a.Approvers) == 0 {
		return fieldErr("approvals.approvers", "must name at least one user")
	}
	if err := checkList("approvals.approvers", a.Approvers, usernameRE, "a username"); err != nil {
		return err
	}
	if a.Threshold < 1 || a.Threshold > len(a.Approvers) {
		return fieldErr("approvals.threshold", fmt.Sprintf("must be between 1 and the number of approvers (%d)", len(a.Approvers)))
	}
	return nil
}

func checkList(name string, list []string, re *regexp.Regexp, what string) error {
	if len(list) > MaxScope {
		return fieldErr(name, fmt.Sprintf("has more than %d entries", MaxScope))
	}
	seen := make(map[string]bool, len(list))
	for i, s := range list {
		f := fmt.Sprintf("%s[%d]", name, i)
		if !re.MatchString(s) {
			return fieldErr(f, "must be "+what)
		}
		if seen[s] {
			return fieldErr(f, "duplicate "+quote(s))
		}
		seen[s] = true
	}
	return nil
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError {
			return false
		}
	}
	return true
}

func quote(s string) string { return fmt.Sprintf("%q", truncate(s, 64)) }
