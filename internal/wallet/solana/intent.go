package solana

import (
	"encoding/binary"
	"math/big"

	"github.com/btcsuite/btcd/btcutil/base58"
	sol "github.com/gagliardetto/solana-go"

	"github.com/moonvault/moonvault/internal/intent"
)

// Instruction layouts decoded for the intent. Both programs encode their
// instruction data as a discriminant followed by fixed little-endian
// fields (bincode for System, the Pack layout for SPL Token).
const (
	// System Program: u32 discriminant.
	sysCreateAccount         = 0  // lamports u64, space u64, owner [32]: [funding, new]
	sysTransfer              = 2  // lamports u64: [from, to]
	sysCreateAccountWithSeed = 3  // base [32], seed (u64 len + bytes), lamports u64, ...: [funding, created, base?]
	sysTransferWithSeed      = 11 // lamports u64, seed (u64 len + bytes), owner [32]: [from, base, to]

	// SPL Token and Token-2022: u8 discriminant.
	tokTransfer        = 3  // amount u64: [source, destination, authority, ...]
	tokApprove         = 4  // amount u64: [source, delegate, owner, ...]
	tokTransferChecked = 12 // amount u64, decimals u8: [source, mint, destination, authority, ...]
	tokApproveChecked  = 13 // amount u64, decimals u8: [source, mint, delegate, owner, ...]
)

// describe builds the intent of a transaction signed by pub.
//
// Value is the lamports the System Program moves out of this account
// (Transfer, TransferWithSeed with this account as base, CreateAccount and
// CreateAccountWithSeed it funds), summed; the network fee is not in the
// message and not counted. Outputs lists each such movement {recipient,
// lamports} and To is the first recipient. Tokens lists every SPL Token
// (or Token-2022) transfer, transferChecked, approve and approveChecked
// whose authority is this account: contract is the mint when the
// instruction names it (the *Checked forms), to is the destination token
// account or the delegate. Token is the first of them. An account loaded
// through an address lookup table has no address in the message; it shows
// as "" (a policy allow-list then does not match it).
func describe(m *sol.Message, pub sol.PublicKey) *intent.Intent {
	in := &intent.Intent{Chain: intent.ChainSolana, Kind: intent.KindTransaction, Value: new(big.Int)}
	key := func(idx uint16) (sol.PublicKey, bool) {
		if int(idx) < len(m.AccountKeys) {
			return m.AccountKeys[idx], true
		}
		return sol.PublicKey{}, false // loaded from a lookup table
	}
	addr := func(idx uint16) string {
		if k, ok := key(idx); ok {
			return base58.Encode(k[:])
		}
		return ""
	}
	is := func(ins sol.CompiledInstruction, pos int) bool {
		if pos >= len(ins.Accounts) {
			return false
		}
		k, ok := key(ins.Accounts[pos])
		return ok && k == pub
	}
	for _, ins := range m.Instructions {
		prog := m.AccountKeys[ins.ProgramIDIndex]
		switch {
		case prog.Equals(sol.SystemProgramID):
			lamports, to, ok := systemOutflow(ins, is)
			if !ok {
				continue
			}
			o := intent.Output{Address: addr(ins.Accounts[to]), Value: new(big.Int).SetUint64(lamports)}
			in.Outputs = append(in.Outputs, o)
			in.Value.Add(in.Value, o.Value)
			if in.To == "" {
				in.To = o.Address
			}
		case prog.Equals(sol.TokenProgramID) || prog.Equals(sol.Token2022ProgramID):
			if t := tokenMove(ins, is, addr); t != nil {
				in.Tokens = append(in.Tokens, *t)
			}
		}
	}
	if len(in.Tokens) > 0 {
		first := in.Tokens[0]
		in.Token = &first
	}
	in.Normalize()
	return in
}

// systemOutflow decodes a System instruction that moves lamports out of
// this account; to is the position of the recipient in its accounts.
func systemOutflow(ins sol.CompiledInstruction, is func(sol.CompiledInstruction, int) bool) (lamports uint64, to int, ok bool) {
	d := []byte(ins.Data)
	if len(d) < 4 {
		return 0, 0, false
	}
	switch binary.LittleEndian.Uint32(d) {
	case sysTransfer:
		if len(d) == 12 && len(ins.Accounts) >= 2 && is(ins, 0) {
			return binary.LittleEndian.Uint64(d[4:]), 1, true
		}
	case sysTransferWithSeed:
		// The funding account is derived from the base, which signs.
		if len(d) >= 12 && len(ins.Accounts) >= 3 && is(ins, 1) {
			return binary.LittleEndian.Uint64(d[4:]), 2, true
		}
	case sysCreateAccount:
		if len(d) >= 12 && len(ins.Accounts) >= 2 && is(ins, 0) {
			return binary.LittleEndian.Uint64(d[4:]), 1, true
		}
	case sysCreateAccountWithSeed:
		// base [32], then a bincode string (u64 length), then lamports.
		if len(d) >= 4+32+8 && len(ins.Accounts) >= 2 && is(ins, 0) {
			n := binary.LittleEndian.Uint64(d[36:])
			if n <= uint64(len(d)) && 44+int(n)+8 <= len(d) { // #nosec G115 -- n bounded by len(d) first
				return binary.LittleEndian.Uint64(d[44+int(n):]), 1, true // #nosec G115 -- as above
			}
		}
	}
	return 0, 0, false
}

// tokenMove decodes an SPL Token movement authorised by this account.
func tokenMove(ins sol.CompiledInstruction, is func(sol.CompiledInstruction, int) bool, addr func(uint16) string) *intent.Token {
	d := []byte(ins.Data)
	if len(d) < 9 {
		return nil
	}
	amount := new(big.Int).SetUint64(binary.LittleEndian.Uint64(d[1:9]))
	a := ins.Accounts
	switch d[0] {
	case tokTransfer:
		if len(d) == 9 && len(a) >= 3 && is(ins, 2) {
			return &intent.Token{Method: "transfer", To: addr(a[1]), Amount: amount}
		}
	case tokApprove:
		if len(d) == 9 && len(a) >= 3 && is(ins, 2) {
			return &intent.Token{Method: "approve", To: addr(a[1]), Amount: amount}
		}
	case tokTransferChecked:
		if len(d) == 10 && len(a) >= 4 && is(ins, 3) {
			return &intent.Token{Contract: addr(a[1]), Method: "transfer", To: addr(a[2]), Amount: amount}
		}
	case tokApproveChecked:
		if len(d) == 10 && len(a) >= 4 && is(ins, 3) {
			return &intent.Token{Contract: addr(a[1]), Method: "approve", To: addr(a[2]), Amount: amount}
		}
	}
	return nil
}
