// Package intent is the chain-neutral description of a signing request:
// what leaves which account, to whom, and how. Every chain package decodes
// its requests into an Intent; the policy engine reads only Intents, so it
// never needs to know which chain it governs (shared/DESIGN.md, "Policies").
package intent

import "math/big"

// Kinds of signing request.
const (
	KindMessage     = "message"
	KindTypedData   = "typed_data"
	KindTransaction = "transaction"
	KindPSBT        = "psbt"
)

// Chains.
const (
	ChainEthereum = "ethereum"
	ChainBitcoin  = "bitcoin"
	ChainSolana   = "solana"
)

// Intent is one signing request, decoded. Amounts are in the chain's base
// unit (wei, satoshis, lamports) and are never nil after Normalize.
type Intent struct {
	Chain   string // ChainEthereum, ChainBitcoin, ChainSolana
	Network string // "mainnet", "testnet", "signet", "regtest"; for Ethereum the chain id's name or "" (see ChainID)
	Kind    string // KindMessage, KindTypedData, KindTransaction, KindPSBT

	Account   string   // "owner/name"
	Owner     string   // the account's owner
	Principal string   // who asks: a user name, or "apikey:<id>"
	AMR       []string // authentication methods of the session ("pwd", "otp", "apikey", "root")

	ChainID  *big.Int // EVM chain id of a transaction or typed-data domain; nil when none
	To       string   // the recipient in the chain's address form; "" for none (contract creation, a message)
	Value    *big.Int // native base units leaving the account (tx value; PSBT outputs not paying back; SOL transfers)
	Selector string   // 4-byte calldata prefix as 0x-hex, "" when the data is shorter

	// MaxFee is the most the network fee can take from the account, in
	// native base units: EVM gas × maxFeePerGas (or gasPrice) plus blob
	// gas × maxFeePerBlobGas; Solana signatures × lamports per signature
	// plus the compute-unit price × limit, when the account pays the fee;
	// Bitcoin the PSBT's fee, which Value already includes (see Spend).
	MaxFee *big.Int
	// Decoded says that every instruction or call of the request that can
	// move value or authority from the account was understood, so Value,
	// Tokens and Outputs are all of it. The zero value is false: a chain
	// package must say so, and an intent built without it fails closed.
	Decoded bool
	// ValueKnown says that Value and MaxFee are exact even when Decoded is
	// false: an EVM call to another contract states the ether it sends and
	// the most gas it may burn, so only its token movements are unknown.
	// Decoded implies it. It is false when the account's own code may run
	// (an EIP-7702 self-call), which can send ether the transaction does
	// not state.
	ValueKnown bool
	// Undecoded says why Decoded is false, one reason per instruction or
	// call ("instructions[0]: program … receives the account as a signer").
	Undecoded []string
	// Programs are the programs a Solana transaction invokes (base58, each
	// once, in order), or the contracts an EVM transaction calls with
	// calldata (the called address, and each call of a decoded batch).
	Programs []string

	Token     *Token     // an ERC-20 or SPL token movement, if the request is one (the first, when several)
	Tokens    []Token    // every token movement, in order: a Solana transaction can carry several
	TypedData *TypedData // EIP-712 domain and primary type, for typed data
	Delegates []string   // EIP-7702 authorization addresses
	Outputs   []Output   // PSBT outputs, change back to the account excluded; Solana: each System transfer out of the account
}

// Token is a token movement or a grant of authority over tokens: ERC-20,
// ERC-721, ERC-1155 and Permit2 calls, EIP-2612 and Permit2 permits, SPL
// Token and Token-2022 instructions. docs/policies.md lists the methods.
type Token struct {
	Contract string   // the token contract (EVM) or mint (SPL); "" when unknown
	Method   string   // "transfer", "transferFrom", "approve", "increaseAllowance", "setApprovalForAll", ...
	From     string   // the owner whose tokens move (transferFrom) or who grants a permit; on Solana the token account or mint whose authority moves; else ""
	To       string   // the recipient, or the spender, operator or new authority
	Amount   *big.Int // token base units
	TokenID  *big.Int // the ERC-721 or ERC-1155 token id; nil for fungible tokens
	// Unlimited marks a grant or movement that the request does not bound:
	// an allowance at the largest value its type holds (2^256−1, Permit2's
	// 2^160−1, DAI's permit with allowed), an operator approval for every
	// token (setApprovalForAll), a change of a token account's or mint's
	// authority, a token account closed to another account.
	Unlimited bool
}

// TypedData is what a policy sees of EIP-712 typed data.
type TypedData struct {
	PrimaryType string
	Domain      Domain
}

// Domain is the EIP-712 domain separator's fields.
type Domain struct {
	Name              string
	Version           string
	ChainID           *big.Int // nil when absent
	VerifyingContract string   // "" when absent
	Salt              string   // 0x-hex, "" when absent
}

// Output is one PSBT output that leaves the account, or one Solana System
// transfer out of it.
type Output struct {
	Address string   // "" for a script with no address form (OP_RETURN...), or an account loaded from a lookup table
	Script  string   // hex of the output script (Bitcoin); "" on Solana
	Value   *big.Int // satoshis
}

// Normalize fills nil amounts with zero so that policies never meet null.
func (in *Intent) Normalize() {
	if in.Value == nil {
		in.Value = new(big.Int)
	}
	if in.MaxFee == nil {
		in.MaxFee = new(big.Int)
	}
	if in.Token != nil && in.Token.Amount == nil {
		in.Token.Amount = new(big.Int)
	}
	for i := range in.Tokens {
		if in.Tokens[i].Amount == nil {
			in.Tokens[i].Amount = new(big.Int)
		}
	}
	for i := range in.Outputs {
		if in.Outputs[i].Value == nil {
			in.Outputs[i].Value = new(big.Int)
		}
	}
}

// Spend is the most native value the request can take from the account:
// Value plus MaxFee, except on Bitcoin, where Value (the account's inputs
// less its change) already includes the fee. Limits count it.
func (in *Intent) Spend() *big.Int {
	v := new(big.Int)
	if in.Value != nil {
		v.Set(in.Value)
	}
	if in.MaxFee != nil && in.Chain != ChainBitcoin {
		v.Add(v, in.MaxFee)
	}
	return v
}

// Clone returns a deep copy of in (amounts and lists are not shared).
func (in *Intent) Clone() *Intent {
	c := *in
	cp := func(v *big.Int) *big.Int {
		if v == nil {
			return nil
		}
		return new(big.Int).Set(v)
	}
	c.ChainID, c.Value, c.MaxFee = cp(in.ChainID), cp(in.Value), cp(in.MaxFee)
	c.AMR = append([]string(nil), in.AMR...)
	c.Delegates = append([]string(nil), in.Delegates...)
	c.Undecoded = append([]string(nil), in.Undecoded...)
	c.Programs = append([]string(nil), in.Programs...)
	cpTok := func(t Token) Token {
		t.Amount, t.TokenID = cp(t.Amount), cp(t.TokenID)
		return t
	}
	if in.Token != nil {
		t := cpTok(*in.Token)
		c.Token = &t
	}
	c.Tokens = nil
	for _, t := range in.Tokens {
		c.Tokens = append(c.Tokens, cpTok(t))
	}
	c.Outputs = nil
	for _, o := range in.Outputs {
		o.Value = cp(o.Value)
		c.Outputs = append(c.Outputs, o)
	}
	if in.TypedData != nil {
		td := *in.TypedData
		td.Domain.ChainID = cp(td.Domain.ChainID)
		c.TypedData = &td
	}
	return &c
}

// Undecodable marks the intent as not fully decoded, for reason.
func (in *Intent) Undecodable(reason string) {
	in.Decoded = false
	in.Undecoded = append(in.Undecoded, reason)
}
