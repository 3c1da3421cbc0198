// Package chaintest sets up accounts on any chain.Chain the way the sign
// pipeline does, from a BIP-39 mnemonic, for the chain packages' tests.
package chaintest

import (
	"testing"

	"github.com/moonvault/moonvault/internal/hd"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/wallet/chain"
)

// Master is the BIP-32 master key of mnemonic (no passphrase), destroyed
// when the test ends.
func Master(t testing.TB, mnemonic string) *hd.Master {
	t.Helper()
	seed, err := hd.Seed(secret.String(mnemonic), "")
	if err != nil {
		t.Fatal(err)
	}
	m, err := hd.NewMaster(seed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Destroy)
	return m
}

// Derive sets up account index on c: check the options, derive the key on
// the chain's default path, make the address and the signing key. It
// returns the path with the account.
func Derive(t testing.TB, c chain.Chain, m *hd.Master, o chain.Options, index uint32) (hd.Path, chain.Account, chain.Key) {
	t.Helper()
	o, err := c.Options(o)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.DerivationPath(o, index)
	if err != nil {
		t.Fatal(err)
	}
	k, err := chain.DeriveKey(m, c.KeyType(), p)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Destroy()
	addr, err := c.Address(o, k.Public)
	if err != nil {
		t.Fatal(err)
	}
	a := chain.Account{Options: o, Address: addr, PublicKey: k.Public}
	key, err := c.NewKey(k.Private, a)
	if err != nil {
		t.Fatal(err)
	}
	return p, a, key
}
