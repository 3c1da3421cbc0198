// Package evm parses and signs Ethereum payloads: JSON-RPC transaction
// objects (types 0-4), EIP-191 messages and EIP-712 typed data. It is pure:
// no storage, no key management. Encoding is go-ethereum's (core/types, rlp,
// signer/core/apitypes, accounts.TextHash); this package only validates the
// untrusted JSON strictly before handing it over.
package evm

import (
	"unicode/utf8"

	"github.com/moonvault/moonvault/internal/errkind"
)

// FieldError reports invalid input and names the offending field, with a
// JSON path for nested values (e.g. "message.to.wallets[1]",
// "accessList[0].storageKeys[2]"). Every parse error of this package is, or
// wraps, a *FieldError: the vault's one field-error shape, of kind Invalid.
type FieldError = errkind.Field

func fieldErr(field, msg string) *FieldError { return &FieldError{Name: field, Msg: msg} }

// quote renders a user-supplied value for an error message, truncated so
// that a megabyte of junk does not end up in a log line.
func quote(s string) string {
	const max = 48
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return "\"" + s + "\""
}
