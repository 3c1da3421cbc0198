package evm

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"github.com/moonvault/moonvault/internal/jsonkeys"
)

// maxNesting bounds JSON nesting depth so that a deeply nested document is
// refused before any recursive walk.
const maxNesting = 64

// checkJSON refuses malformed JSON, duplicate object keys (a payload that a
// display layer could read differently from the signer: {"to":A,"to":B})
// and nesting deeper than maxNesting. Paths inside the document are named
// from its root ("to", "message.to.wallets[1]"); errors at the root name
// the document.
func checkJSON(doc string, raw []byte) error {
	err := jsonkeys.Check(raw, maxNesting, nil)
	var pe *jsonkeys.PathError
	if errors.As(err, &pe) {
		return fieldErr(cmp.Or(pe.Path, doc), pe.Problem)
	}
	return err
}

// isNull reports whether raw is absent or JSON null: both mean "not given".
func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// decodeObject decodes a JSON object into its raw members.
func decodeObject(field string, raw json.RawMessage) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
		return nil, fieldErr(field, "must be a JSON object")
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fieldErr(field, "must be a JSON object")
	}
	return m, nil
}

func decodeString(field string, raw json.RawMessage) (string, error) {
	var s string
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '"' {
		return "", fieldErr(field, "must be a string")
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fieldErr(field, "must be a string")
	}
	return s, nil
}

// parseQuantity reads an unsigned integer of at most bits bits from a JSON
// value: a 0x-hex string (JSON-RPC quantity; leading zeros tolerated), a
// decimal string, or a JSON integer number.
func parseQuantity(field string, raw json.RawMessage, bits int) (*big.Int, error) {
	t := bytes.TrimSpace(raw)
	var s string
	if len(t) > 0 && t[0] == '"' {
		var err error
		if s, err = decodeString(field, t); err != nil {
			return nil, err
		}
	} else {
		s = string(t)
	}
	v, err := parseIntText(field, s, false)
	if err != nil {
		return nil, err
	}
	if v.BitLen() > bits {
		return nil, fieldErr(field, fmt.Sprintf("exceeds %d bits", bits))
	}
	return v, nil
}

// parseIntText parses "0x…" hex or "[-]123" decimal. Negative values are
// refused unless signed. Length is bounded before big.Int parsing.
func parseIntText(field, s string, signed bool) (*big.Int, error) {
	if s == "" {
		return nil, fieldErr(field, "empty value")
	}
	neg := false
	if s[0] == '-' {
		if !signed {
			return nil, fieldErr(field, "must not be negative")
		}
		neg, s = true, s[1:]
	}
	v := new(big.Int)
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		digits := strings.TrimLeft(s[2:], "0")
		if len(s) == 2 {
			return nil, fieldErr(field, "empty hex quantity")
		}
		if len(digits) > 64 {
			return nil, fieldErr(field, "exceeds 256 bits")
		}
		if digits == "" {
			digits = "0"
		}
		if !isHex(digits) {
			return nil, fieldErr(field, "invalid hex quantity "+quote(s))
		}
		v.SetString(digits, 16)
	} else {
		digits := strings.TrimLeft(s, "0")
		if len(digits) > 80 {
			return nil, fieldErr(field, "exceeds 256 bits")
		}
		if digits == "" {
			digits = "0"
		}
		if !isDecimal(digits) {
			return nil, fieldErr(field, "invalid integer "+quote(s)+": use 0x-hex or decimal digits")
		}
		v.SetString(digits, 10)
	}
	if neg {
		v.Neg(v)
	}
	return v, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return len(s) > 0
}

func isDecimal(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0
}

// parseHexBytes decodes a 0x-prefixed, even-length hex string.
func parseHexBytes(field, s string) ([]byte, error) {
	if len(s) < 2 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X') {
		return nil, fieldErr(field, "must be 0x-prefixed hex")
	}
	b, err := hex.DecodeString(s[2:])
	if err != nil {
		return nil, fieldErr(field, "invalid hex "+quote(s))
	}
	return b, nil
}

// ParseAddress reads a 0x-prefixed 20-byte hex address. A mixed-case
// address must carry a valid EIP-55 checksum: a wrong one is a typo.
func ParseAddress(field, s string) (common.Address, error) {
	b, err := parseHexBytes(field, s)
	if err != nil {
		return common.Address{}, err
	}
	if len(b) != common.AddressLength {
		return common.Address{}, fieldErr(field, fmt.Sprintf("address must be 20 bytes, got %d", len(b)))
	}
	a := common.BytesToAddress(b)
	body := s[2:]
	if body != strings.ToLower(body) && body != strings.ToUpper(body) && a.Hex()[2:] != body {
		return common.Address{}, fieldErr(field, "bad EIP-55 checksum")
	}
	return a, nil
}

func parseAddressJSON(field string, raw json.RawMessage) (common.Address, error) {
	s, err := decodeString(field, raw)
	if err != nil {
		return common.Address{}, err
	}
	return ParseAddress(field, s)
}

func parseHashJSON(field string, raw json.RawMessage) (common.Hash, error) {
	s, err := decodeString(field, raw)
	if err != nil {
		return common.Hash{}, err
	}
	b, err := parseHexBytes(field, s)
	if err != nil {
		return common.Hash{}, err
	}
	if len(b) != common.HashLength {
		return common.Hash{}, fieldErr(field, fmt.Sprintf("must be 32 bytes, got %d", len(b)))
	}
	return common.BytesToHash(b), nil
}

func decodeArray(field string, raw json.RawMessage) ([]json.RawMessage, error) {
	var a []json.RawMessage
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '[' {
		return nil, fieldErr(field, "must be an array")
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, fieldErr(field, "must be an array")
	}
	return a, nil
}
