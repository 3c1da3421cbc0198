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

	Token     *Token     // an ERC-20 or SPL token movement, if the request is one (the first, when several)
	Tokens    []Token    // every token movement, in order: a Solana transaction can carry several
	TypedData *TypedData // EIP-712 domain and primary type, for typed data
	Delegates []string   // EIP-7702 authorization addresses
	Outputs   []Output   // PSBT outputs, change back to the account excluded; Solana: each System transfer out of the account
}

// Token is a token movement: ERC-20 transfer, transferFrom or approve, or an
// SPL Token transfer.
type Token struct {
	Contract string   // the token contract (ERC-20) or mint (SPL); "" when unknown
	Method   string   // "transfer", "transferFrom", "approve"
	From     string   // the owner whose tokens move (transferFrom) or who grants a permit, else ""
	To       string   // the recipient, or the spender for approve
	Amount   *big.Int // token base units
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
