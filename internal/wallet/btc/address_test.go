package btc

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/hd"
	"github.com/moonvault/moonvault/internal/vectors"
	"github.com/moonvault/moonvault/internal/wallet/chain"
	"github.com/moonvault/moonvault/internal/wallet/chain/chaintest"
)

// TestAbandonAddresses derives the BIP-84 and BIP-86 reference addresses
// from "abandon ×11 about" through hd and this package.
func TestAbandonAddresses(t *testing.T) {
	var f struct {
		Mnemonic string
		Accounts []struct {
			Type        string
			AccountPath string `json:"account_path"`
			AccountXpub string `json:"account_xpub"`
			AccountZpub string `json:"account_zpub"`
		}
		Addresses []struct {
			Type, Path, Address, Script string
			PublicKey                   string `json:"public_key"`
			InternalKey                 string `json:"internal_key"`
		}
	}
	vectors.Read(t, "testdata/good_addresses_abandon.json", &f)
	m := chaintest.Master(t, f.Mnemonic)
	c := Chain{}
	for _, v := range f.Addresses {
		t.Run(v.Path, func(t *testing.T) {
			p, err := hd.ParsePath(v.Path)
			if err != nil {
				t.Fatal(err)
			}
			k, err := chain.DeriveKey(m, c.KeyType(), p)
			if err != nil {
				t.Fatal(err)
			}
			defer k.Destroy()
			o := chain.Options{AddressType: v.Type}
			addr, err := c.Address(o, k.Public)
			if err != nil {
				t.Fatal(err)
			}
			if addr != v.Address {
				t.Fatalf("address %s, want %s", addr, v.Address)
			}
			a, err := NewAccount(k.Public, Mainnet, AddressType(v.Type))
			if err != nil {
				t.Fatal(err)
			}
			if v.PublicKey != "" && hex.EncodeToString(k.Public) != v.PublicKey {
				t.Fatalf("public key %x", k.Public)
			}
			if v.InternalKey != "" && hex.EncodeToString(a.xonly) != v.InternalKey {
				t.Fatalf("internal key %x", a.xonly)
			}
			if v.Script != "" && hex.EncodeToString(a.Script) != v.Script {
				t.Fatalf("script %x", a.Script)
			}
			// The key signs for the account it derives.
			if _, err := c.NewKey(k.Private, chain.Account{Options: o, Address: addr, PublicKey: k.Public}); err != nil {
				t.Fatal(err)
			}
		})
	}
	// The account-level extended public keys, and the default path of
	// index 0 is the first receiving address above.
	for _, acc := range f.Accounts {
		o, err := c.Options(chain.Options{AddressType: acc.Type})
		if err != nil {
			t.Fatal(err)
		}
		p, err := c.DerivationPath(o, 0)
		if err != nil {
			t.Fatal(err)
		}
		if p[:3].String() != acc.AccountPath {
			t.Fatalf("%s: account level %s", acc.Type, p[:3])
		}
		xpub, err := m.XPub(p[:3], false)
		if err != nil {
			t.Fatal(err)
		}
		if acc.AccountXpub != "" && xpub != acc.AccountXpub {
			t.Fatalf("%s: xpub %s", acc.Type, xpub)
		}
		if acc.AccountZpub != "" {
			k, _ := hdkeychain.NewKeyFromString(xpub)
			z, _ := k.CloneWithVersion([]byte{0x04, 0xb2, 0x47, 0x46})
			if z.String() != acc.AccountZpub {
				t.Fatalf("%s: zpub %s", acc.Type, z)
			}
		}
	}
}

func TestOptionsAndPaths(t *testing.T) {
	c := Chain{}
	for _, tc := range []struct {
		in         chain.Options
		want       chain.Options
		path, hrp  string
		wantErr    string
		wantErrFld string
	}{
		{in: chain.Options{}, want: chain.Options{Network: "mainnet", AddressType: "p2wpkh"}, path: "m/84'/0'/0'/0/5", hrp: "bc1q"},
		{in: chain.Options{AddressType: "p2tr"}, want: chain.Options{Network: "mainnet", AddressType: "p2tr"}, path: "m/86'/0'/0'/0/5", hrp: "bc1p"},
		{in: chain.Options{Network: "testnet"}, want: chain.Options{Network: "testnet", AddressType: "p2wpkh"}, path: "m/84'/1'/0'/0/5", hrp: "tb1q"},
		{in: chain.Options{Network: "signet", AddressType: "p2tr"}, want: chain.Options{Network: "signet", AddressType: "p2tr"}, path: "m/86'/1'/0'/0/5", hrp: "tb1p"},
		{in: chain.Options{Network: "regtest"}, want: chain.Options{Network: "regtest", AddressType: "p2wpkh"}, path: "m/84'/1'/0'/0/5", hrp: "bcrt1q"},
		{in: chain.Options{Network: "regtest", AddressType: "p2tr"}, want: chain.Options{Network: "regtest", AddressType: "p2tr"}, path: "m/86'/1'/0'/0/5", hrp: "bcrt1p"},
		{in: chain.Options{Network: "main"}, wantErrFld: "network"},
		{in: chain.Options{Network: "Mainnet"}, wantErrFld: "network"},
		{in: chain.Options{AddressType: "p2pkh"}, wantErrFld: "address_type"},
		{in: chain.Options{AddressType: "P2WPKH"}, wantErrFld: "address_type"},
	} {
		got, err := c.Options(tc.in)
		if tc.wantErrFld != "" {
			var fe *errkind.Field
			if !errors.As(err, &fe) || fe.Name != tc.wantErrFld || errkind.Of(err) != errkind.Invalid {
				t.Errorf("%+v: error %v, want a field error on %s", tc.in, err, tc.wantErrFld)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%+v: %+v, %v", tc.in, got, err)
			continue
		}
		p, err := c.DerivationPath(got, 5)
		if err != nil || p.String() != tc.path {
			t.Errorf("%+v: path %s, %v", tc.in, p, err)
		}
		s := newSigner(t, "opts", Network(got.Network), AddressType(got.AddressType))
		if !strings.HasPrefix(s.acct.Address, tc.hrp) {
			t.Errorf("%+v: address %s, want prefix %s", tc.in, s.acct.Address, tc.hrp)
		}
	}
	if _, err := c.DerivationPath(chain.Options{}, hd.HardenedOffset); err == nil {
		t.Error("an index of 2^31 was accepted")
	}
}

func TestNewAccountRefusesBadKeys(t *testing.T) {
	s := newSigner(t, "k", Mainnet, P2WPKH)
	uncompressed := make([]byte, 65)
	uncompressed[0] = 4
	for _, pub := range [][]byte{nil, s.acct.PublicKey[:32], append([]byte{0x02}, make([]byte, 32)...), uncompressed} {
		if _, err := NewAccount(pub, Mainnet, P2WPKH); !errors.Is(err, ErrPublicKey) {
			t.Errorf("%x: %v", pub, err)
		}
	}
	other := newSigner(t, "other", Mainnet, P2WPKH)
	if _, err := NewKey(other.raw, s.acct); err == nil {
		t.Error("NewKey accepted another account's key")
	}
}
