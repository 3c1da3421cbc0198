package evm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ethereum/go-ethereum/common/math"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"
)

// MaxTypedDataSize bounds an EIP-712 document.
const MaxTypedDataSize = 1 << 20

// maxArrayLen bounds a declared fixed array length.
const maxArrayLen = 1 << 16

// go-ethereum's encoder re-validates every type for every struct value it
// encodes (cost: types × struct values), so both are bounded to keep one
// request from burning CPU for seconds.
const (
	maxTypes        = 256
	maxMembers      = 2048 // over all types
	maxStructValues = 10_000
)

var (
	typeNameRe  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`) // as go-ethereum accepts struct names
	fieldNameRe = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*$`)
	arraySuffix = regexp.MustCompile(`\[([0-9]*)\]$`)
)

// domainTypes are the EIP712Domain members EIP-712 defines, with their
// types. apitypes.TypedDataDomain carries exactly these, so any other
// member would be silently dropped: it is refused instead.
var domainTypes = map[string]string{
	"name": "string", "version": "string", "chainId": "uint256",
	"verifyingContract": "address", "salt": "bytes32",
}

// ParseTypedData parses and strictly validates an EIP-712 document (the
// eth_signTypedData_v4 payload), given as a JSON object or as a JSON string
// holding one. It refuses undeclared types, cycles in the type graph (also
// through arrays), a primaryType or EIP712Domain that is not declared,
// fixed arrays of the wrong length, missing or extra members, and values
// that do not fit their type (intN/uintN are range-checked). The returned
// value is normalised (integers as *big.Int) and hashes without error.
func ParseTypedData(raw json.RawMessage) (*apitypes.TypedData, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		s, err := decodeString("typedData", raw)
		if err != nil {
			return nil, err
		}
		raw = bytes.TrimSpace([]byte(s))
	}
	if len(raw) > MaxTypedDataSize {
		return nil, fieldErr("typedData", fmt.Sprintf("larger than %d bytes", MaxTypedDataSize))
	}
	if err := checkJSON("typedData", raw); err != nil {
		return nil, err
	}
	top, err := decodeObject("typedData", raw)
	if err != nil {
		return nil, err
	}
	for _, k := range sortedKeys(top) {
		switch k {
		case "types", "primaryType", "domain", "message":
		default:
			return nil, fieldErr(k, "unknown member of typed data")
		}
	}
	td := &apitypes.TypedData{}
	if td.Types, err = parseTypes(top["types"]); err != nil {
		return nil, err
	}
	if isNull(top["primaryType"]) {
		return nil, fieldErr("primaryType", "required")
	}
	if td.PrimaryType, err = decodeString("primaryType", top["primaryType"]); err != nil {
		return nil, err
	}
	if _, ok := td.Types[td.PrimaryType]; !ok {
		return nil, fieldErr("primaryType", quote(td.PrimaryType)+" is not declared in types")
	}
	if td.Domain, err = parseDomain(td.Types, top["domain"]); err != nil {
		return nil, err
	}
	msg, err := decodeAny("message", top["message"])
	if err != nil {
		return nil, err
	}
	budget := maxStructValues
	norm, err := checkValue(td.Types, &budget, "message", td.PrimaryType, msg)
	if err != nil {
		return nil, err
	}
	td.Message = norm.(map[string]any)
	// Last line of defence: the hash must compute (apitypes may still
	// disagree with a corner this validator accepted).
	if _, err := hashTypedData(td); err != nil {
		return nil, fieldErr("typedData", err.Error())
	}
	return td, nil
}

func decodeAny(field string, raw json.RawMessage) (any, error) {
	if isNull(raw) {
		return nil, fieldErr(field, "required")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fieldErr(field, "malformed JSON")
	}
	return v, nil
}

func parseTypes(raw json.RawMessage) (apitypes.Types, error) {
	if isNull(raw) {
		return nil, fieldErr("types", "required")
	}
	var decl map[string][]map[string]json.RawMessage
	if err := json.Unmarshal(raw, &decl); err != nil {
		return nil, fieldErr("types", "must map type names to arrays of {name, type}")
	}
	if len(decl) > maxTypes {
		return nil, fieldErr("types", fmt.Sprintf("more than %d types", maxTypes))
	}
	if _, ok := decl["EIP712Domain"]; !ok {
		return nil, fieldErr("types.EIP712Domain", "required")
	}
	out := make(apitypes.Types, len(decl))
	names := make([]string, 0, len(decl))
	members := 0
	for n, fs := range decl {
		names = append(names, n)
		members += len(fs)
	}
	if members > maxMembers {
		return nil, fieldErr("types", fmt.Sprintf("more than %d members in all", maxMembers))
	}
	slices.Sort(names)
	for _, n := range names {
		if !typeNameRe.MatchString(n) {
			return nil, fieldErr("types."+n, "invalid type name")
		}
		if isPrimitive(n) {
			return nil, fieldErr("types."+n, "type name shadows a primitive type")
		}
		seen := map[string]bool{}
		for i, m := range decl[n] {
			path := fmt.Sprintf("types.%s[%d]", n, i)
			for k := range m {
				if k != "name" && k != "type" {
					return nil, fieldErr(path+"."+k, "unknown member")
				}
			}
			name, err := decodeString(path+".name", m["name"])
			if err != nil {
				return nil, err
			}
			typ, err := decodeString(path+".type", m["type"])
			if err != nil {
				return nil, err
			}
			if !fieldNameRe.MatchString(name) {
				return nil, fieldErr(path+".name", "invalid member name "+quote(name))
			}
			if seen[name] {
				return nil, fieldErr(path+".name", "duplicate member "+quote(name))
			}
			seen[name] = true
			base, _, err := splitArrays(path+".type", typ)
			if err != nil {
				return nil, err
			}
			if _, declared := decl[base]; !declared && !isPrimitive(base) {
				return nil, fieldErr(path+".type", "unknown type "+quote(base))
			}
			out[n] = append(out[n], apitypes.Type{Name: name, Type: typ})
		}
	}
	for i, f := range out["EIP712Domain"] {
		if want, ok := domainTypes[f.Name]; !ok || want != f.Type {
			return nil, fieldErr(fmt.Sprintf("types.EIP712Domain[%d]", i), "EIP-712 domain members are name string, version string, chainId uint256, verifyingContract address, salt bytes32")
		}
	}
	if len(out["EIP712Domain"]) == 0 {
		return nil, fieldErr("types.EIP712Domain", "must declare at least one member")
	}
	if err := checkAcyclic(out); err != nil {
		return nil, err
	}
	return out, nil
}

// splitArrays splits "T[2][]" into "T" and its dimensions, outermost last
// (-1 for a dynamic dimension), as Solidity writes them.
func splitArrays(field, typ string) (string, []int, error) {
	var dims []int
	for strings.HasSuffix(typ, "]") {
		m := arraySuffix.FindStringSubmatchIndex(typ)
		if m == nil {
			return "", nil, fieldErr(field, "malformed array type")
		}
		n := -1
		if digits := typ[m[2]:m[3]]; digits != "" {
			v, err := strconv.Atoi(digits)
			if err != nil || v < 1 || v > maxArrayLen || digits[0] == '0' {
				return "", nil, fieldErr(field, "invalid array length "+quote(digits))
			}
			n = v
		}
		dims = append([]int{n}, dims...)
		typ = typ[:m[0]]
		if len(dims) > 8 {
			return "", nil, fieldErr(field, "too many array dimensions")
		}
	}
	if typ == "" || strings.ContainsAny(typ, "[]") {
		return "", nil, fieldErr(field, "malformed type")
	}
	return typ, dims, nil
}

func isPrimitive(t string) bool {
	switch t {
	case "address", "bool", "string", "bytes":
		return true
	}
	if _, ok := intBits(t); ok {
		return true
	}
	_, ok := fixedBytesLen(t)
	return ok
}

// intBits returns N and whether t is intN/uintN (int and uint mean 256,
// as go-ethereum accepts them).
func intBits(t string) (int, bool) {
	s := strings.TrimPrefix(strings.TrimPrefix(t, "u"), "int")
	if !strings.HasPrefix(strings.TrimPrefix(t, "u"), "int") {
		return 0, false
	}
	if s == "" {
		return 256, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 8 || n > 256 || n%8 != 0 || s[0] == '0' {
		return 0, false
	}
	return n, true
}

func fixedBytesLen(t string) (int, bool) {
	s, ok := strings.CutPrefix(t, "bytes")
	if !ok || s == "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 32 || s[0] == '0' {
		return 0, false
	}
	return n, true
}

// checkAcyclic refuses any cycle in the struct graph, including one that
// runs through an array member (Person { Person[] friends }).
func checkAcyclic(ts apitypes.Types) error {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var visit func(n string) error
	visit = func(n string) error {
		color[n] = grey
		for i, f := range ts[n] {
			base, _, _ := splitArrays("", f.Type)
			if _, isStruct := ts[base]; !isStruct {
				continue
			}
			switch color[base] {
			case grey:
				return fieldErr(fmt.Sprintf("types.%s[%d].type", n, i), "recursive type "+quote(base))
			case white:
				if err := visit(base); err != nil {
					return err
				}
			}
		}
		color[n] = black
		return nil
	}
	names := make([]string, 0, len(ts))
	for n := range ts {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if color[n] == white {
			if err := visit(n); err != nil {
				return err
			}
		}
	}
	return nil
}

func parseDomain(ts apitypes.Types, raw json.RawMessage) (apitypes.TypedDataDomain, error) {
	var d apitypes.TypedDataDomain
	v, err := decodeAny("domain", raw)
	if err != nil {
		return d, err
	}
	budget := 1
	norm, err := checkValue(ts, &budget, "domain", "EIP712Domain", v)
	if err != nil {
		return d, err
	}
	m := norm.(map[string]any)
	// apitypes.TypedDataDomain.Map drops empty strings, which would then
	// fail to encode: refuse them here with a clear message.
	for _, k := range []string{"name", "version"} {
		if s, ok := m[k].(string); ok && s == "" {
			return d, fieldErr("domain."+k, "must not be empty")
		}
	}
	d.Name, _ = m["name"].(string)
	d.Version, _ = m["version"].(string)
	d.VerifyingContract, _ = m["verifyingContract"].(string)
	d.Salt, _ = m["salt"].(string)
	if c, ok := m["chainId"].(*big.Int); ok {
		d.ChainId = (*math.HexOrDecimal256)(c)
	}
	return d, nil
}

// checkValue validates v against the EIP-712 type typ and returns it
// normalised for apitypes: integers become *big.Int, everything else keeps
// its JSON form.
func checkValue(ts apitypes.Types, budget *int, path, typ string, v any) (any, error) {
	base, dims, err := splitArrays(path, typ)
	if err != nil {
		return nil, err
	}
	if len(dims) > 0 {
		arr, ok := v.([]any)
		if !ok {
			return nil, fieldErr(path, "must be an array of "+quote(typ))
		}
		if n := dims[len(dims)-1]; n >= 0 && len(arr) != n {
			return nil, fieldErr(path, fmt.Sprintf("fixed array %s needs %d elements, got %d", typ, n, len(arr)))
		}
		elem := typ[:strings.LastIndexByte(typ, '[')]
		out := make([]any, len(arr))
		for i, e := range arr {
			if out[i], err = checkValue(ts, budget, fmt.Sprintf("%s[%d]", path, i), elem, e); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	if fields, ok := ts[base]; ok {
		if *budget--; *budget < 0 {
			return nil, fieldErr(path, fmt.Sprintf("more than %d struct values", maxStructValues))
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, fieldErr(path, "must be an object of type "+quote(base))
		}
		out := make(map[string]any, len(fields))
		for _, f := range fields {
			fv, present := obj[f.Name]
			if !present || fv == nil {
				return nil, fieldErr(path+"."+f.Name, "required")
			}
			if out[f.Name], err = checkValue(ts, budget, path+"."+f.Name, f.Type, fv); err != nil {
				return nil, err
			}
		}
		if len(obj) != len(fields) {
			for _, k := range slices.Sorted(mapKeys(obj)) {
				if _, ok := out[k]; !ok {
					return nil, fieldErr(path+"."+k, "not a member of "+quote(base))
				}
			}
		}
		return out, nil
	}
	return checkPrimitive(path, base, v)
}

func mapKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func checkPrimitive(path, typ string, v any) (any, error) {
	switch typ {
	case "bool":
		if _, ok := v.(bool); !ok {
			return nil, fieldErr(path, "must be a boolean")
		}
		return v, nil
	case "string":
		if _, ok := v.(string); !ok {
			return nil, fieldErr(path, "must be a string")
		}
		return v, nil
	case "address":
		s, ok := v.(string)
		if !ok {
			return nil, fieldErr(path, "must be an address string")
		}
		if _, err := ParseAddress(path, s); err != nil {
			return nil, err
		}
		return s, nil
	case "bytes":
		s, ok := v.(string)
		if !ok {
			return nil, fieldErr(path, "must be a 0x-hex string")
		}
		if _, err := parseHexBytes(path, s); err != nil {
			return nil, err
		}
		return s, nil
	}
	if n, ok := fixedBytesLen(typ); ok {
		s, ok := v.(string)
		if !ok {
			return nil, fieldErr(path, "must be a 0x-hex string")
		}
		b, err := parseHexBytes(path, s)
		if err != nil {
			return nil, err
		}
		if len(b) != n {
			return nil, fieldErr(path, fmt.Sprintf("%s needs %d bytes, got %d", typ, n, len(b)))
		}
		return s, nil
	}
	if bits, ok := intBits(typ); ok {
		return checkInt(path, typ, bits, v)
	}
	return nil, fieldErr(path, "unknown type "+quote(typ))
}

func checkInt(path, typ string, bits int, v any) (*big.Int, error) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = x.String()
	case string:
		s = x
	default:
		return nil, fieldErr(path, "must be an integer (number, decimal or 0x-hex string)")
	}
	signed := !strings.HasPrefix(typ, "u")
	n, err := parseIntText(path, s, signed)
	if err != nil {
		return nil, err
	}
	lo, hi := new(big.Int), new(big.Int).Lsh(big.NewInt(1), uint(bits)) // [0, 2^N)
	if signed {
		hi.Rsh(hi, 1) // [-2^(N-1), 2^(N-1))
		lo.Neg(hi)
	}
	if n.Cmp(lo) < 0 || n.Cmp(hi) >= 0 {
		return nil, fieldErr(path, "out of range for "+typ)
	}
	return n, nil
}
