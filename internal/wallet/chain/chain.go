// Package chain is the contract between the sign pipeline and the package
// of one chain (wallet/evm, wallet/btc, wallet/solana). The pipeline holds
// a Chain per chain name and never asks which one it has: it checks the
// account's options, derives or generates its key, parses a request into a
// Request, shows the Request's intent to the policy engine, and signs.
//
// Everything here is pure: no storage, no HTTP. The pipeline (internal/
// wallet) owns keys at rest and in the cache; a chain package only turns
// raw key bytes into a signing Key and requests into answers.
package chain

import (
	"encoding/json"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/hd"
	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/secret"
)

// KeyType is the curve of an account's key.
type KeyType string

// Key types.
const (
	Secp256k1 KeyType = "secp256k1" // Ethereum, Bitcoin; BIP-32 derivation
	Ed25519   KeyType = "ed25519"   // Solana; SLIP-0010 derivation (hardened only)
)

// Op is a sign operation, named as its endpoint.
type Op string

// Operations.
const (
	OpSignMessage     Op = "sign-message"
	OpSignTypedData   Op = "sign-typed-data"
	OpSignTransaction Op = "sign-transaction"
	OpSignPSBT        Op = "sign-psbt"
)

// Options are an account's chain options. The zero value of each field
// means the chain's default; Chain.Options fills them in.
type Options struct {
	Network     string // bitcoin: mainnet, testnet, signet, regtest; others: "" (ethereum: chain ids are per request)
	AddressType string // bitcoin: p2wpkh, p2tr; others: ""
}

// Account is what a chain package knows of the signing account.
type Account struct {
	Options
	Address   string // in the chain's own form
	PublicKey []byte // 33-byte compressed secp256k1, or 32-byte Ed25519
}

// Input is one sign request after the edge decoded its common envelope:
// the REST body or a JSON-RPC call.
type Input struct {
	Op       Op
	Message  []byte          // sign-message: the bytes to sign, as the edge decoded them (utf8 or hex)
	Document json.RawMessage // sign-typed-data, and EVM sign-transaction: the JSON value
	Encoded  string          // Solana sign-transaction (base64 wire transaction) and sign-psbt (base64 PSBT)
	Finalize bool            // sign-psbt: finalize the inputs signed
}

// Chain is one chain's package. The first four methods set an account up;
// the last two sign.
type Chain interface {
	// KeyType is the curve of this chain's keys.
	KeyType() KeyType
	// Options checks a new account's options and fills in defaults; an
	// option the chain does not have is refused (a *errkind.Field).
	Options(o Options) (Options, error)
	// DerivationPath is the default HD path of account index i, for
	// checked options. For secp256k1 chains the first three levels are the
	// account level whose xpub the account shows.
	DerivationPath(o Options, index uint32) (hd.Path, error)
	// Address derives the account's address from its public key.
	Address(o Options, pub []byte) (string, error)

	// NewKey prepares a signing key from raw private key bytes (after seal
	// unwrap), checked against the account's public key. The pipeline
	// caches it and calls Destroy when it is evicted. raw is not retained.
	NewKey(raw secret.Bytes, a Account) (Key, error)
	// Parse strictly decodes a request for account a. Errors are of kind
	// Invalid and name the offending field.
	Parse(in Input, a Account) (Request, error)
}

// Key is a prepared signing key. Only the chain that made it can use it.
type Key interface {
	Public() []byte
	Destroy()
}

// Request is a parsed sign request.
type Request interface {
	// Intent describes the request for policies. Chain, Network and Kind
	// and the chain's own fields are set; Account, Owner, Principal and
	// AMR are the pipeline's to fill. The pipeline may modify the result.
	Intent() *intent.Intent
	// Sign signs with k (from the same chain's NewKey) and returns the
	// answer body, ready for JSON.
	Sign(k Key) (any, error)
}

// NoOptions is Options for a chain whose accounts have neither a network
// nor an address type (name is the chain's, for the message).
func NoOptions(name string, o Options) (Options, error) {
	if o.Network != "" {
		return o, errkind.FieldErr("network", name+" accounts have no network option")
	}
	if o.AddressType != "" {
		return o, errkind.FieldErr("address_type", name+" accounts have no address type")
	}
	return o, nil
}

// CheckIndex refuses an account index that cannot be the last,
// non-hardened level of a derivation path.
func CheckIndex(index uint32) error {
	if index >= hd.HardenedOffset {
		return errkind.FieldErr("index", "must be below 2^31")
	}
	return nil
}
