// Package jsonkeys finds object member names that encoding/json would take
// for one another: exact duplicates and case variants. It is the one
// implementation every strict decoder of the vault uses (the HTTP bodies,
// JSON-RPC, policy documents, typed data).
//
// encoding/json matches a member name to a struct field case-insensitively
// (bytes.EqualFold: Unicode simple folding, so "ſ" matches "s" and the
// Kelvin sign matches "k") and keeps the last value. {"data":"shown",
// "Data":"signed"} therefore means "signed" to the vault and may mean
// "shown" to a proxy, a log or a display that read the first; both forms
// are refused.
package jsonkeys

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Same reports whether encoding/json takes the member names a and b for
// the same struct field.
func Same(a, b string) bool { return strings.EqualFold(a, b) }

// Fold returns the form of name shared by every name Same to it (the
// folding encoding/json uses to match fields), for use as a set key.
func Fold(name string) string {
	return string(appendFolded(make([]byte, 0, len(name)), []byte(name)))
}

// appendFolded is encoding/json's appendFoldedName: ASCII upper-cased,
// every other rune replaced by the smallest rune of its fold orbit, so
// that Fold(x) == Fold(y) exactly when bytes.EqualFold(x, y).
func appendFolded(out, in []byte) []byte {
	for i := 0; i < len(in); {
		if c := in[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(in[i:])
		out = utf8.AppendRune(out, foldRune(r))
		i += n
	}
	return out
}

func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

// object holds the member names of one object being scanned.
type object struct {
	inline [8][]byte // the first names, without allocating
	n      int
	set    map[string]struct{} // every folded name, once there are more than 8
}

// seen records name and reports whether the object had it already, or a
// case variant of it.
func (o *object) seen(name []byte) bool {
	if o.set != nil {
		k := string(appendFolded(nil, name))
		if _, dup := o.set[k]; dup {
			return true
		}
		o.set[k] = struct{}{}
		return false
	}
	for _, prev := range o.inline[:o.n] {
		if bytes.EqualFold(prev, name) {
			return true
		}
	}
	if o.n < len(o.inline) {
		o.inline[o.n] = name
		o.n++
		return false
	}
	o.set = make(map[string]struct{}, 2*len(o.inline))
	for _, prev := range o.inline {
		o.set[string(appendFolded(nil, prev))] = struct{}{}
	}
	o.set[string(appendFolded(nil, name))] = struct{}{}
	return false
}

// Duplicate returns the first member name that repeats an earlier name of
// the same object, exactly or as a case variant, at any depth of data. It
// is one pass over the bytes, without allocation for objects of up to 8
// members with unescaped names (the sign path), so the decoder that
// follows stays the only real parse. data need not be valid JSON (the
// decoder reports syntax errors); it never panics.
func Duplicate(data []byte) (string, bool) {
	var objBuf [4]object
	var stackBuf [16]int
	objs := objBuf[:0]
	stack := stackBuf[:0] // index into objs, or -1 for an array
	top := func() *object {
		if len(stack) == 0 || stack[len(stack)-1] < 0 {
			return nil
		}
		return &objs[stack[len(stack)-1]]
	}
	expectName := false // the next string in the top object is a name
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '{':
			objs = append(objs, object{})
			stack = append(stack, len(objs)-1)
			expectName = true
		case '[':
			stack = append(stack, -1)
			expectName = false
		case '}', ']':
			if n := len(stack); n > 0 {
				if stack[n-1] >= 0 && stack[n-1] == len(objs)-1 {
					objs = objs[:len(objs)-1]
				}
				stack = stack[:n-1]
			}
			expectName = false
		case ',':
			expectName = top() != nil
		case '"':
			end, escaped := stringEnd(data, i)
			if end < 0 {
				return "", false
			}
			if o := top(); expectName && o != nil {
				name := data[i+1 : end]
				if escaped || !utf8.Valid(name) {
					// "\u0074o" and "to" are one name, and so are
					// two invalid UTF-8 bytes: the decoder makes each
					// of them U+FFFD.
					var s string
					if json.Unmarshal(data[i:end+1], &s) != nil {
						return "", false
					}
					name = []byte(s)
				}
				if o.seen(name) {
					return string(name), true
				}
				expectName = false
			}
			i = end
		}
	}
	return "", false
}

// stringEnd returns the index of the quote that closes the string opening
// at data[start], and whether the string holds a backslash escape; -1 when
// it is not closed.
func stringEnd(data []byte, start int) (int, bool) {
	escaped := false
	for j := start + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j, escaped
		}
	}
	return -1, escaped
}
