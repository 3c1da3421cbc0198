package solana

import (
	"encoding/binary"
	"os"
	"slices"
	"strings"
	"testing"

	sol "github.com/gagliardetto/solana-go"
	"github.com/moonvault/moonvault/internal/vectors"
)

// The intent vectors: each case builds a transaction signed by "me" (the
// fee payer unless the case says otherwise) and states the intent a policy
// must see. testdata/good_intents.json holds every case's wire transaction
// and expected intent (regenerate with MV_WRITE_TESTDATA=1 after changing
// the cases); TestIntentVectors checks the file. Addresses in the expected
// intents are written "@name": the key newSigner(name) makes.

type wantSolToken struct {
	Contract  string `json:"contract,omitempty"`
	Method    string `json:"method"`
	From      string `json:"from,omitempty"`
	To        string `json:"to,omitempty"`
	Amount    string `json:"amount"`
	Unlimited bool   `json:"unlimited,omitempty"`
}

type wantSolOutput struct {
	Address string `json:"address"`
	Value   string `json:"value"`
}

type wantSolIntent struct {
	Decoded bool            `json:"decoded"`
	Value   string          `json:"value"`
	MaxFee  string          `json:"max_fee"`
	To      string          `json:"to,omitempty"`
	Outputs []wantSolOutput `json:"outputs,omitempty"`
	Tokens  []wantSolToken  `json:"tokens,omitempty"`
	// Programs lists the programs invoked, by name (see programNames).
	Programs []string `json:"programs"`
	// Reasons are substrings of the undecoded reasons, in order.
	Reasons []string `json:"reasons,omitempty"`
}

type solVector struct {
	Name        string        `json:"name"`
	Transaction string        `json:"transaction"` // base64 wire transaction
	Signer      string        `json:"signer"`      // the seed name of the signing account
	Want        wantSolIntent `json:"want"`
}

// Well-known programs, by the names the vectors use.
var (
	computeBudgetID = sol.MustPublicKeyFromBase58("ComputeBudget111111111111111111111111111111")
	ed25519ID       = sol.MustPublicKeyFromBase58("Ed25519SigVerify111111111111111111111111111")
	memoV1ID        = sol.MustPublicKeyFromBase58("Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo")
)

var programNames = map[string]sol.PublicKey{
	"system": sol.SystemProgramID, "token": sol.TokenProgramID, "token2022": sol.Token2022ProgramID,
	"ata": sol.SPLAssociatedTokenAccountProgramID, "compute": computeBudgetID, "memo": sol.MemoProgramID,
	"memo1": memoV1ID, "ed25519": ed25519ID, "stake": sol.StakeProgramID,
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// sysIx is a System Program instruction: u32 tag, then fields.
func sysIx(tag uint32, fields []byte, metas ...*sol.AccountMeta) sol.Instruction {
	return sol.NewInstruction(sol.SystemProgramID, sol.AccountMetaSlice(metas), slices.Concat(le32(tag), fields))
}

// tokIx is an SPL Token (or Token-2022) instruction: u8 tag, then fields.
func tokIx(program sol.PublicKey, tag byte, fields []byte, metas ...*sol.AccountMeta) sol.Instruction {
	return sol.NewInstruction(program, sol.AccountMetaSlice(metas), slices.Concat([]byte{tag}, fields))
}

func seedStr(s string) []byte { return slices.Concat(le64(uint64(len(s))), []byte(s)) }

type solCase struct {
	name   string
	payer  string // fee payer seed name; "" is "me"
	ins    func(k func(string) sol.PublicKey) []sol.Instruction
	want   wantSolIntent
	signer string // "" is "me"
}

func solCases(t testing.TB) []solCase {
	w := func(k sol.PublicKey) *sol.AccountMeta { return sol.Meta(k).WRITE() }
	ws := func(k sol.PublicKey) *sol.AccountMeta { return sol.Meta(k).WRITE().SIGNER() }
	r := func(k sol.PublicKey) *sol.AccountMeta { return sol.Meta(k) }
	rs := func(k sol.PublicKey) *sol.AccountMeta { return sol.Meta(k).SIGNER() }
	pk := func(k sol.PublicKey) []byte { return k[:] }
	derived := func(k func(string) sol.PublicKey, seed string, owner sol.PublicKey) sol.PublicKey {
		d, err := sol.CreateWithSeed(k("me"), seed, owner)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	fee := "5000"
	return []solCase{
		{name: "system transfer", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{sysIx(2, le64(100), ws(k("me")), w(k("a")))}
		}, want: wantSolIntent{Decoded: true, Value: "100", MaxFee: fee, To: "@a",
			Outputs: []wantSolOutput{{"@a", "100"}}, Programs: []string{"system"}}},
		{name: "system transfer with a trailing byte still moves lamports", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{sysIx(2, append(le64(100), 0), ws(k("me")), w(k("a")))}
		}, want: wantSolIntent{Decoded: true, Value: "100", MaxFee: fee, To: "@a",
			Outputs: []wantSolOutput{{"@a", "100"}}, Programs: []string{"system"}}},
		{name: "system transfer too short", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{sysIx(2, le32(100), ws(k("me")), w(k("a")))}
		}, want: wantSolIntent{Decoded: false, Value: "0", MaxFee: fee, Programs: []string{"system"}, Reasons: []string{"instructions[0]: System Transfer: data too short"}}},
		{name: "system assign of the account to a program", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{sysIx(1, pk(k("attacker")), ws(k("me")))}
		}, want: wantSolIntent{Decoded: false, Value: "0", MaxFee: fee, Programs: []string{"system"},
			Reasons: []string{"instructions[0]: System Assign gives the account to program @attacker"}}},
		{name: "system assign to the system program", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{sysIx(1, pk(sol.SystemProgramID), ws(k("me")))}
		}, want: wantSolIntent{Decoded: true, Value: "0", MaxFee: fee, Programs: []string{"system"}}},
		{name: "system allocate", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{sysIx(8, le64(10), ws(k("me")))}
		}, want: wantSolIntent{Decoded: true, Value: "0", MaxFee: fee, Programs: []string{"system"}}},
		{name: "system create account funded by the account", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{sysIx(0, slices.Concat(le64(2_000), le64(165), pk(sol.TokenProgramID)), ws(k("me")), ws(k("new")))}
		}, want: wantSolIntent{Decoded: true, Value: "2000", MaxFee: "10000", To: "@new",
			Outputs: []wantSolOutput{{"@new", "2000"}}, Programs: []string{"system"}}},
		{name: "system create account of the account itself for a program", payer: "payer", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{sysIx(0, slices.Concat(le64(1), le64(0), pk(k("attacker"))), ws(k("payer")), ws(k("me")))}
		}, want: wantSolIntent{Decoded: false, Value: "0", MaxFee: "0", Programs: []string{"system"},
			Reasons: []string{"instructions[0]: System CreateAccount gives the account to program @attacker"}}},
		{name: "system create account with seed, transfer with seed", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			d := derived(k, "vault", sol.SystemProgramID)
			return []sol.Instruction{
				sysIx(3, slices.Concat(pk(k("me")), seedStr("vault"), le64(30), le64(0), pk(sol.SystemProgramID)), ws(k("me")), w(d), rs(k("me"))),
				sysIx(11, slices.Concat(le64(4), seedStr("vault"), pk(sol.SystemProgramID)), w(d), rs(k("me")), w(k("b"))),
			}
		}, want: wantSolIntent{Decoded: true, Value: "34", MaxFee: fee, To: "@vault",
			Outputs: []wantSolOutput{{"@vault", "30"}, {"@b", "4"}}, Programs: []string{"system"}}},
		{name: "system assign with seed to a program", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			d := derived(k, "vault", sol.SystemProgramID)
			return []sol.Instruction{sysIx(10, slices.Concat(pk(k("me")), seedStr("vault"), pk(k("attacker"))), w(d), rs(k("me")))}
		}, want: wantSolIntent{Decoded: false, Value: "0", MaxFee: fee, Programs: []string{"system"},
			Reasons: []string{"instructions[0]: System AssignWithSeed gives an account derived from the account to program @attacker"}}},
		{name: "system allocate with seed for a program", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			d := derived(k, "vault", sol.SystemProgramID)
			return []sol.Instruction{sysIx(9, slices.Concat(pk(k("me")), seedStr("vault"), le64(8), pk(k("attacker"))), w(d), rs(k("me")))}
		}, want: wantSolIntent{Decoded: false, Value: "0", MaxFee: fee, Programs: []string{"system"},
			Reasons: []string{"instructions[0]: System AllocateWithSeed gives an account derived from the account to program @attacker"}}},
		{name: "nonce: withdraw to another account, advance", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{
				sysIx(4, nil, w(k("nonce")), r(sol.SysVarRecentBlockHashesPubkey), rs(k("me"))),
				sysIx(5, le64(700), w(k("nonce")), w(k("a")), r(sol.SysVarRecentBlockHashesPubkey), r(sol.SysVarRentPubkey), rs(k("me"))),
				sysIx(5, le64(9), w(k("nonce")), w(k("me")), r(sol.SysVarRecentBlockHashesPubkey), r(sol.SysVarRentPubkey), rs(k("me"))),
			}
		}, want: wantSolIntent{Decoded: true, Value: "700", MaxFee: fee, To: "@a",
			Outputs: []wantSolOutput{{"@a", "700"}}, Programs: []string{"system"}}},
		{name: "nonce: authorize another authority", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{sysIx(7, pk(k("attacker")), w(k("nonce")), rs(k("me")))}
		}, want: wantSolIntent{Decoded: false, Value: "0", MaxFee: fee, Programs: []string{"system"},
			Reasons: []string{"instructions[0]: System AuthorizeNonceAccount hands the nonce account @nonce to @attacker"}}},
		{name: "unknown system instruction", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{sysIx(99, nil, w(k("a")))}
		}, want: wantSolIntent{Decoded: false, Value: "0", MaxFee: fee, Programs: []string{"system"},
			Reasons: []string{"instructions[0]: System instruction 99 is not one the vault decodes"}}},
		{name: "token transfer, approve (unchecked: mint unknown)", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{
				tokIx(sol.TokenProgramID, 3, le64(5_000), w(k("src")), w(k("dst")), rs(k("me"))),
				tokIx(sol.TokenProgramID, 4, append(le64(7_000), 1), w(k("src")), r(k("dst")), rs(k("me"))), // trailing byte ignored, as the program does
				tokIx(sol.TokenProgramID, 3, le64(1), w(k("src")), w(k("dst")), rs(k("other"))),             // another authority
			}
		}, want: wantSolIntent{Decoded: true, Value: "0", MaxFee: "10000", Tokens: []wantSolToken{
			{Method: "transfer", To: "@dst", Amount: "5000"}, {Method: "approve", To: "@dst", Amount: "7000"},
		}, Programs: []string{"token"}}},
		{name: "token transfer signed by the account as a multisig signer", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{tokIx(sol.TokenProgramID, 12, append(le64(42), 6), w(k("src")), r(k("mint")), w(k("dst")), r(k("multisig")), rs(k("other")), rs(k("me")))}
		}, want: wantSolIntent{Decoded: true, Value: "0", MaxFee: "10000", Tokens: []wantSolToken{
			{Contract: "@mint", Method: "transfer", To: "@dst", Amount: "42"},
		}, Programs: []string{"token"}}},
		{name: "token set authority of a token account", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{
				tokIx(sol.TokenProgramID, 6, slices.Concat([]byte{2, 1}, pk(k("attacker"))), w(k("src")), rs(k("me"))),
				tokIx(sol.TokenProgramID, 6, slices.Concat([]byte{0, 1}, pk(k("attacker"))), w(k("mint")), rs(k("me"))),
				tokIx(sol.TokenProgramID, 6, []byte{1, 0}, w(k("mint")), rs(k("me"))), // freeze authority removed: nothing granted
			}
		}, want: wantSolIntent{Decoded: true, Value: "0", MaxFee: fee, Tokens: []wantSolToken{
			{Method: "setAuthority", From: "@src", To: "@attacker", Amount: "0", Unlimited: true},
			{Contract: "@mint", Method: "setAuthority", From: "@mint", To: "@attacker", Amount: "0", Unlimited: true},
			{Contract: "@mint", Method: "setAuthority", From: "@mint", Amount: "0"},
		}, Programs: []string{"token"}}},
		{name: "token close account to the account", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{tokIx(sol.TokenProgramID, 9, nil, w(k("src")), w(k("me")), rs(k("me")))}
		}, want: wantSolIntent{Decoded: true, Value: "0", MaxFee: fee, Tokens: []wantSolToken{
			{Method: "closeAccount", From: "@src", To: "@me", Amount: "0"},
		}, Programs: []string{"token"}}},
		{name: "token close account to another", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{tokIx(sol.TokenProgramID, 9, nil, w(k("src")), w(k("attacker")), rs(k("me")))}
		}, want: wantSolIntent{Decoded: false, Value: "0", MaxFee: fee, Tokens: []wantSolToken{
			{Method: "closeAccount", From: "@src", To: "@attacker", Amount: "0", Unlimited: true},
		}, Programs: []string{"token"}, Reasons: []string{"instructions[0]: Token CloseAccount sends the lamports of @src to @attacker"}}},
		{name: "token burn and burn checked", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{
				tokIx(sol.TokenProgramID, 8, le64(11), w(k("src")), w(k("mint")), rs(k("me"))),
				tokIx(sol.Token2022ProgramID, 15, append(le64(12), 6), w(k("src")), w(k("mint")), rs(k("me"))),
			}
		}, want: wantSolIntent{Decoded: true, Value: "0", MaxFee: fee, Tokens: []wantSolToken{
			{Contract: "@mint", Method: "burn", Amount: "11"}, {Contract: "@mint", Method: "burn", Amount: "12"},
		}, Programs: []string{"token", "token2022"}}},
		{name: "token harmless: mint to, revoke, freeze, sync native, initialize", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{
				tokIx(sol.TokenProgramID, 7, le64(5), w(k("mint")), w(k("dst")), rs(k("me"))),
				tokIx(sol.TokenProgramID, 5, nil, w(k("src")), rs(k("me"))),
				tokIx(sol.TokenProgramID, 10, nil, w(k("src")), r(k("mint")), rs(k("me"))),
				tokIx(sol.TokenProgramID, 17, nil, w(k("src"))),
				tokIx(sol.TokenProgramID, 18, pk(k("me")), w(k("src")), r(k("mint"))),
			}
		}, want: wantSolIntent{Decoded: true, Value: "0", MaxFee: fee, Programs: []string{"token"}}},
		{name: "token-2022 transfer checked with fee", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{tokIx(sol.Token2022ProgramID, 26, slices.Concat([]byte{1}, le64(1_000_000), []byte{6}, le64(5_000)), w(k("src")), r(k("mint")), w(k("dst")), rs(k("me")))}
		}, want: wantSolIntent{Decoded: true, Value: "0", MaxFee: fee, Tokens: []wantSolToken{
			{Contract: "@mint", Method: "transfer", To: "@dst", Amount: "1000000"},
		}, Programs: []string{"token2022"}}},
		{name: "token-2022 instruction the vault does not decode", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{tokIx(sol.Token2022ProgramID, 38, nil, w(k("src")), w(k("attacker")), rs(k("me")))}
		}, want: wantSolIntent{Decoded: false, Value: "0", MaxFee: fee, Programs: []string{"token2022"},
			Reasons: []string{"instructions[0]: Token-2022 instruction 38 is not one the vault decodes"}}},
		{name: "another program receives the account as a read-only signer", payer: "payer", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{sol.NewInstruction(sol.StakeProgramID, sol.AccountMetaSlice{w(k("stake")), rs(k("me"))}, []byte{4, 0, 0, 0})}
		}, want: wantSolIntent{Decoded: false, Value: "0", MaxFee: "0", Programs: []string{"stake"},
			Reasons: []string{"instructions[0]: program Stake11111111111111111111111111111111111111 receives the account as a signer"}}},
		{name: "another program without the account", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{
				sol.NewInstruction(k("someprogram"), sol.AccountMetaSlice{w(k("a"))}, []byte{1, 2, 3}),
				sysIx(2, le64(1), ws(k("me")), w(k("a"))),
			}
		}, want: wantSolIntent{Decoded: true, Value: "1", MaxFee: fee, To: "@a", Outputs: []wantSolOutput{{"@a", "1"}},
			Programs: []string{"@someprogram", "system"}}},
		{name: "memo signed by the account", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{
				sol.NewInstruction(sol.MemoProgramID, sol.AccountMetaSlice{rs(k("me"))}, []byte("invoice 42")),
				sol.NewInstruction(memoV1ID, sol.AccountMetaSlice{}, []byte("hello")),
			}
		}, want: wantSolIntent{Decoded: true, Value: "0", MaxFee: fee, Programs: []string{"memo", "memo1"}}},
		{name: "compute budget: limit and price", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{
				sol.NewInstruction(computeBudgetID, sol.AccountMetaSlice{}, append([]byte{2}, le32(300_000)...)),
				sol.NewInstruction(computeBudgetID, sol.AccountMetaSlice{}, append([]byte{3}, le64(2_000_001)...)),
				sysIx(2, le64(1), ws(k("me")), w(k("a"))),
			}
		}, // 5000 + ceil(2 000 001 µlamports × 300 000 / 10^6) = 5000 + 600 001
			want: wantSolIntent{Decoded: true, Value: "1", MaxFee: "605001", To: "@a", Outputs: []wantSolOutput{{"@a", "1"}},
				Programs: []string{"compute", "system"}}},
		{name: "compute budget: price with the default limit", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{
				sol.NewInstruction(computeBudgetID, sol.AccountMetaSlice{}, append([]byte{3}, le64(1_000_000)...)),
				sysIx(2, le64(1), ws(k("me")), w(k("a"))),
				sysIx(2, le64(1), ws(k("me")), w(k("a"))),
			}
		}, // two instructions other than ComputeBudget: 2 × 200 000 units at 1 lamport each
			want: wantSolIntent{Decoded: true, Value: "2", MaxFee: "405000", To: "@a", Outputs: []wantSolOutput{{"@a", "1"}, {"@a", "1"}},
				Programs: []string{"compute", "system"}}},
		{name: "compute budget: unknown instruction", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{sol.NewInstruction(computeBudgetID, sol.AccountMetaSlice{}, append([]byte{0}, le64(1)...))}
		}, want: wantSolIntent{Decoded: false, Value: "0", MaxFee: fee, Programs: []string{"compute"},
			Reasons: []string{"instructions[0]: ComputeBudget instruction 0 is not one the vault decodes"}}},
		{name: "another account pays the fee", payer: "payer", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{
				sol.NewInstruction(computeBudgetID, sol.AccountMetaSlice{}, append([]byte{3}, le64(1_000_000)...)),
				sysIx(2, le64(9), ws(k("me")), w(k("a"))),
			}
		}, want: wantSolIntent{Decoded: true, Value: "9", MaxFee: "0", To: "@a", Outputs: []wantSolOutput{{"@a", "9"}},
			Programs: []string{"compute", "system"}}},
		{name: "ed25519 precompile signatures are paid for", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{sol.NewInstruction(ed25519ID, sol.AccountMetaSlice{}, []byte{2, 0})}
		}, want: wantSolIntent{Decoded: true, Value: "0", MaxFee: "15000", Programs: []string{"ed25519"}}},
		{name: "associated token account created for a recipient", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{
				sol.NewInstruction(sol.SPLAssociatedTokenAccountProgramID, sol.AccountMetaSlice{ws(k("me")), w(k("ata")), r(k("b")), r(k("mint")), r(sol.SystemProgramID), r(sol.TokenProgramID)}, []byte{1}),
				sol.NewInstruction(sol.SPLAssociatedTokenAccountProgramID, sol.AccountMetaSlice{ws(k("me")), w(k("ata22")), r(k("b")), r(k("mint22")), r(sol.SystemProgramID), r(sol.Token2022ProgramID)}, nil),
			}
		}, want: wantSolIntent{Decoded: true, Value: "4287360", MaxFee: fee, To: "@ata",
			Outputs: []wantSolOutput{{"@ata", "2039280"}, {"@ata22", "2248080"}}, Programs: []string{"ata"}}},
		{name: "associated token account with another token program", ins: func(k func(string) sol.PublicKey) []sol.Instruction {
			return []sol.Instruction{sol.NewInstruction(sol.SPLAssociatedTokenAccountProgramID, sol.AccountMetaSlice{ws(k("me")), w(k("ata")), r(k("b")), r(k("mint")), r(sol.SystemProgramID), r(k("faketoken"))}, []byte{1})}
		}, want: wantSolIntent{Decoded: false, Value: "0", MaxFee: fee, Programs: []string{"ata"},
			Reasons: []string{"instructions[0]: AssociatedTokenAccount Create for token program @faketoken"}}},
		{
			// The security review's transaction (H2): an attacker's program
			// receives the account as a writable signer, the account is
			// assigned to it, a token account's authority and another's
			// lamports are handed over, and Token-2022 moves 1 000 000 units.
			name: "review H2: drain through an unknown program",
			ins: func(k func(string) sol.PublicKey) []sol.Instruction {
				return []sol.Instruction{
					sol.NewInstruction(k("attacker"), sol.AccountMetaSlice{ws(k("me"))}, []byte{0}),
					sysIx(1, pk(k("attacker")), ws(k("me"))),
					tokIx(sol.TokenProgramID, 6, slices.Concat([]byte{2, 1}, pk(k("attacker"))), w(k("src")), rs(k("me"))),
					tokIx(sol.TokenProgramID, 9, nil, w(k("src2")), w(k("attacker")), rs(k("me"))),
					tokIx(sol.Token2022ProgramID, 26, slices.Concat([]byte{1}, le64(1_000_000), []byte{6}, le64(0)), w(k("src3")), r(k("mint")), w(k("dst")), rs(k("me"))),
				}
			},
			want: wantSolIntent{Decoded: false, Value: "0", MaxFee: fee, Tokens: []wantSolToken{
				{Method: "setAuthority", From: "@src", To: "@attacker", Amount: "0", Unlimited: true},
				{Method: "closeAccount", From: "@src2", To: "@attacker", Amount: "0", Unlimited: true},
				{Contract: "@mint", Method: "transfer", To: "@dst", Amount: "1000000"},
			}, Programs: []string{"@attacker", "system", "token", "token2022"}, Reasons: []string{
				"instructions[0]: program @attacker receives the account as a writable signer",
				"instructions[1]: System Assign gives the account to program @attacker",
				"instructions[3]: Token CloseAccount sends the lamports of @src2 to @attacker",
			}},
		},
	}
}

// keyNames resolves "@name" to newSigner(name)'s address, for the
// vectors; names of well-known programs resolve to the program.
type keyNames struct {
	t    testing.TB
	keys map[string]sol.PublicKey
}

func (n *keyNames) key(name string) sol.PublicKey {
	if k, ok := n.keys[name]; ok {
		return k
	}
	k := newSigner(n.t, name).pub
	n.keys[name] = k
	return k
}

// resolve replaces "@name" by its address and a program name by its id.
func (n *keyNames) resolve(s string) string {
	if name, ok := strings.CutPrefix(s, "@"); ok {
		if name == "vault" { // the account derived from me with seed "vault"
			d, _ := sol.CreateWithSeed(n.key("me"), "vault", sol.SystemProgramID)
			return d.String()
		}
		return n.key(name).String()
	}
	return s
}

func (n *keyNames) resolveAll(s string) string {
	out := []string{}
	for _, w := range strings.Fields(s) {
		out = append(out, n.resolve(w))
	}
	return strings.Join(out, " ")
}

func buildSolVector(t *testing.T, c solCase) solVector {
	names := &keyNames{t: t, keys: map[string]sol.PublicKey{}}
	payer := c.payer
	if payer == "" {
		payer = "me"
	}
	tx := buildTx(t, names.key(payer), c.ins(names.key))
	signer := c.signer
	if signer == "" {
		signer = "me"
	}
	return solVector{Name: c.name, Transaction: b64(t, tx), Signer: signer, Want: c.want}
}

func checkSolIntent(t *testing.T, v solVector) {
	t.Helper()
	names := &keyNames{t: t, keys: map[string]sol.PublicKey{}}
	p, err := ParseTransaction(v.Transaction, names.key(v.Signer).Bytes())
	if err != nil {
		t.Fatal(err)
	}
	in := p.Intent()
	w := v.Want
	if in.Decoded != w.Decoded {
		t.Errorf("decoded = %v, want %v (reasons %q)", in.Decoded, w.Decoded, in.Undecoded)
	}
	if in.Value.String() != w.Value || in.MaxFee.String() != w.MaxFee || in.To != names.resolve(w.To) {
		t.Errorf("value %s max_fee %s to %q; want %s %s %q", in.Value, in.MaxFee, in.To, w.Value, w.MaxFee, names.resolve(w.To))
	}
	var outs []wantSolOutput
	for _, o := range in.Outputs {
		outs = append(outs, wantSolOutput{o.Address, o.Value.String()})
	}
	var wantOuts []wantSolOutput
	for _, o := range w.Outputs {
		wantOuts = append(wantOuts, wantSolOutput{names.resolve(o.Address), o.Value})
	}
	if !slices.Equal(outs, wantOuts) {
		t.Errorf("outputs %v, want %v", outs, wantOuts)
	}
	var toks []wantSolToken
	for _, tk := range in.Tokens {
		if tk.TokenID != nil {
			t.Errorf("token %+v has a token id", tk)
		}
		toks = append(toks, wantSolToken{tk.Contract, tk.Method, tk.From, tk.To, tk.Amount.String(), tk.Unlimited})
	}
	var wantToks []wantSolToken
	for _, tk := range w.Tokens {
		wantToks = append(wantToks, wantSolToken{names.resolve(tk.Contract), tk.Method, names.resolve(tk.From), names.resolve(tk.To), tk.Amount, tk.Unlimited})
	}
	if !slices.Equal(toks, wantToks) {
		t.Errorf("tokens %+v, want %+v", toks, wantToks)
	}
	if (in.Token == nil) != (len(in.Tokens) == 0) || (in.Token != nil && in.Token.Method != in.Tokens[0].Method) {
		t.Errorf("token %+v is not the first of tokens", in.Token)
	}
	var progs []string
	for _, p := range w.Programs {
		if id, ok := programNames[p]; ok {
			progs = append(progs, id.String())
		} else {
			progs = append(progs, names.resolve(p))
		}
	}
	if !slices.Equal(in.Programs, progs) {
		t.Errorf("programs %v, want %v", in.Programs, progs)
	}
	if len(in.Undecoded) != len(w.Reasons) {
		t.Errorf("undecoded %q, want %d reasons %q", in.Undecoded, len(w.Reasons), w.Reasons)
	}
	for i := range min(len(in.Undecoded), len(w.Reasons)) {
		if want := names.resolveAll(w.Reasons[i]); !strings.Contains(in.Undecoded[i], want) {
			t.Errorf("reason %d = %q, want it to contain %q", i, in.Undecoded[i], want)
		}
	}
}

// TestIntentVectors checks testdata/good_intents.json, and that it holds
// exactly the cases above.
func TestIntentVectors(t *testing.T) {
	const file = "testdata/good_intents.json"
	cases := solCases(t)
	if os.Getenv("MV_WRITE_TESTDATA") == "1" {
		var vs []solVector
		for _, c := range cases {
			vs = append(vs, buildSolVector(t, c))
		}
		vectors.Regenerate(t, file, "built by internal/wallet/solana/intent_test.go (solCases); addresses \"@name\" are the Ed25519 key from seed sha256(name)", vs)
	}
	var f struct {
		Cases []solVector `json:"cases"`
	}
	vectors.Read(t, file, &f)
	if len(f.Cases) != len(cases) {
		t.Fatalf("%d vectors in %s, %d cases: regenerate", len(f.Cases), file, len(cases))
	}
	for i, v := range f.Cases {
		if v.Name != cases[i].name {
			t.Fatalf("vector %d is %q, case is %q: regenerate", i, v.Name, cases[i].name)
		}
		t.Run(v.Name, func(t *testing.T) { checkSolIntent(t, v) })
	}
}

// TestIntentMessageDecoded: a message signature moves nothing and is
// fully decoded.
func TestIntentMessageDecoded(t *testing.T) {
	m, err := ParseMessage([]byte("gm"))
	if err != nil {
		t.Fatal(err)
	}
	in := m.Intent()
	if !in.Decoded || in.MaxFee == nil || in.MaxFee.Sign() != 0 || in.Value.Sign() != 0 {
		t.Fatalf("%+v", in)
	}
}
