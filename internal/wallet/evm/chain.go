package evm

import (
	"crypto/ecdsa"
	"errors"
	"fmt"
	"log/slog"
	"math/big"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/hd"
	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/wallet/chain"
)

// CoinType is Ethereum's SLIP-0044 coin type.
const CoinType = 60

// DerivationPath is the default path of account index i: m/44'/60'/0'/0/i
// (BIP-44, as MetaMask and Ledger Live derive).
func DerivationPath(index uint32) hd.Path {
	return hd.Path{hd.H(44), hd.H(CoinType), hd.H(0), 0, index}
}

// AddressOf derives the EIP-55 address of a 33-byte compressed (or
// 65-byte uncompressed) secp256k1 public key.
func AddressOf(pub []byte) (common.Address, error) {
	// btcec parses both forms and checks the point is on the curve with
	// field arithmetic (go-ethereum's UnmarshalPubkey checks it with
	// big.Int, a tenth of the sign path's CPU when done per request).
	form := len(pub) == 65 && pub[0] == 4 || len(pub) == 33 && (pub[0] == 2 || pub[0] == 3)
	k, err := btcec.ParsePubKey(pub)
	if err != nil || !form {
		return common.Address{}, errkind.New(errkind.Invalid, "invalid_public_key", "not a secp256k1 public key")
	}
	var a common.Address
	copy(a[:], crypto.Keccak256(k.SerializeUncompressed()[1:])[12:])
	return a, nil
}

// Key is a prepared Ethereum signing key.
type Key struct{ priv *ecdsa.PrivateKey }

// NewKey prepares raw (a 32-byte secp256k1 scalar) and checks it against
// the account's address.
func NewKey(raw secret.Bytes, addr common.Address) (*Key, error) {
	k, err := crypto.ToECDSA(raw)
	if err != nil {
		return nil, fmt.Errorf("evm: private key: %w", err)
	}
	if crypto.PubkeyToAddress(k.PublicKey) != addr {
		zeroECDSA(k)
		return nil, fmt.Errorf("evm: %w", chain.ErrKeyMismatch)
	}
	return &Key{priv: k}, nil
}

// String, GoString and LogValue keep a key out of logs and error text.
func (*Key) String() string       { return "[redacted]" }
func (*Key) GoString() string     { return "[redacted]" }
func (*Key) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// ECDSA is the key in go-ethereum's form, for the sign functions above.
func (k *Key) ECDSA() *ecdsa.PrivateKey { return k.priv }

// Public returns the 33-byte compressed public key.
func (k *Key) Public() []byte { return crypto.CompressPubkey(&k.priv.PublicKey) }

// Destroy wipes the private scalar.
func (k *Key) Destroy() {
	if k != nil {
		zeroECDSA(k.priv)
	}
}

func zeroECDSA(k *ecdsa.PrivateKey) {
	//lint:ignore SA1019 go-ethereum's signer takes *ecdsa.PrivateKey; wiping its scalar needs D
	if k != nil && k.D != nil {
		clear(k.D.Bits()) //lint:ignore SA1019 as above
		k.D.SetInt64(0)   //lint:ignore SA1019 as above
	}
}

// Answers, as the REST endpoints return them.
type (
	// SignedMessage answers sign-message.
	SignedMessage struct {
		Signature   string `json:"signature"`    // 0x r‖s‖v, v in {27, 28}
		MessageHash string `json:"message_hash"` // the EIP-191 digest
	}
	// SignedTypedData answers sign-typed-data.
	SignedTypedData struct {
		Signature string `json:"signature"`
		Hash      string `json:"hash"` // the EIP-712 digest
	}
	// SignedTransaction answers sign-transaction.
	SignedTransaction struct {
		Raw       string             `json:"raw_transaction"`
		Hash      string             `json:"transaction_hash"`
		Signature SignatureValues    `json:"signature"`
		Tx        *types.Transaction `json:"-"`
	}
	// SignatureValues are a transaction signature's v, r, s as quantities.
	SignatureValues struct {
		V string `json:"v"`
		R string `json:"r"`
		S string `json:"s"`
	}
)

// Chain is Ethereum for the sign pipeline (chain.Chain).
type Chain struct{}

var _ chain.Chain = Chain{}

// KeyType is secp256k1.
func (Chain) KeyType() chain.KeyType { return chain.Secp256k1 }

// Options refuses network and address type: the chain id is per request.
func (Chain) Options(o chain.Options) (chain.Options, error) {
	return chain.NoOptions("Ethereum", o)
}

// DerivationPath is m/44'/60'/0'/0/i.
func (c Chain) DerivationPath(o chain.Options, index uint32) (hd.Path, error) {
	if _, err := c.Options(o); err != nil {
		return nil, err
	}
	if err := chain.CheckIndex(index); err != nil {
		return nil, err
	}
	return DerivationPath(index), nil
}

// Address is the EIP-55 address of the public key.
func (Chain) Address(_ chain.Options, pub []byte) (string, error) {
	a, err := AddressOf(pub)
	if err != nil {
		return "", err
	}
	return a.Hex(), nil
}

// accountAddress is the account's address: from its public key when it
// has one (checked against Address), else Address (accounts made before
// public keys were stored).
func accountAddress(a chain.Account) (common.Address, error) {
	if len(a.PublicKey) > 0 {
		addr, err := AddressOf(a.PublicKey)
		if err != nil {
			return addr, err
		}
		if a.Address != "" && (!common.IsHexAddress(a.Address) || common.HexToAddress(a.Address) != addr) {
			return addr, fmt.Errorf("evm: %w", chain.ErrAccountMismatch)
		}
		return addr, nil
	}
	if !common.IsHexAddress(a.Address) {
		return common.Address{}, errors.New("evm: the account has no address")
	}
	return common.HexToAddress(a.Address), nil
}

// NewKey prepares the account's key.
func (Chain) NewKey(raw secret.Bytes, a chain.Account) (chain.Key, error) {
	addr, err := accountAddress(a)
	if err != nil {
		return nil, err
	}
	return NewKey(raw, addr)
}

// ErrFromMismatch refuses a transaction whose `from` is another account.
var ErrFromMismatch = &errkind.Field{Name: "from", Msg: "does not match the account's address"}

// Parse accepts sign-message (Input.Message), sign-typed-data and
// sign-transaction (Input.Document).
func (Chain) Parse(in chain.Input, a chain.Account) (chain.Request, error) {
	addr, err := accountAddress(a)
	if err != nil {
		return nil, err
	}
	switch in.Op {
	case chain.OpSignMessage:
		return msgRequest{data: in.Message}, nil
	case chain.OpSignTypedData:
		td, err := ParseTypedData(in.Document)
		if err != nil {
			return nil, err
		}
		return typedRequest{td: td}, nil
	case chain.OpSignTransaction:
		t, err := ParseTx(in.Document) // once, from included
		if err != nil {
			return nil, err
		}
		if t.From != nil && *t.From != addr {
			return nil, ErrFromMismatch
		}
		return txRequest{tx: t.Tx, chainID: t.ChainID, from: addr}, nil
	}
	return nil, errkind.New(errkind.Invalid, "unsupported_operation", "Ethereum accounts do not sign PSBTs")
}

// MessageRequest, TypedDataRequest and TxRequest are the chain.Request
// Parse makes, for values an edge has already parsed (the JSON-RPC
// signer's parameters): the pipeline then signs them like any other.
func MessageRequest(data []byte) chain.Request { return msgRequest{data: data} }

// TypedDataRequest: see MessageRequest.
func TypedDataRequest(td *apitypes.TypedData) chain.Request { return typedRequest{td: td} }

// TxRequest: see MessageRequest. The caller has resolved the account from
// t.From. Without a from, the intent cannot tell a call to the account's
// own (EIP-7702) code from another: it takes the zero address, so any
// calldata is then decoded as to another contract, and a call to the zero
// address is undecoded.
func TxRequest(t *Tx) chain.Request {
	r := txRequest{tx: t.Tx, chainID: t.ChainID}
	if t.From != nil {
		r.from = *t.From
	}
	return r
}

func ethKey(k chain.Key) (*ecdsa.PrivateKey, error) {
	key, ok := k.(*Key)
	if !ok || key == nil {
		return nil, fmt.Errorf("evm: not an Ethereum key: %w", chain.ErrKeyMismatch)
	}
	return key.priv, nil
}

type msgRequest struct{ data []byte }

func (r msgRequest) Intent() *intent.Intent { return MessageIntent() }

func (r msgRequest) Sign(k chain.Key) (any, error) {
	priv, err := ethKey(k)
	if err != nil {
		return nil, err
	}
	sig, hash, err := SignMessage(r.data, priv)
	if err != nil {
		return nil, err
	}
	return &SignedMessage{Signature: hexutil.Encode(sig), MessageHash: hexutil.Encode(hash)}, nil
}

type typedRequest struct{ td *apitypes.TypedData }

func (r typedRequest) Intent() *intent.Intent { return TypedDataIntent(r.td) }

func (r typedRequest) Sign(k chain.Key) (any, error) {
	priv, err := ethKey(k)
	if err != nil {
		return nil, err
	}
	sig, hash, err := SignTypedData(r.td, priv)
	if err != nil {
		return nil, err
	}
	return &SignedTypedData{Signature: hexutil.Encode(sig), Hash: hexutil.Encode(hash)}, nil
}

type txRequest struct {
	tx      *types.Transaction
	chainID *big.Int
	from    common.Address // the account
}

func (r txRequest) Intent() *intent.Intent { return TransactionIntent(r.tx, r.chainID, r.from) }

func (r txRequest) Sign(k chain.Key) (any, error) {
	priv, err := ethKey(k)
	if err != nil {
		return nil, err
	}
	signed, err := SignTransaction(r.tx, r.chainID, priv)
	if err != nil {
		return nil, err
	}
	raw, err := signed.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("evm: encode transaction: %w", err)
	}
	v, rr, s := signed.RawSignatureValues()
	return &SignedTransaction{
		Raw: hexutil.Encode(raw), Hash: signed.Hash().Hex(), Tx: signed,
		Signature: SignatureValues{V: hexutil.EncodeBig(v), R: hexutil.EncodeBig(rr), S: hexutil.EncodeBig(s)},
	}, nil
}
