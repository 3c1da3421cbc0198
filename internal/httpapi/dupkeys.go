package httpapi

import (
	"bytes"
	"encoding/json"
)

// jsonObject holds the member names of one object being scanned.
type jsonObject struct {
	inline [8][]byte // the first names, without allocating
	n      int
	set    map[string]struct{} // every name, once there are more than 8
}

// seen records name and reports whether the object had it already.
func (o *jsonObject) seen(name []byte) bool {
	if o.set != nil {
		if _, dup := o.set[string(name)]; dup {
			return true
		}
		o.set[string(name)] = struct{}{}
		return false
	}
	for _, prev := range o.inline[:o.n] {
		if bytes.Equal(prev, name) {
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
		o.set[string(prev)] = struct{}{}
	}
	o.set[string(name)] = struct{}{}
	return false
}

// duplicateKey returns the first member name that appears twice in one
// object of data, at any depth. A body like {"to":A,"to":B} means B to
// encoding/json and may mean A to a proxy, a log or a display that read it
// first; the inner parsers (typed data, transactions) refuse it already,
// and so does this for every request body. It is one pass over the bytes,
// without allocation for objects of up to 8 members with unescaped names
// (the sign path), so the decoder that follows stays the only real parse.
// data need not be valid JSON (the decoder reports syntax errors); it never
// panics.
func duplicateKey(data []byte) (string, bool) {
	var objBuf [4]jsonObject
	var stackBuf [16]int
	objs := objBuf[:0]
	stack := stackBuf[:0] // index into objs, or -1 for an array
	top := func() *jsonObject {
		if len(stack) == 0 || stack[len(stack)-1] < 0 {
			return nil
		}
		return &objs[stack[len(stack)-1]]
	}
	expectName := false // the next string in the top object is a name
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '{':
			objs = append(objs, jsonObject{})
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
				if escaped {
					// "\u0074o" and "to" are one name.
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
