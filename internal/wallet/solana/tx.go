package solana

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"

	bin "github.com/gagliardetto/binary"
	sol "github.com/gagliardetto/solana-go"

	"github.com/moonvault/moonvault/internal/errkind"
)

// MaxTransactionSize is the largest wire transaction Solana accepts (the
// IPv6 MTU less headers, PACKET_DATA_SIZE).
const MaxTransactionSize = 1232

// Errors that are not about one field.
var (
	// ErrNotSigner: the account is not among the transaction's required
	// signers, so its signature would be meaningless (or worse, a
	// signature over a message it is not part of).
	ErrNotSigner = errkind.New(errkind.Invalid, "not_a_signer", "this account is not a required signer of the transaction")
)

func fieldErr(name, msg string) error { return errkind.FieldErr(name, msg) }

// wireTx is a decoded, checked wire transaction.
type wireTx struct {
	sigs []sol.Signature
	msg  *sol.Message
	raw  []byte // the message bytes, exactly as received: what is signed
}

// decodeTx decodes base64 text strictly and the transaction in it.
func decodeTx(encoded string) (*wireTx, error) {
	if encoded == "" {
		return nil, fieldErr("transaction", "required")
	}
	if len(encoded) > base64.StdEncoding.EncodedLen(MaxTransactionSize) {
		return nil, &errkind.Field{Name: "transaction", Msg: fmt.Sprintf("larger than %d bytes, the most Solana accepts", MaxTransactionSize), K: errkind.TooLarge, Code: "payload_too_large"}
	}
	if strings.ContainsAny(encoded, "\r\n") {
		return nil, fieldErr("transaction", "not base64: line breaks are not allowed")
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(encoded)
	if err != nil {
		return nil, fieldErr("transaction", "not base64 (standard alphabet, padded)")
	}
	if len(raw) > MaxTransactionSize {
		return nil, &errkind.Field{Name: "transaction", Msg: fmt.Sprintf("larger than %d bytes, the most Solana accepts", MaxTransactionSize), K: errkind.TooLarge, Code: "payload_too_large"}
	}
	return parseTx(raw)
}

// parseTx decodes a wire transaction: a compact-u16 count of signatures,
// the signatures, and the message.
func parseTx(raw []byte) (*wireTx, error) {
	d := bin.NewBinDecoder(raw)
	n, err := d.ReadCompactU16()
	if err != nil {
		return nil, fieldErr("transaction", "malformed: no signature count")
	}
	head := len(raw) - d.Remaining()
	if n > d.Remaining()/sol.SignatureLength {
		return nil, fieldErr("transaction", "malformed: more signatures than bytes")
	}
	t := &wireTx{sigs: make([]sol.Signature, n)}
	for i := range t.sigs {
		copy(t.sigs[i][:], raw[head+i*sol.SignatureLength:])
	}
	t.raw = raw[head+n*sol.SignatureLength:]
	if t.msg, err = parseMessage(t.raw); err != nil {
		return nil, err
	}
	if head != compactLen(n) {
		return nil, fieldErr("transaction", "malformed: signature count is not canonically encoded")
	}
	if n != int(t.msg.Header.NumRequiredSignatures) {
		return nil, fieldErr("transaction", fmt.Sprintf("carries %d signature slots but the message requires %d", n, t.msg.Header.NumRequiredSignatures))
	}
	return t, nil
}

func compactLen(n int) int {
	var b []byte
	bin.EncodeCompactU16Length(&b, n)
	return len(b)
}

// parseMessage decodes a legacy or v0 message with solana-go and checks
// it as the Solana runtime's sanitizer does, and that it re-encodes to
// exactly the bytes given (so that what is described is what is signed).
func parseMessage(raw []byte) (m *sol.Message, err error) {
	if len(raw) == 0 {
		return nil, fieldErr("transaction.message", "missing")
	}
	// The high bit of the first byte marks a versioned message; 0x80 is
	// v0, the only version defined.
	if raw[0]&0x80 != 0 && raw[0] != 0x80 {
		return nil, fieldErr("transaction.message", fmt.Sprintf("unsupported message version %d", raw[0]&0x7f))
	}
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fieldErr("transaction.message", "malformed")
		}
	}()
	m = new(sol.Message)
	d := bin.NewBinDecoder(raw)
	if err := m.UnmarshalWithDecoder(d); err != nil {
		return nil, fieldErr("transaction.message", "malformed")
	}
	if d.Remaining() != 0 {
		return nil, fieldErr("transaction.message", fmt.Sprintf("%d bytes after the end of the message", d.Remaining()))
	}
	again, err := m.MarshalBinary()
	if err != nil || !bytes.Equal(again, raw) {
		return nil, fieldErr("transaction.message", "not canonically encoded")
	}
	if err := sanitize(m); err != nil {
		return nil, err
	}
	return m, nil
}

// looksLikeMessage reports whether data, or a prefix of it, decodes as a
// transaction message the runtime would accept. Looser than parseMessage
// (trailing bytes and non-canonical lengths pass) on purpose: it guards
// sign-message against signing a transaction.
func looksLikeMessage(data []byte) (ok bool) {
	if len(data) == 0 || (data[0]&0x80 != 0 && data[0] != 0x80) {
		return false
	}
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	m := new(sol.Message)
	if err := m.UnmarshalWithDecoder(bin.NewBinDecoder(data)); err != nil {
		return false
	}
	return sanitize(m) == nil
}

// sanitize applies the runtime's Message::sanitize rules (legacy and v0),
// and refuses an account listed twice.
func sanitize(m *sol.Message) error {
	h := m.Header
	static := len(m.AccountKeys)
	loaded := 0
	for i, l := range m.AddressTableLookups {
		if len(l.WritableIndexes)+len(l.ReadonlyIndexes) == 0 {
			return fieldErr(fmt.Sprintf("transaction.message.address_table_lookups[%d]", i), "loads no account")
		}
		loaded += len(l.WritableIndexes) + len(l.ReadonlyIndexes)
	}
	switch {
	case h.NumRequiredSignatures == 0:
		return fieldErr("transaction.message.header", "no required signature (the fee payer signs)")
	case h.NumReadonlySignedAccounts >= h.NumRequiredSignatures:
		return fieldErr("transaction.message.header", "the fee payer must be writable")
	case int(h.NumRequiredSignatures)+int(h.NumReadonlyUnsignedAccounts) > static:
		return fieldErr("transaction.message.header", "counts more signers and read-only accounts than account keys")
	case static+loaded > 256:
		return fieldErr("transaction.message.account_keys", "more than 256 accounts")
	}
	seen := make(map[sol.PublicKey]int, static)
	for i, k := range m.AccountKeys {
		if j, dup := seen[k]; dup {
			return fieldErr(fmt.Sprintf("transaction.message.account_keys[%d]", i), fmt.Sprintf("repeats account_keys[%d]", j))
		}
		seen[k] = i
	}
	for i, ins := range m.Instructions {
		name := fmt.Sprintf("transaction.message.instructions[%d]", i)
		// Programs are static accounts and never the fee payer.
		if ins.ProgramIDIndex == 0 || int(ins.ProgramIDIndex) >= static {
			return fieldErr(name+".program_id_index", "out of range")
		}
		for j, a := range ins.Accounts {
			if int(a) >= static+loaded {
				return fieldErr(fmt.Sprintf("%s.accounts[%d]", name, j), "out of range")
			}
		}
	}
	return nil
}

// signerSlot is the index of pub among the required signers, or -1.
func signerSlot(m *sol.Message, pub sol.PublicKey) int {
	for i := 0; i < int(m.Header.NumRequiredSignatures); i++ {
		if m.AccountKeys[i] == pub {
			return i
		}
	}
	return -1
}

// encode renders the transaction with its signatures, base64.
func (t *wireTx) encode() string {
	var b []byte
	bin.EncodeCompactU16Length(&b, len(t.sigs))
	out := make([]byte, 0, len(b)+len(t.sigs)*sol.SignatureLength+len(t.raw))
	out = append(out, b...)
	for _, s := range t.sigs {
		out = append(out, s[:]...)
	}
	out = append(out, t.raw...)
	return base64.StdEncoding.EncodeToString(out)
}
