package wallet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/btcsuite/btcd/btcutil/base58"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/ethereum/go-ethereum/common"

	"github.com/moonvault/moonvault/internal/entropy"
	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/hd"
	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/provenance"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/vectors"
	"github.com/moonvault/moonvault/internal/wallet/chain"
)

const abandon = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"

// abandonVectors are the known answers the chain packages keep.
type abandonVectors struct {
	BTC struct {
		Accounts []struct {
			Type  string `json:"type"`
			ZPub  string `json:"account_zpub"`
			XPub  string `json:"account_xpub"`
			APath string `json:"account_path"`
		} `json:"accounts"`
		Addresses []struct {
			Type, Path, Address string
		} `json:"addresses"`
	}
	ETH, SOL struct{ Path, Address string }
}

func loadAbandon(t *testing.T) abandonVectors {
	t.Helper()
	var v abandonVectors
	for f, dst := range map[string]any{
		"btc/testdata/good_addresses_abandon.json":  &v.BTC,
		"evm/testdata/hd/good_abandon_address.json": &v.ETH,
		"solana/testdata/good_abandon_address.json": &v.SOL,
	} {
		vectors.Read(t, f, dst)
	}
	return v
}

// memProvenance signs with an in-memory key.
func memProvenance(t testing.TB) (*provenance.Signer, ed25519.PublicKey) {
	seed := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(seed)
	s := provenance.NewSigner(func(context.Context) (secret.Bytes, error) { return secret.Bytes(seed).Clone(), nil })
	return s, ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
}

func u32(i uint32) *uint32 { return &i }

func TestHDWalletStandardAddresses(t *testing.T) {
	ctx := context.Background()
	prov, pub := memProvenance(t)
	svc, kv, _ := newService(t, Options{Provenance: prov})
	v := loadAbandon(t)

	w, err := svc.CreateWallet(ctx, "alice", "w", abandon, "")
	if err != nil {
		t.Fatal(err)
	}
	if w.Fingerprint != "73c5da0a" || w.Origin != provenance.Imported || w.Name != "w" {
		t.Fatalf("wallet = %+v", w)
	}
	if _, err := svc.CreateWallet(ctx, "alice", "w", abandon, ""); !errors.Is(err, ErrWalletExists) {
		t.Fatalf("duplicate wallet: %v", err)
	}

	cases := []struct {
		name, chain string
		opts        chain.Options
		addr, path  string
	}{
		{"eth0", intent.ChainEthereum, chain.Options{}, v.ETH.Address, v.ETH.Path},
		{"wpkh0", intent.ChainBitcoin, chain.Options{}, v.BTC.Addresses[0].Address, "m/84'/0'/0'/0/0"},
		{"tr0", intent.ChainBitcoin, chain.Options{AddressType: "p2tr"}, v.BTC.Addresses[3].Address, "m/86'/0'/0'/0/0"},
		{"sol0", intent.ChainSolana, chain.Options{}, v.SOL.Address, v.SOL.Path},
	}
	for _, c := range cases {
		a, err := svc.CreateAccount(ctx, AccountSpec{Owner: "alice", Name: c.name, Chain: c.chain, Options: c.opts, Wallet: "w", Index: u32(0)})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if a.Address != c.addr || a.Origin == nil || a.Origin.Path != c.path || a.Origin.Fingerprint != "73c5da0a" {
			t.Fatalf("%s: %+v %+v", c.name, a, a.Origin)
		}
		if (a.KeyType == chain.Secp256k1) == (a.Origin.XPub == "") {
			t.Fatalf("%s: xpub %q for a %s key", c.name, a.Origin.XPub, a.KeyType)
		}
		// The provenance record says it was derived, and verifies.
		signed, err := svc.Provenance(ctx, "alice", c.name)
		if err != nil {
			t.Fatal(err)
		}
		r, err := provenance.Verify(pub, signed)
		if err != nil {
			t.Fatal(err)
		}
		if r.Origin != provenance.Derived || r.Wallet == nil || r.Wallet.DerivationPath != c.path || r.Address != c.addr ||
			r.Account != "alice/"+c.name || r.Entropy.Mode != provenance.EntropyExternal || !r.CreatedAt.Equal(a.CreatedAt) {
			t.Fatalf("%s: provenance %+v", c.name, r)
		}
	}
	// The account-level xpubs are BIP-84's (as zpub) and BIP-86's.
	wpkh, _ := svc.Get(ctx, "alice", "wpkh0")
	k, err := hdkeychain.NewKeyFromString(wpkh.Origin.XPub)
	if err != nil {
		t.Fatal(err)
	}
	zpub, _ := k.CloneWithVersion([]byte{0x04, 0xb2, 0x47, 0x46})
	if zpub.String() != v.BTC.Accounts[0].ZPub {
		t.Fatalf("p2wpkh account key %s", zpub)
	}
	if tr, _ := svc.Get(ctx, "alice", "tr0"); tr.Origin.XPub != v.BTC.Accounts[1].XPub {
		t.Fatalf("p2tr account key %s", tr.Origin.XPub)
	}

	// The next unused index: 1 on each path; an explicit index moves it on.
	a, err := svc.CreateAccount(ctx, AccountSpec{Owner: "alice", Name: "wpkh1", Chain: intent.ChainBitcoin, Wallet: "w"})
	if err != nil || a.Origin.Path != "m/84'/0'/0'/0/1" || a.Address != v.BTC.Addresses[1].Address {
		t.Fatalf("next index: %+v %v", a, err)
	}
	if _, err := svc.CreateAccount(ctx, AccountSpec{Owner: "alice", Name: "wpkh5", Chain: intent.ChainBitcoin, Wallet: "w", Index: u32(5)}); err != nil {
		t.Fatal(err)
	}
	if a, _ := svc.CreateAccount(ctx, AccountSpec{Owner: "alice", Name: "wpkh6", Chain: intent.ChainBitcoin, Wallet: "w"}); a == nil || a.Origin.Path != "m/84'/0'/0'/0/6" {
		t.Fatalf("after an explicit 5: %+v", a)
	}
	// A testnet account is on coin type 1 with a tpub.
	tb, err := svc.CreateAccount(ctx, AccountSpec{Owner: "alice", Name: "tb0", Chain: intent.ChainBitcoin, Options: chain.Options{Network: "testnet"}, Wallet: "w"})
	if err != nil || tb.Origin.Path != "m/84'/1'/0'/0/0" || !strings.HasPrefix(tb.Origin.XPub, "tpub") || !strings.HasPrefix(tb.Address, "tb1q") {
		t.Fatalf("testnet: %+v %v", tb, err)
	}
	// Deriving a key already in the vault is a conflict naming the account.
	_, err = svc.CreateAccount(ctx, AccountSpec{Owner: "alice", Name: "again", Chain: intent.ChainEthereum, Wallet: "w", Index: u32(0)})
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "eth0") {
		t.Fatalf("same key twice: %v", err)
	}

	for name, spec := range map[string]AccountSpec{
		"no wallet":       {Owner: "alice", Name: "x", Wallet: "nope"},
		"other owner":     {Owner: "bob", Name: "x", Wallet: "w"},
		"index alone":     {Owner: "alice", Name: "x", Index: u32(1)},
		"import + wallet": {Owner: "alice", Name: "x", Wallet: "w", Import: make(secret.Bytes, 32)},
		"huge index":      {Owner: "alice", Name: "x", Wallet: "w", Index: u32(1 << 31)},
		"eth network":     {Owner: "alice", Name: "x", Wallet: "w", Options: chain.Options{Network: "mainnet"}},
		"unknown chain":   {Owner: "alice", Name: "x", Wallet: "w", Chain: "dogecoin"},
	} {
		_, err := svc.CreateAccount(ctx, spec)
		if k := errkind.Of(err); k != errkind.Invalid && k != errkind.NotFound {
			t.Errorf("%s: %v (kind %v)", name, err, k)
		}
	}

	// Deleting the wallet is refused while accounts derive from it.
	got, err := svc.GetWallet(ctx, "alice", "w")
	if err != nil || got.Accounts != 8 {
		t.Fatalf("wallet accounts: %+v %v", got, err)
	}
	if err := svc.DeleteWallet(ctx, "alice", "w"); !errors.Is(err, ErrWalletInUse) || !strings.Contains(err.Error(), "8 account") {
		t.Fatalf("delete in use: %v", err)
	}
	accts, _, _ := svc.List(ctx, "alice", "", 100)
	for _, a := range accts {
		if err := svc.Delete(ctx, "alice", a.Name); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.DeleteWallet(ctx, "alice", "w"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.GetWallet(ctx, "alice", "w"); !errors.Is(err, ErrWalletNotFound) {
		t.Fatalf("deleted wallet: %v", err)
	}
	keys, _ := kv.List(ctx, "wallet/", "", 0)
	if len(keys) != 0 {
		t.Fatalf("left behind: %v", keys)
	}
}

// drawingReader is an entropy source that says what it drew.
type drawingReader struct{}

func (drawingReader) Read(p []byte) (int, error) { return rand.Read(p) }
func (drawingReader) ReadDraw(p []byte) (entropy.Draw, error) {
	_, _ = rand.Read(p)
	return entropy.Draw{Mode: "augmentation", Source: "pkcs11", HSMBytes: 64, Health: entropy.HealthPassed, HealthFailures: 2}, nil
}

// describingSealer reports its envelopes as seal-wrapped.
type describingSealer struct{ *gcmSealer }

func (describingSealer) Describe([]byte) (bool, string, error) {
	return true, "pkcs11:aes_gcm:test", nil
}

func TestGeneratedWalletAndProvenance(t *testing.T) {
	ctx := context.Background()
	prov, pub := memProvenance(t)
	svc := New(openKV(t), describingSealer{newSealer(t)}, drawingReader{}, Options{Provenance: prov})

	w, err := svc.CreateWallet(ctx, "alice", "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(w.Name, "wallet-") || len(w.Fingerprint) != 8 || w.Origin != provenance.Generated {
		t.Fatalf("wallet %+v", w)
	}
	if _, err := svc.CreateWallet(ctx, "alice", "p", "", "TREZOR"); errkind.Of(err) != errkind.Invalid {
		t.Fatalf("passphrase without mnemonic: %v", err)
	}
	if _, err := svc.CreateWallet(ctx, "alice", "p", abandon, secret.String(strings.Repeat("x", 2000))); errkind.Of(err) != errkind.Invalid {
		t.Fatalf("huge passphrase: %v", err)
	}
	// A BIP-39 passphrase makes another wallet (BIP-39 vectors, "TREZOR").
	tw, err := svc.CreateWallet(ctx, "alice", "trezor", abandon, "TREZOR")
	if err != nil {
		t.Fatal(err)
	}
	vecSeed, _ := hex.DecodeString("c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04")
	vm, err := hd.NewMaster(vecSeed)
	if err != nil || tw.Fingerprint != vm.Fingerprint() {
		t.Fatalf("passphrase wallet %s, the BIP-39 vector's seed gives %s (%v)", tw.Fingerprint, vm.Fingerprint(), err)
	}
	vm.Destroy()
	a, err := svc.CreateAccount(ctx, AccountSpec{Owner: "alice", Name: "sol", Chain: intent.ChainSolana, Wallet: w.Name})
	if err != nil || a.Origin.Path != "m/44'/501'/0'/0'" {
		t.Fatalf("derived: %+v %v", a, err)
	}
	gen, err := svc.CreateAccount(ctx, AccountSpec{Owner: "alice", Name: "gen", Chain: intent.ChainBitcoin, Options: chain.Options{Network: "regtest", AddressType: "p2tr"}})
	if err != nil || !strings.HasPrefix(gen.Address, "bcrt1p") || gen.Origin != nil {
		t.Fatalf("generated: %+v %v", gen, err)
	}
	imp, err := svc.CreateAccount(ctx, AccountSpec{Owner: "alice", Name: "imp", Chain: intent.ChainSolana, Import: make(secret.Bytes, 32)})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]provenance.Record{
		"sol": {Origin: provenance.Derived, Entropy: provenance.Entropy{Mode: "augmentation", Source: "pkcs11", HSMBytes: 64, Health: "passed", HealthFailures: 2, DrawnFor: "wallet"}},
		"gen": {Origin: provenance.Generated, Entropy: provenance.Entropy{Mode: "augmentation", Source: "pkcs11", HSMBytes: 64, Health: "passed", HealthFailures: 2, DrawnFor: "key"}},
		"imp": {Origin: provenance.Imported, Entropy: provenance.Entropy{Mode: "external", Health: "not_applicable"}},
	} {
		s, err := svc.Provenance(ctx, "alice", name)
		if err != nil {
			t.Fatal(err)
		}
		r, err := provenance.Verify(pub, s)
		if err != nil {
			t.Fatal(err)
		}
		if r.Origin != want.Origin || r.Entropy != want.Entropy || !r.SealWrap.Wrapped || r.SealWrap.Mechanism != "pkcs11:aes_gcm:test" {
			t.Errorf("%s: %+v", name, r)
		}
	}
	if imp.Address != "4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS" { // the Ed25519 public key of the zero seed
		t.Fatalf("imported Solana address %s", imp.Address)
	}
	// Accounts made before provenance was kept have none: a 404.
	old := New(openKV(t), newSealer(t), rand.Reader, Options{})
	if _, err := old.Create(ctx, "alice", "x", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Provenance(ctx, "alice", "x"); !errors.Is(err, ErrNoProvenance) {
		t.Fatalf("no record: %v", err)
	}
}

func TestImportSolanaKeypair(t *testing.T) {
	ctx := context.Background()
	svc, _, _ := newService(t, Options{})
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	a, err := svc.CreateAccount(ctx, AccountSpec{Owner: "alice", Name: "kp", Chain: intent.ChainSolana, Import: secret.Bytes(priv)})
	if err != nil || a.Address != base58.Encode(pub) {
		t.Fatalf("64-byte keypair: %+v %v", a, err)
	}
	bad := append(secret.Bytes(nil), priv...)
	bad[40] ^= 1
	if _, err := svc.CreateAccount(ctx, AccountSpec{Owner: "alice", Name: "bad", Chain: intent.ChainSolana, Import: bad}); errkind.Of(err) != errkind.Invalid {
		t.Fatalf("mismatched keypair: %v", err)
	}
	if _, err := svc.CreateAccount(ctx, AccountSpec{Owner: "alice", Name: "eth", Import: secret.Bytes(priv)}); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("64 bytes for Ethereum: %v", err)
	}
}

// Records written before accounts had a chain (address in lower case, no
// chain, key type or origin) are Ethereum accounts that still sign.
func TestLegacyRecord(t *testing.T) {
	ctx := context.Background()
	svc, kv, _ := newService(t, Options{})
	a, err := svc.Create(ctx, "alice", "old", nil)
	if err != nil {
		t.Fatal(err)
	}
	legacy := fmt.Sprintf(`{"name":"old","owner":"alice","address":%q,"public_key":"0x%x","created_at":"2024-01-01T00:00:00Z"}`,
		strings.ToLower(a.Address), a.PublicKey)
	if err := kv.Put(ctx, accountKey("alice", "old"), []byte(legacy)); err != nil {
		t.Fatal(err)
	}
	svc.Purge()
	got, err := svc.ByAddress(ctx, common.HexToAddress(a.Address))
	if err != nil || got.Chain != intent.ChainEthereum || got.Address != a.Address || got.KeyType != chain.Secp256k1 {
		t.Fatalf("legacy record: %+v %v", got, err)
	}
	sig, hash, err := svc.SignMessage(ctx, got, []byte("m"))
	if err != nil || recoverSigner(t, hash, sig).Hex() != a.Address {
		t.Fatalf("legacy sign: %v", err)
	}
}

func TestListChainAndSign(t *testing.T) {
	ctx := context.Background()
	var signed []string
	var mu sync.Mutex
	svc, _, _ := newService(t, Options{OnSign: func(c, k string) { mu.Lock(); signed = append(signed, c+"/"+k); mu.Unlock() }})
	for i, c := range []string{"ethereum", "bitcoin", "solana", "ethereum", "solana", "solana"} {
		if _, err := svc.CreateAccount(ctx, AccountSpec{Owner: "alice", Name: fmt.Sprintf("a%d", i), Chain: c}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	after := ""
	for {
		page, next, err := svc.ListChain(ctx, "alice", "solana", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range page {
			names = append(names, a.Name)
		}
		if next == "" {
			break
		}
		after = next
	}
	if fmt.Sprint(names) != "[a2 a4 a5]" {
		t.Fatalf("solana accounts %v", names)
	}
	if _, _, err := svc.ListChain(ctx, "alice", "dogecoin", "", 10); errkind.Of(err) != errkind.Invalid {
		t.Fatalf("unknown chain filter: %v", err)
	}

	// A Solana message signs through the chain package, and verifies.
	sol, _ := svc.Get(ctx, "alice", "a2")
	ch, _ := svc.Chain(sol.Chain)
	req, err := ch.Parse(chain.Input{Op: chain.OpSignMessage, Message: []byte("hello")}, sol.ChainAccount())
	if err != nil {
		t.Fatal(err)
	}
	out, err := svc.Sign(ctx, sol, req, intent.KindMessage)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(out)
	var resp struct{ Signature string }
	_ = json.Unmarshal(b, &resp)
	if !ed25519.Verify(sol.PublicKey, []byte("hello"), base58.Decode(resp.Signature)) {
		t.Fatalf("signature %s does not verify", resp.Signature)
	}
	// Ethereum's EIP-191 helper refuses other chains.
	if _, _, err := svc.SignMessage(ctx, sol, []byte("x")); err == nil {
		t.Fatal("SignMessage on a Solana account")
	}
	if fmt.Sprint(signed) != "[solana/message]" {
		t.Fatalf("metrics saw %v", signed)
	}
	// A Bitcoin key stored under a Solana account is refused (integrity).
	btcAcct, _ := svc.Get(ctx, "alice", "a1")
	forged := *sol
	forged.Name = btcAcct.Name
	if _, err := svc.Sign(ctx, &forged, req, intent.KindMessage); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("forged: %v", err)
	}
}

// Concurrent derivations with no index each get their own.
func TestConcurrentNextIndex(t *testing.T) {
	ctx := context.Background()
	svc, _, _ := newService(t, Options{})
	if _, err := svc.CreateWallet(ctx, "alice", "w", abandon, ""); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	paths := make(chan string, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := svc.CreateAccount(ctx, AccountSpec{Owner: "alice", Name: fmt.Sprintf("s%d", i), Chain: "solana", Wallet: "w"})
			if err != nil {
				t.Error(err)
				return
			}
			paths <- a.Origin.Path
		}()
	}
	wg.Wait()
	close(paths)
	seen := map[string]bool{}
	for p := range paths {
		if seen[p] {
			t.Fatalf("path %s derived twice", p)
		}
		seen[p] = true
	}
	if len(seen) != 8 || !seen["m/44'/501'/7'/0'"] {
		t.Fatalf("paths %v", seen)
	}
}
