package solana

import (
	"encoding/binary"
	"fmt"
	"math/big"

	"github.com/btcsuite/btcd/btcutil/base58"
	sol "github.com/gagliardetto/solana-go"

	"github.com/moonvault/moonvault/internal/intent"
)

// The intent of a Solana transaction: what it can take from the account
// (shared/DESIGN.md "Policies"; docs/policies.md "Solana"). A transaction
// is a list of instructions, each run by a program with the accounts it is
// given; a program can move the account's lamports or use its authority
// only when the account is among those accounts (as a signer: signer
// privilege reaches a program, and the programs it calls, only through its
// instruction's accounts) or after the account was assigned to it. So each
// instruction that receives the account is either decoded — System, SPL
// Token, Token-2022, Associated Token Account, Memo — or makes the intent
// undecoded; an instruction of another program that does not receive the
// account cannot touch it. The same holds for the accounts the account
// controls (its token accounts, nonce accounts, accounts derived from it
// with a seed): moving what they hold takes the account's signature in the
// instruction that moves it.

// Programs the describer knows besides System and the token programs.
var (
	computeBudgetProgram = sol.MustPublicKeyFromBase58("ComputeBudget111111111111111111111111111111")
	memoV1Program        = sol.MustPublicKeyFromBase58("Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo")
	// Signature-verification precompiles: no accounts, but each signature
	// they check is charged like a transaction signature.
	ed25519Program   = sol.MustPublicKeyFromBase58("Ed25519SigVerify111111111111111111111111111")
	secp256k1Program = sol.MustPublicKeyFromBase58("KeccakSecp256k11111111111111111111111111111")
	secp256r1Program = sol.MustPublicKeyFromBase58("Secp256r1SigVerify1111111111111111111111111")
)

// Fees (docs/policies.md, "max_fee"). lamportsPerSignature is the base fee
// of each signature: a cluster parameter, 5000 on every public cluster since
// genesis. A transaction without SetComputeUnitLimit may use up to
// defaultUnitsPerInstruction units per instruction (other than
// ComputeBudget's), at most maxComputeUnits; the priority fee is
// ceil(price × limit / 10^6), the price in micro-lamports per unit.
const (
	lamportsPerSignature       = 5000
	defaultUnitsPerInstruction = 200_000
	maxComputeUnits            = 1_400_000
)

// Rent the Associated Token Account program charges its funder: the
// rent-exempt minimum of the account it creates, (128 + size) × 3480
// lamports per byte-year × 2 years. An SPL Token account is 165 bytes; a
// Token-2022 account created by the program holds ImmutableOwner and the
// account extensions its mint can require (TransferFeeAmount,
// NonTransferableAccount, TransferHookAccount, PausableAccount), at most 195
// bytes: the larger bound is counted, so a cap is never passed by less.
const (
	ataRentToken     = (128 + 165) * 6960
	ataRentToken2022 = (128 + 195) * 6960
)

// describer builds the intent of one message for one account.
type describer struct {
	m  *sol.Message
	me sol.PublicKey
	in *intent.Intent
	at int // the instruction being described

	seen      map[sol.PublicKey]bool
	sigs      uint64 // signatures the fee is charged for
	unitLimit int64  // SetComputeUnitLimit, -1 when absent
	unitPrice uint64 // SetComputeUnitPrice, micro-lamports
	others    int64  // instructions other than ComputeBudget's
}

// describe builds the intent of a transaction signed by pub.
//
// Value is the lamports leaving this account or the accounts it controls
// (System Transfer, TransferWithSeed from an account derived from it,
// CreateAccount(WithSeed) it funds, WithdrawNonceAccount under its
// authority to another account, the rent of Associated Token Accounts it
// funds), summed; Outputs lists each {recipient, lamports}; To is the
// first recipient. Tokens lists every token instruction it authorises
// (also as one signer of a multisig): transfer (Transfer, TransferChecked,
// TransferCheckedWithFee), approve, burn, setAuthority, closeAccount;
// Token is the first. MaxFee is what the fee can take when the account
// pays it (Fees above). Programs lists the programs invoked. Decoded is
// false, with a reason for each, when an instruction the describer does not
// decode receives the account, gives the account (or an account derived
// from it) to another program, hands over a nonce account, sends a token
// account's lamports elsewhere, or is an instruction of System, Token,
// Token-2022, Associated Token Account or ComputeBudget it does not know.
// An account loaded through an address lookup table has no address in the
// message; it shows as "" (an allow-list then does not match it).
func describe(m *sol.Message, pub sol.PublicKey) *intent.Intent {
	d := &describer{
		m: m, me: pub, seen: map[sol.PublicKey]bool{}, unitLimit: -1,
		in: &intent.Intent{Chain: intent.ChainSolana, Kind: intent.KindTransaction, Value: new(big.Int), Decoded: true},
	}
	d.sigs = uint64(m.Header.NumRequiredSignatures)
	for i, ins := range m.Instructions {
		d.at = i
		prog := m.AccountKeys[ins.ProgramIDIndex] // sanitize checked the index
		if !d.seen[prog] {
			d.seen[prog] = true
			d.in.Programs = append(d.in.Programs, prog.String())
		}
		if !prog.Equals(computeBudgetProgram) {
			d.others++
		}
		data := []byte(ins.Data)
		switch {
		case prog.Equals(sol.SystemProgramID):
			d.system(ins, data)
		case prog.Equals(sol.TokenProgramID):
			d.token(ins, data, "Token", false)
		case prog.Equals(sol.Token2022ProgramID):
			d.token(ins, data, "Token-2022", true)
		case prog.Equals(sol.SPLAssociatedTokenAccountProgramID):
			d.ata(ins, data)
		case prog.Equals(computeBudgetProgram):
			d.computeBudget(data)
		case prog.Equals(sol.MemoProgramID), prog.Equals(memoV1Program):
			// Memos only log; signers are checked, nothing moves.
		case prog.Equals(ed25519Program), prog.Equals(secp256k1Program), prog.Equals(secp256r1Program):
			if len(data) > 0 {
				d.sigs += uint64(data[0])
			}
			d.foreign(ins, prog)
		default:
			d.foreign(ins, prog)
		}
	}
	if len(d.in.Tokens) > 0 {
		first := d.in.Tokens[0]
		d.in.Token = &first
	}
	d.in.MaxFee = d.maxFee()
	d.in.Normalize()
	return d.in
}

// maxFee is the most the fee can take from the account: nothing unless it
// is the fee payer (the first account).
func (d *describer) maxFee() *big.Int {
	if len(d.m.AccountKeys) == 0 || d.m.AccountKeys[0] != d.me {
		return new(big.Int)
	}
	fee := new(big.Int).Mul(new(big.Int).SetUint64(d.sigs), big.NewInt(lamportsPerSignature))
	limit := d.unitLimit
	if limit < 0 {
		limit = d.others * defaultUnitsPerInstruction
	}
	limit = min(limit, maxComputeUnits)
	if d.unitPrice > 0 && limit > 0 {
		p := new(big.Int).Mul(new(big.Int).SetUint64(d.unitPrice), big.NewInt(limit))
		p.Add(p, big.NewInt(999_999)) // ceil
		fee.Add(fee, p.Quo(p, big.NewInt(1_000_000)))
	}
	return fee
}

func (d *describer) undecoded(format string, args ...any) {
	d.in.Undecodable(fmt.Sprintf("instructions[%d]: ", d.at) + fmt.Sprintf(format, args...))
}

// key is the account at an instruction's position; ok is false when the
// position is absent or the account comes from a lookup table.
func (d *describer) key(ins sol.CompiledInstruction, pos int) (sol.PublicKey, bool) {
	if pos >= len(ins.Accounts) || int(ins.Accounts[pos]) >= len(d.m.AccountKeys) {
		return sol.PublicKey{}, false
	}
	return d.m.AccountKeys[ins.Accounts[pos]], true
}

// addr is the base58 address at a position, "" when unknown.
func (d *describer) addr(ins sol.CompiledInstruction, pos int) string {
	if k, ok := d.key(ins, pos); ok {
		return base58.Encode(k[:])
	}
	return ""
}

func (d *describer) isMe(ins sol.CompiledInstruction, pos int) bool {
	k, ok := d.key(ins, pos)
	return ok && k == d.me
}

// authorises reports whether the account signs as the authority at pos:
// itself, or as one of the multisig signers that follow it.
func (d *describer) authorises(ins sol.CompiledInstruction, pos int) bool {
	for p := pos; p < len(ins.Accounts); p++ {
		if d.isMe(ins, p) {
			return true
		}
	}
	return false
}

// receives reports whether the instruction is given the account.
func (d *describer) receives(ins sol.CompiledInstruction) bool {
	for p := range ins.Accounts {
		if d.isMe(ins, p) {
			return true
		}
	}
	return false
}

// foreign handles an instruction of a program the describer does not
// decode: harmless unless it receives the account (which, being a
// required signer, is a signer wherever it appears).
func (d *describer) foreign(ins sol.CompiledInstruction, prog sol.PublicKey) {
	if !d.receives(ins) {
		return
	}
	role := "a signer"
	if d.meWritable() {
		role = "a writable signer"
	}
	d.undecoded("program %s receives the account as %s", prog, role)
}

// meWritable reports whether the account is writable in the message (it
// is a required signer, so among the first NumRequiredSignatures keys).
func (d *describer) meWritable() bool {
	h := d.m.Header
	for i := 0; i < int(h.NumRequiredSignatures) && i < len(d.m.AccountKeys); i++ {
		if d.m.AccountKeys[i] == d.me {
			return i < int(h.NumRequiredSignatures)-int(h.NumReadonlySignedAccounts)
		}
	}
	return false
}

// output records lamports leaving the account to the account at pos.
func (d *describer) output(ins sol.CompiledInstruction, pos int, lamports uint64) {
	d.outputTo(d.addr(ins, pos), new(big.Int).SetUint64(lamports))
}

func (d *describer) outputTo(addr string, v *big.Int) {
	d.in.Outputs = append(d.in.Outputs, intent.Output{Address: addr, Value: v})
	d.in.Value.Add(d.in.Value, v)
	if d.in.To == "" {
		d.in.To = addr
	}
}

// System Program instructions: a u32 tag, then bincode fields. The
// program ignores bytes after the fields (limited_deserialize), so the
// describer does too; data shorter than the fields fails on chain and is
// undecoded here.
const (
	sysCreateAccount          = 0  // lamports u64, space u64, owner: [funding, new]
	sysAssign                 = 1  // owner: [assigned]
	sysTransfer               = 2  // lamports u64: [from, to]
	sysCreateAccountWithSeed  = 3  // base, seed, lamports u64, space u64, owner: [funding, created, base?]
	sysAdvanceNonceAccount    = 4  // [nonce, recent blockhashes, authority]
	sysWithdrawNonceAccount   = 5  // lamports u64: [nonce, to, recent blockhashes, rent, authority]
	sysInitializeNonceAccount = 6  // authority: [nonce, recent blockhashes, rent]
	sysAuthorizeNonceAccount  = 7  // new authority: [nonce, authority]
	sysAllocate               = 8  // space u64: [allocated]
	sysAllocateWithSeed       = 9  // base, seed, space u64, owner: [allocated, base]
	sysAssignWithSeed         = 10 // base, seed, owner: [assigned, base]
	sysTransferWithSeed       = 11 // lamports u64, seed, owner: [from, base, to]
	sysUpgradeNonceAccount    = 12 // [nonce]
)

var systemNames = map[uint32]string{
	sysCreateAccount: "CreateAccount", sysAssign: "Assign", sysTransfer: "Transfer",
	sysCreateAccountWithSeed: "CreateAccountWithSeed", sysAdvanceNonceAccount: "AdvanceNonceAccount",
	sysWithdrawNonceAccount: "WithdrawNonceAccount", sysInitializeNonceAccount: "InitializeNonceAccount",
	sysAuthorizeNonceAccount: "AuthorizeNonceAccount", sysAllocate: "Allocate", sysAllocateWithSeed: "AllocateWithSeed",
	sysAssignWithSeed: "AssignWithSeed", sysTransferWithSeed: "TransferWithSeed", sysUpgradeNonceAccount: "UpgradeNonceAccount",
}

// reader reads bincode fields; a short read sets bad.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || n < 0 || n > len(r.b) {
		r.bad = true
		return make([]byte, max(n, 0))
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u64() uint64        { return binary.LittleEndian.Uint64(r.take(8)) }
func (r *reader) u32() uint32        { return binary.LittleEndian.Uint32(r.take(4)) }
func (r *reader) key() sol.PublicKey { return sol.PublicKeyFromBytes(r.take(32)) }

// str skips a bincode string (u64 length, bytes).
func (r *reader) str() {
	n := r.u64()
	if n > uint64(len(r.b)) {
		r.bad = true
		return
	}
	r.take(int(n)) // #nosec G115 -- n is at most len(r.b)
}

func (d *describer) system(ins sol.CompiledInstruction, data []byte) {
	if len(data) < 4 {
		d.undecoded("System instruction without a tag")
		return
	}
	tag := binary.LittleEndian.Uint32(data)
	name, known := systemNames[tag]
	if !known {
		d.undecoded("System instruction %d is not one the vault decodes", tag)
		return
	}
	r := &reader{b: data[4:]}
	// Each case reads its fields first, then acts if they were all there.
	switch tag {
	case sysCreateAccount:
		lamports, _, owner := r.u64(), r.u64(), r.key()
		if !d.fieldsOK(r, name) {
			return
		}
		if d.isMe(ins, 0) {
			d.output(ins, 1, lamports)
		}
		if d.isMe(ins, 1) && !owner.Equals(sol.SystemProgramID) {
			d.undecoded("System %s gives the account to program %s", name, owner)
		}
	case sysAssign:
		owner := r.key()
		if d.fieldsOK(r, name) && d.isMe(ins, 0) && !owner.Equals(sol.SystemProgramID) {
			d.undecoded("System %s gives the account to program %s", name, owner)
		}
	case sysTransfer:
		lamports := r.u64()
		if d.fieldsOK(r, name) && d.isMe(ins, 0) {
			d.output(ins, 1, lamports)
		}
	case sysCreateAccountWithSeed:
		r.key()
		r.str()
		lamports, _, _ := r.u64(), r.u64(), r.key()
		if d.fieldsOK(r, name) && d.isMe(ins, 0) {
			d.output(ins, 1, lamports)
		}
	case sysWithdrawNonceAccount:
		lamports := r.u64()
		if d.fieldsOK(r, name) && d.isMe(ins, 4) && !d.isMe(ins, 1) {
			d.output(ins, 1, lamports)
		}
	case sysInitializeNonceAccount:
		r.key()
		d.fieldsOK(r, name)
	case sysAuthorizeNonceAccount:
		next := r.key()
		if d.fieldsOK(r, name) && d.isMe(ins, 1) && next != d.me {
			d.undecoded("System %s hands the nonce account %s to %s", name, d.addr(ins, 0), next)
		}
	case sysAllocate:
		r.u64()
		d.fieldsOK(r, name)
	case sysAllocateWithSeed, sysAssignWithSeed:
		base := r.key()
		r.str()
		if tag == sysAllocateWithSeed {
			r.u64()
		}
		owner := r.key()
		if d.fieldsOK(r, name) && base == d.me && !owner.Equals(sol.SystemProgramID) {
			d.undecoded("System %s gives an account derived from the account to program %s", name, owner)
		}
	case sysTransferWithSeed:
		lamports := r.u64()
		r.str()
		r.key()
		// The account moved from is derived from the base, which signs.
		if d.fieldsOK(r, name) && d.isMe(ins, 1) {
			d.output(ins, 2, lamports)
		}
	case sysAdvanceNonceAccount, sysUpgradeNonceAccount:
		// No fields; nothing moves.
	}
}

// fieldsOK reports whether every field was read; if not, the instruction
// is undecoded (it fails on chain, but the vault does not rely on that).
func (d *describer) fieldsOK(r *reader, name string) bool {
	if r.bad {
		d.undecoded("System %s: data too short", name)
	}
	return !r.bad
}

// SPL Token and Token-2022 instructions: a u8 tag, then packed fields; the
// programs ignore bytes after the fields. The authority of an instruction
// signs at its position, or is a multisig whose signers follow it.
const (
	tokInitializeMint         = 0
	tokInitializeAccount      = 1
	tokInitializeMultisig     = 2
	tokTransfer               = 3  // amount u64: [source, destination, authority, ...]
	tokApprove                = 4  // amount u64: [source, delegate, owner, ...]
	tokRevoke                 = 5  // [source, owner, ...]
	tokSetAuthority           = 6  // type u8, COption<Pubkey>: [account or mint, authority, ...]
	tokMintTo                 = 7  // amount u64: [mint, destination, authority, ...]
	tokBurn                   = 8  // amount u64: [account, mint, owner, ...]
	tokCloseAccount           = 9  // [account, destination, owner, ...]
	tokFreezeAccount          = 10 // [account, mint, authority, ...]
	tokThawAccount            = 11
	tokTransferChecked        = 12 // amount u64, decimals u8: [source, mint, destination, authority, ...]
	tokApproveChecked         = 13 // amount u64, decimals u8: [source, mint, delegate, owner, ...]
	tokMintToChecked          = 14
	tokBurnChecked            = 15 // amount u64, decimals u8: [account, mint, owner, ...]
	tokInitializeAccount2     = 16
	tokSyncNative             = 17
	tokInitializeAccount3     = 18
	tokInitializeMultisig2    = 19
	tokInitializeMint2        = 20
	tokGetAccountDataSize     = 21
	tokInitializeImmutable    = 22
	tokAmountToUiAmount       = 23
	tokUiAmountToAmount       = 24
	tokInitializeMintClose    = 25 // Token-2022 only, from here on
	tokTransferFeeExtension   = 26 // sub-tag u8, then its fields
	feeTransferCheckedWithFee = 1  // amount u64, decimals u8, fee u64: [source, mint, destination, authority, ...]
	feeHarvestToMint          = 4  // permissionless
	feeInitializeConfig       = 0  // before the mint is initialised; no signer
)

// Authority types of SetAuthority that concern a token account (the rest
// concern a mint).
const (
	authAccountOwner = 2
	authCloseAccount = 3
)

func (d *describer) token(ins sol.CompiledInstruction, data []byte, prog string, is2022 bool) {
	if len(data) == 0 {
		d.undecoded("%s instruction without a tag", prog)
		return
	}
	tag := data[0]
	r := &reader{b: data[1:]}
	short := func() bool {
		if r.bad {
			d.undecoded("%s instruction %d: data too short", prog, tag)
		}
		return r.bad
	}
	add := func(t intent.Token) {
		if t.Amount == nil {
			t.Amount = new(big.Int)
		}
		d.in.Tokens = append(d.in.Tokens, t)
	}
	amount := func() *big.Int { return new(big.Int).SetUint64(r.u64()) }
	switch tag {
	case tokTransfer, tokApprove:
		a := amount()
		if short() || !d.authorises(ins, 2) {
			return
		}
		method := map[byte]string{tokTransfer: "transfer", tokApprove: "approve"}[tag]
		add(intent.Token{Method: method, To: d.addr(ins, 1), Amount: a})
	case tokTransferChecked, tokApproveChecked:
		a := amount()
		r.take(1)
		if short() || !d.authorises(ins, 3) {
			return
		}
		method := map[byte]string{tokTransferChecked: "transfer", tokApproveChecked: "approve"}[tag]
		add(intent.Token{Contract: d.addr(ins, 1), Method: method, To: d.addr(ins, 2), Amount: a})
	case tokBurn, tokBurnChecked:
		a := amount()
		if tag == tokBurnChecked {
			r.take(1)
		}
		if short() || !d.authorises(ins, 2) {
			return
		}
		add(intent.Token{Contract: d.addr(ins, 1), Method: "burn", Amount: a})
	case tokSetAuthority:
		typ := r.take(1)[0]
		var next string
		if r.take(1)[0] == 1 {
			k := r.key()
			next = base58.Encode(k[:])
		}
		if short() || !d.authorises(ins, 1) {
			return
		}
		t := intent.Token{Method: "setAuthority", From: d.addr(ins, 0), To: next,
			Unlimited: next != "" && next != d.me.String()}
		if typ != authAccountOwner && typ != authCloseAccount {
			t.Contract = t.From // the account is a mint
		}
		add(t)
	case tokCloseAccount:
		if !d.authorises(ins, 2) {
			return
		}
		t := intent.Token{Method: "closeAccount", From: d.addr(ins, 0), To: d.addr(ins, 1)}
		if !d.isMe(ins, 1) {
			// Its lamports (all of them, for wrapped SOL) leave, in an
			// amount the transaction does not state.
			t.Unlimited = true
			d.undecoded("%s CloseAccount sends the lamports of %s to %s", prog, t.From, t.To)
		}
		add(t)
	case tokInitializeMint, tokInitializeAccount, tokInitializeMultisig, tokRevoke, tokMintTo,
		tokFreezeAccount, tokThawAccount, tokMintToChecked, tokInitializeAccount2, tokSyncNative,
		tokInitializeAccount3, tokInitializeMultisig2, tokInitializeMint2, tokGetAccountDataSize,
		tokInitializeImmutable, tokAmountToUiAmount, tokUiAmountToAmount:
		// Nothing leaves the account: set-up, revoking, minting, freezing,
		// queries.
	case tokInitializeMintClose:
		if !is2022 {
			d.undecoded("%s instruction %d is not one the vault decodes", prog, tag)
		}
	case tokTransferFeeExtension:
		if !is2022 {
			d.undecoded("%s instruction %d is not one the vault decodes", prog, tag)
			return
		}
		sub := r.take(1)[0]
		switch {
		case r.bad:
			d.undecoded("%s TransferFeeExtension without a sub-instruction", prog)
		case sub == feeTransferCheckedWithFee:
			a := amount()
			r.take(1)
			r.u64()
			if short() || !d.authorises(ins, 3) {
				return
			}
			add(intent.Token{Contract: d.addr(ins, 1), Method: "transfer", To: d.addr(ins, 2), Amount: a})
		case sub == feeHarvestToMint, sub == feeInitializeConfig:
		default:
			d.undecoded("%s TransferFeeExtension instruction %d is not one the vault decodes", prog, sub)
		}
	default:
		d.undecoded("%s instruction %d is not one the vault decodes", prog, tag)
	}
}

// Associated Token Account program: Create (no data or 0),
// CreateIdempotent (1): [funder, ata, wallet, mint, system, token program];
// RecoverNested (2) moves tokens between two accounts of one wallet.
func (d *describer) ata(ins sol.CompiledInstruction, data []byte) {
	tag := byte(0)
	if len(data) > 0 {
		tag = data[0]
	}
	switch tag {
	case 0, 1:
		if !d.isMe(ins, 0) {
			return
		}
		prog, _ := d.key(ins, 5)
		switch {
		case prog.Equals(sol.TokenProgramID):
			d.outputTo(d.addr(ins, 1), big.NewInt(ataRentToken))
		case prog.Equals(sol.Token2022ProgramID):
			d.outputTo(d.addr(ins, 1), big.NewInt(ataRentToken2022))
		default:
			d.undecoded("AssociatedTokenAccount Create for token program %s", d.addr(ins, 5))
		}
	case 2:
	default:
		d.undecoded("AssociatedTokenAccount instruction %d is not one the vault decodes", tag)
	}
}

// ComputeBudget: 1 RequestHeapFrame (u32), 2 SetComputeUnitLimit (u32),
// 3 SetComputeUnitPrice (u64 micro-lamports), 4
// SetLoadedAccountsDataSizeLimit (u32). A repeated instruction fails the
// transaction; the largest value is counted.
func (d *describer) computeBudget(data []byte) {
	if len(data) == 0 {
		d.undecoded("ComputeBudget instruction without a tag")
		return
	}
	r := &reader{b: data[1:]}
	switch data[0] {
	case 1, 4:
		r.u32()
	case 2:
		d.unitLimit = max(d.unitLimit, int64(r.u32()))
	case 3:
		d.unitPrice = max(d.unitPrice, r.u64())
	default:
		d.undecoded("ComputeBudget instruction %d is not one the vault decodes", data[0])
		return
	}
	if r.bad {
		d.undecoded("ComputeBudget instruction %d: data too short", data[0])
	}
}
