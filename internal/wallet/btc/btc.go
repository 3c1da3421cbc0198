// Package btc signs Bitcoin PSBTs for one account: P2WPKH (BIP-143 ECDSA)
// and P2TR key path (BIP-340/341 Schnorr with the BIP-86 tweak), on
// mainnet, testnet, signet and regtest. It is pure: no storage, no HTTP.
// Parsing, updating and finalizing are btcd's (btcutil/psbt, txscript);
// this package checks the untrusted PSBT strictly first and decides which
// inputs are the account's to sign.
package btc

import (
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/hd"
)

// Network is a Bitcoin network.
type Network string

// Networks.
const (
	Mainnet Network = "mainnet"
	Testnet Network = "testnet"
	Signet  Network = "signet"
	Regtest Network = "regtest"
)

// ParseNetwork accepts a network name; "" is mainnet.
func ParseNetwork(s string) (Network, error) {
	switch n := Network(s); n {
	case "":
		return Mainnet, nil
	case Mainnet, Testnet, Signet, Regtest:
		return n, nil
	}
	return "", errkind.FieldErr("network", fmt.Sprintf("unknown Bitcoin network %q (mainnet, testnet, signet, regtest)", truncate(s)))
}

// Params returns btcd's parameters for n (testnet is testnet3).
func (n Network) Params() *chaincfg.Params {
	switch n {
	case Testnet:
		return &chaincfg.TestNet3Params
	case Signet:
		return &chaincfg.SigNetParams
	case Regtest:
		return &chaincfg.RegressionNetParams
	}
	return &chaincfg.MainNetParams
}

// CoinType is the BIP-44 coin type: 0 on mainnet, 1 on every test network.
func (n Network) CoinType() uint32 {
	if n == Mainnet {
		return 0
	}
	return 1
}

// AddressType is the kind of output an account receives on.
type AddressType string

// Address types.
const (
	P2WPKH AddressType = "p2wpkh" // BIP-84 native SegWit v0
	P2TR   AddressType = "p2tr"   // BIP-86 Taproot key path only
)

// ParseAddressType accepts an address type; "" is p2wpkh.
func ParseAddressType(s string) (AddressType, error) {
	switch t := AddressType(s); t {
	case "":
		return P2WPKH, nil
	case P2WPKH, P2TR:
		return t, nil
	}
	return "", errkind.FieldErr("address_type", fmt.Sprintf("unknown Bitcoin address type %q (p2wpkh, p2tr)", truncate(s)))
}

// Purpose is the BIP-43 purpose level of the type's derivation scheme.
func (t AddressType) Purpose() uint32 {
	if t == P2TR {
		return 86
	}
	return 84
}

// DerivationPath is the default path of account index i:
// m/84'/c'/0'/0/i (P2WPKH, BIP-84) or m/86'/c'/0'/0/i (P2TR, BIP-86), with
// c the network's coin type. The account level is the first three.
func DerivationPath(n Network, t AddressType, index uint32) hd.Path {
	return hd.Path{hd.H(t.Purpose()), hd.H(n.CoinType()), hd.H(0), 0, index}
}

// Account is a Bitcoin account: its key, network, type, and the output
// script and address its key receives on.
type Account struct {
	Network   Network
	Type      AddressType
	PublicKey []byte // 33-byte compressed
	Address   string // bech32 (P2WPKH) or bech32m (P2TR)
	Script    []byte // the output script paying the account

	xonly []byte // P2TR: the x-only internal key (BIP-340)
}

// ErrPublicKey refuses a public key that is not a compressed secp256k1
// point (SegWit spends only accept compressed keys, BIP-143 policy).
var ErrPublicKey = errkind.New(errkind.Invalid, "invalid_public_key", "not a compressed secp256k1 public key")

// NewAccount derives the account's script and address from its public key.
func NewAccount(pub []byte, n Network, t AddressType) (*Account, error) {
	if len(pub) != btcec.PubKeyBytesLenCompressed {
		return nil, ErrPublicKey
	}
	if _, err := btcec.ParsePubKey(pub); err != nil {
		return nil, ErrPublicKey
	}
	return newAccount(pub, n, t)
}

// newAccount is NewAccount for a public key already known to be valid
// (the pipeline's stored accounts): a P2WPKH script is a hash of the key,
// and decompressing it on every request would cost a square root.
func newAccount(pub []byte, n Network, t AddressType) (*Account, error) {
	if len(pub) != btcec.PubKeyBytesLenCompressed || (pub[0] != 2 && pub[0] != 3) {
		return nil, ErrPublicKey
	}
	a := &Account{Network: n, Type: t, PublicKey: append([]byte(nil), pub...)}
	var addr btcutil.Address
	var err error
	switch t {
	case P2WPKH:
		addr, err = btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(pub), n.Params())
	case P2TR:
		key, perr := btcec.ParsePubKey(pub)
		if perr != nil {
			return nil, ErrPublicKey
		}
		// BIP-86: the output key is the internal key tweaked with
		// H_TapTweak(P) and no script tree.
		a.xonly = schnorr.SerializePubKey(key)
		addr, err = btcutil.NewAddressTaproot(schnorr.SerializePubKey(txscript.ComputeTaprootKeyNoScript(key)), n.Params())
	default:
		return nil, fmt.Errorf("btc: unknown address type %q", t)
	}
	if err != nil {
		return nil, fmt.Errorf("btc: address: %w", err)
	}
	if a.Script, err = txscript.PayToAddrScript(addr); err != nil {
		return nil, fmt.Errorf("btc: address: %w", err)
	}
	a.Address = addr.EncodeAddress()
	return a, nil
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
