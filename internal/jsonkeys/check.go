package jsonkeys

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/moonvault/moonvault/internal/errkind"
)

// PathError says what is wrong with a JSON document and where: Path names
// the member or element from the root ("message.to.wallets[1]"; "" is the
// root itself).
type PathError struct {
	Path    string
	Problem string
}

// Kind is errkind.Invalid: the document is at fault.
func (e *PathError) Kind() errkind.Kind { return errkind.Invalid }

func (e *PathError) Error() string {
	if e.Path == "" {
		return e.Problem
	}
	return e.Path + ": " + e.Problem
}

// Check reads data as exactly one JSON value, the way a strict decoder of
// a document does before decoding it, and returns a *PathError for the
// first of: malformed JSON, a member name that repeats an earlier one of
// its object (exactly or as a case variant, see Same), nesting deeper than
// maxDepth, data after the value. member, when not nil, sees every member
// name with the path of its object and may refuse it with a problem ("" to
// accept it).
func Check(data []byte, maxDepth int, member func(object, name string) string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := walk(dec, "", 0, maxDepth, member); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return &PathError{Problem: "trailing data after the JSON value"}
	}
	return nil
}

func walk(dec *json.Decoder, path string, depth, maxDepth int, member func(object, name string) string) error {
	if depth > maxDepth {
		return &PathError{path, fmt.Sprintf("nested deeper than %d levels", maxDepth)}
	}
	malformed := &PathError{path, "malformed JSON"}
	tok, err := dec.Token()
	if err != nil {
		return malformed
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch d {
	case '{':
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return malformed
			}
			k, _ := kt.(string)
			child := k
			if path != "" {
				child = path + "." + k
			}
			fk := Fold(k)
			if seen[fk] {
				return &PathError{child, "duplicate key"}
			}
			seen[fk] = true
			if member != nil {
				if problem := member(path, k); problem != "" {
					return &PathError{child, problem}
				}
			}
			if err := walk(dec, child, depth+1, maxDepth, member); err != nil {
				return err
			}
		}
	case '[':
		for i := 0; dec.More(); i++ {
			if err := walk(dec, fmt.Sprintf("%s[%d]", path, i), depth+1, maxDepth, member); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		return malformed
	}
	return nil
}
