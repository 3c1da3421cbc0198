package btc

import (
	"fmt"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/hd"
	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/wallet/chain"
)

// ErrUnsupported refuses an operation Bitcoin accounts do not have.
var ErrUnsupported = errkind.New(errkind.Invalid, "unsupported_operation", "Bitcoin accounts sign PSBTs only (sign-psbt)")

// Chain is Bitcoin for the sign pipeline (chain.Chain).
type Chain struct {
	Rules Options // what Parse accepts (exotic sighash types)
}

var _ chain.Chain = Chain{}

// KeyType is secp256k1.
func (Chain) KeyType() chain.KeyType { return chain.Secp256k1 }

// Options checks network and address type, filling the defaults (mainnet,
// p2wpkh).
func (Chain) Options(o chain.Options) (chain.Options, error) {
	n, err := ParseNetwork(o.Network)
	if err != nil {
		return o, err
	}
	t, err := ParseAddressType(o.AddressType)
	if err != nil {
		return o, err
	}
	return chain.Options{Network: string(n), AddressType: string(t)}, nil
}

// DerivationPath is m/84'/c'/0'/0/i or m/86'/c'/0'/0/i.
func (c Chain) DerivationPath(o chain.Options, index uint32) (hd.Path, error) {
	if err := chain.CheckIndex(index); err != nil {
		return nil, err
	}
	o, err := c.Options(o)
	if err != nil {
		return nil, err
	}
	return DerivationPath(Network(o.Network), AddressType(o.AddressType), index), nil
}

// Address is the account's bech32 (P2WPKH) or bech32m (P2TR) address.
func (c Chain) Address(o chain.Options, pub []byte) (string, error) {
	o, err := c.Options(o)
	if err != nil {
		return "", err
	}
	a, err := NewAccount(pub, Network(o.Network), AddressType(o.AddressType))
	if err != nil {
		return "", err
	}
	return a.Address, nil
}

// account rebuilds a stored account for a request. Its public key was
// checked for being on the curve when the account was made (Address), so
// that is not redone; its address must still be the key's.
func (c Chain) account(a chain.Account) (*Account, error) {
	o, err := c.Options(a.Options)
	if err != nil {
		return nil, err
	}
	acct, err := newAccount(a.PublicKey, Network(o.Network), AddressType(o.AddressType))
	if err != nil {
		return nil, err
	}
	if a.Address != "" && a.Address != acct.Address {
		return nil, fmt.Errorf("btc: %w", chain.ErrAccountMismatch)
	}
	return acct, nil
}

// NewKey prepares the account's key, checking it against the account's
// public key.
func (c Chain) NewKey(raw secret.Bytes, a chain.Account) (chain.Key, error) {
	acct, err := c.account(a)
	if err != nil {
		return nil, err
	}
	return NewKey(raw, acct)
}

// Parse accepts sign-psbt only.
func (c Chain) Parse(in chain.Input, a chain.Account) (chain.Request, error) {
	if in.Op != chain.OpSignPSBT {
		return nil, ErrUnsupported
	}
	acct, err := c.account(a)
	if err != nil {
		return nil, err
	}
	r, err := Parse(in.Encoded, acct, in.Finalize, c.Rules)
	if err != nil {
		return nil, err
	}
	return chainRequest{r}, nil
}

// chainRequest adapts *Request to chain.Request.
type chainRequest struct{ r *Request }

func (c chainRequest) Intent() *intent.Intent { return c.r.Intent() }

func (c chainRequest) Sign(k chain.Key) (any, error) {
	key, ok := k.(*Key)
	if !ok {
		return nil, fmt.Errorf("btc: not a Bitcoin key: %w", chain.ErrKeyMismatch)
	}
	return c.r.SignPSBT(key)
}
