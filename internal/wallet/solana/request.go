package solana

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/big"

	sol "github.com/gagliardetto/solana-go"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/hd"
	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/wallet/chain"
)

// Transaction is a wire transaction parsed for one account.
type Transaction struct {
	tx     *wireTx
	slot   int // the account's signature slot
	intent *intent.Intent
}

// SignedTransaction is the answer of sign-transaction.
type SignedTransaction struct {
	Signature   string `json:"signature"`   // base58
	Transaction string `json:"transaction"` // base64, the signature in the account's slot
}

// ParseTransaction decodes a base64 wire transaction (legacy or v0)
// strictly and finds pub's signer slot. Other signers' signatures are kept
// as they are.
func ParseTransaction(encoded string, pub []byte) (*Transaction, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, ErrPublicKey
	}
	tx, err := decodeTx(encoded)
	if err != nil {
		return nil, err
	}
	me := sol.PublicKeyFromBytes(pub)
	slot := signerSlot(tx.msg, me)
	if slot < 0 {
		return nil, ErrNotSigner
	}
	return &Transaction{tx: tx, slot: slot, intent: describe(tx.msg, me)}, nil
}

// Message is the decoded message (solana-go's type; do not modify).
func (t *Transaction) Message() *sol.Message { return t.tx.msg }

// Intent describes the transaction for policies (a fresh copy each call).
func (t *Transaction) Intent() *intent.Intent { return t.intent.Clone() }

// SignTransaction signs the message bytes as received and puts the
// signature in the account's slot.
func (t *Transaction) SignTransaction(k *Key) (*SignedTransaction, error) {
	if k == nil || t.tx.msg.AccountKeys[t.slot] != k.pub {
		return nil, fmt.Errorf("solana: %w", chain.ErrKeyMismatch)
	}
	sig := k.sign(t.tx.raw)
	t.tx.sigs[t.slot] = sig
	return &SignedTransaction{Signature: encodeSig(sig), Transaction: t.tx.encode()}, nil
}

// MaxMessageSize bounds sign-message data.
const MaxMessageSize = 64 << 10

// ErrMessageIsTransaction refuses to sign, as a "message", bytes that are
// a Solana transaction message: that signature would authorise the
// transaction without sign-transaction's checks and policies.
var ErrMessageIsTransaction = errkind.New(errkind.Invalid, "message_is_transaction", "the message is a Solana transaction message; use sign-transaction")

// Message is a sign-message request: Ed25519 over the raw bytes.
type Message struct{ data []byte }

// SignedMessage is the answer of sign-message.
type SignedMessage struct {
	Signature string `json:"signature"` // base58
}

// ParseMessage checks data for sign-message.
func ParseMessage(data []byte) (*Message, error) {
	if len(data) == 0 {
		return nil, errkind.FieldErr("data", "required")
	}
	if len(data) > MaxMessageSize {
		return nil, &errkind.Field{Name: "data", Msg: fmt.Sprintf("larger than %d bytes", MaxMessageSize), K: errkind.TooLarge, Code: "payload_too_large"}
	}
	if looksLikeMessage(data) {
		return nil, ErrMessageIsTransaction
	}
	return &Message{data: append([]byte(nil), data...)}, nil
}

// Intent is a message intent: it moves nothing, and is fully decoded
// (ParseMessage refused bytes that are a transaction message).
func (m *Message) Intent() *intent.Intent {
	return &intent.Intent{Chain: intent.ChainSolana, Kind: intent.KindMessage, Value: new(big.Int), MaxFee: new(big.Int), Decoded: true}
}

// SignMessage signs the raw bytes.
func (m *Message) SignMessage(k *Key) (*SignedMessage, error) {
	if k == nil {
		return nil, errors.New("solana: nil key")
	}
	return &SignedMessage{Signature: encodeSig(k.sign(m.data))}, nil
}

// Chain is Solana for the sign pipeline (chain.Chain).
type Chain struct{}

var _ chain.Chain = Chain{}

// KeyType is Ed25519.
func (Chain) KeyType() chain.KeyType { return chain.Ed25519 }

// Options refuses network and address type: a Solana account has neither
// (the cluster is not part of a transaction).
func (Chain) Options(o chain.Options) (chain.Options, error) {
	return chain.NoOptions("Solana", o)
}

// DerivationPath is m/44'/501'/i'/0'.
func (c Chain) DerivationPath(o chain.Options, index uint32) (hd.Path, error) {
	if _, err := c.Options(o); err != nil {
		return nil, err
	}
	if err := chain.CheckIndex(index); err != nil {
		return nil, err
	}
	return DerivationPath(index), nil
}

// Address is the base58 public key.
func (Chain) Address(_ chain.Options, pub []byte) (string, error) { return Address(pub) }

// NewKey prepares the account's key.
func (Chain) NewKey(raw secret.Bytes, a chain.Account) (chain.Key, error) {
	if err := checkAccount(a); err != nil {
		return nil, err
	}
	return NewKey(raw, a.PublicKey)
}

func checkAccount(a chain.Account) error {
	addr, err := Address(a.PublicKey)
	if err != nil {
		return err
	}
	if a.Address != "" && a.Address != addr {
		return fmt.Errorf("solana: %w", chain.ErrAccountMismatch)
	}
	return nil
}

// ErrUnsupported refuses an operation Solana accounts do not have.
var ErrUnsupported = errkind.New(errkind.Invalid, "unsupported_operation", "Solana accounts sign transactions and messages only")

// Parse accepts sign-transaction (Input.Encoded) and sign-message
// (Input.Message).
func (Chain) Parse(in chain.Input, a chain.Account) (chain.Request, error) {
	if err := checkAccount(a); err != nil {
		return nil, err
	}
	switch in.Op {
	case chain.OpSignTransaction:
		if in.Encoded == "" && len(in.Document) > 0 {
			return nil, fieldErr("transaction", "must be a base64 wire transaction (a JSON string) for a Solana account")
		}
		t, err := ParseTransaction(in.Encoded, a.PublicKey)
		if err != nil {
			return nil, err
		}
		return txRequest{t}, nil
	case chain.OpSignMessage:
		m, err := ParseMessage(in.Message)
		if err != nil {
			return nil, err
		}
		return msgRequest{m}, nil
	}
	return nil, ErrUnsupported
}

type txRequest struct{ t *Transaction }

func (r txRequest) Intent() *intent.Intent { return r.t.Intent() }

func (r txRequest) Sign(k chain.Key) (any, error) {
	key, ok := k.(*Key)
	if !ok {
		return nil, fmt.Errorf("solana: not a Solana key: %w", chain.ErrKeyMismatch)
	}
	return r.t.SignTransaction(key)
}

type msgRequest struct{ m *Message }

func (r msgRequest) Intent() *intent.Intent { return r.m.Intent() }

func (r msgRequest) Sign(k chain.Key) (any, error) {
	key, ok := k.(*Key)
	if !ok {
		return nil, fmt.Errorf("solana: not a Solana key: %w", chain.ErrKeyMismatch)
	}
	return r.m.SignMessage(key)
}
