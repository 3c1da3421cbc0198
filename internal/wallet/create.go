package wallet

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/provenance"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/wallet/chain"
)

// AccountSpec says which account CreateAccount makes. Its key is imported
// (Import), derived from an HD wallet of Owner (Wallet, Index), or else
// generated from the vault's entropy.
type AccountSpec struct {
	Owner string
	Name  string // "" for a generated name
	// Chain is intent.ChainEthereum (the default when ""), ChainBitcoin or
	// ChainSolana; Options are its options (bitcoin: network, address type).
	Chain   string
	Options chain.Options
	// Import is a private key to import: 32 bytes (a secp256k1 scalar or
	// an Ed25519 seed); Solana also takes its 64-byte keypair (seed then
	// public key). The caller keeps and destroys it.
	Import secret.Bytes
	// Wallet names the HD wallet to derive from; Index is the index on the
	// chain's default path, nil for the next one unused.
	Wallet string
	Index  *uint32
}

// keyMaterial is a new account's key and what the provenance record says
// of where it came from.
type keyMaterial struct {
	raw    secret.Bytes
	pub    []byte // as chain.PublicKey returns it (compressed secp256k1, Ed25519)
	origin *Origin
	prov   provenance.Record // Origin, Wallet, Entropy filled in
}

func (k *keyMaterial) destroy() {
	if k != nil {
		k.raw.Destroy()
	}
}

// Create makes an Ethereum account for owner: the key drawn from the
// entropy source, or importKey. See CreateAccount.
func (s *Service) Create(ctx context.Context, owner, name string, importKey secret.Bytes) (*Account, error) {
	return s.CreateAccount(ctx, AccountSpec{Owner: owner, Name: name, Import: importKey})
}

// CreateAccount makes an account. Record, wrapped key, address index,
// provenance record (and the mark on the wallet it derives from) are
// written in one atomic batch; nothing is written when any step fails.
func (s *Service) CreateAccount(ctx context.Context, spec AccountSpec) (*Account, error) {
	if err := checkOwner(spec.Owner); err != nil {
		return nil, err
	}
	generated := spec.Name == ""
	if !generated && !nameRe.MatchString(spec.Name) {
		return nil, ErrInvalidName
	}
	if spec.Chain == "" {
		spec.Chain = intent.ChainEthereum
	}
	ch, err := s.Chain(spec.Chain)
	if err != nil {
		return nil, err
	}
	opts, err := ch.Options(spec.Options)
	if err != nil {
		return nil, err
	}
	switch {
	case spec.Import != nil && spec.Wallet != "":
		return nil, errkind.FieldErr("wallet", "cannot be combined with private_key: an account is imported or derived")
	case spec.Index != nil && spec.Wallet == "":
		return nil, errkind.FieldErr("index", "needs wallet: the index is a position on the wallet's derivation path")
	}
	var km *keyMaterial
	switch {
	case spec.Import != nil:
		km, err = importKey(ch.KeyType(), spec.Import)
	case spec.Wallet != "":
		km, err = s.deriveKey(ctx, spec.Owner, spec.Wallet, spec.Chain, ch, opts, spec.Index)
	default:
		km, err = s.generateKey(ch.KeyType())
	}
	if err != nil {
		return nil, err
	}
	defer km.destroy()
	pub := km.pub
	if spec.Chain == intent.ChainEthereum {
		// Ethereum accounts have always shown the uncompressed point; the
		// address is computed from it too, so the point is decompressed
		// once (a square root in the field).
		k, err := btcec.ParsePubKey(pub)
		if err != nil {
			return nil, fmt.Errorf("wallet: public key: %w", err)
		}
		pub = k.SerializeUncompressed()
	}
	addr, err := ch.Address(opts, pub)
	if err != nil {
		return nil, err
	}
	rec := &record{
		Chain: spec.Chain, Network: opts.Network, AddressType: opts.AddressType, KeyType: string(ch.KeyType()),
		Address: addr, PublicKey: pub, Origin: km.origin,
	}
	name := spec.Name
	for attempt := 0; ; attempt++ {
		if generated {
			if name, err = generatedName("acct-", s.now()); err != nil {
				return nil, err
			}
		}
		rec.Owner, rec.Name = spec.Owner, name
		acct, err := s.create(ctx, rec, km)
		if errors.Is(err, errNameTaken) && generated && attempt < 3 {
			continue
		}
		if errors.Is(err, errNameTaken) {
			return nil, fmt.Errorf("%w: %s", ErrExists, name)
		}
		return acct, err
	}
}

var errNameTaken = errors.New("name taken")

func (s *Service) create(ctx context.Context, rec *record, km *keyMaterial) (*Account, error) {
	owner, name := rec.Owner, rec.Name
	ak := addressKey(rec.Chain, rec.Network, rec.Address)
	locks := []string{AccountID{owner, name}.String(), ak}
	if km.origin != nil {
		locks = append(locks, walletID(owner, km.origin.Wallet))
	}
	unlock := s.lockFor(locks...)
	defer unlock()
	if _, err := s.kv.Get(ctx, accountKey(owner, name)); err == nil {
		return nil, errNameTaken
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("wallet: read account: %w", err)
	}
	if b, err := s.kv.Get(ctx, ak); err == nil {
		detail := "address " + rec.Address + " is already in the vault"
		if id, perr := ParseAccountID(string(b)); perr == nil && id.Owner == owner {
			detail += " as your account " + id.Name // another owner's names stay hidden
		}
		return nil, fmt.Errorf("%w: %s", ErrExists, detail)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("wallet: read address index: %w", err)
	}
	if km.origin != nil {
		// The wallet may have been deleted since the key was derived.
		if _, err := s.getWalletRecord(ctx, owner, km.origin.Wallet); err != nil {
			return nil, err
		}
	}
	envelope, err := s.sealer.Wrap(ctx, keyPath(owner, name), km.raw)
	if err != nil {
		return nil, fmt.Errorf("wallet: seal-wrap key: %w", err)
	}
	rec.CreatedAt = s.now().UTC().Truncate(time.Millisecond)
	recJSON, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("wallet: encode account: %w", err)
	}
	// The name and the address are claimed in the same atomic batch, across
	// nodes (Create): two nodes creating one name, or one key, at once
	// cannot both succeed, so an address handed out is never overwritten.
	ops := []storage.Op{
		{Key: accountKey(owner, name), Value: recJSON, Create: true},
		{Key: keyPath(owner, name), Value: envelope},
		{Key: ak, Value: []byte(AccountID{owner, name}.String()), Create: true},
	}
	if km.origin != nil {
		ops = append(ops, storage.Op{Key: derivedKey(owner, km.origin.Wallet, name), Value: []byte{}})
	}
	acct := rec.account()
	if s.prov != nil {
		signed, err := s.signProvenance(ctx, acct, km, envelope)
		if err != nil {
			return nil, err
		}
		ops = append(ops, storage.Op{Key: provenanceKey(owner, name), Value: signed})
	}
	err = s.kv.Batch(ctx, ops)
	s.changed(owner, name) // no stale "before" may outlive the write
	if err != nil {
		if errors.Is(err, storage.ErrConflict) {
			// Another node won the race: say which claim was lost.
			if _, gerr := s.kv.Get(ctx, accountKey(owner, name)); gerr == nil {
				return nil, errNameTaken
			}
			return nil, fmt.Errorf("%w: address %s was just added to the vault", ErrExists, rec.Address)
		}
		return nil, fmt.Errorf("wallet: write account: %w", err)
	}
	s.log.InfoContext(ctx, "account created", "owner", owner, "name", name, "chain", rec.Chain, "address", rec.Address, "origin", km.prov.Origin)
	return acct, nil
}

// importKey checks a private key to import. Solana's 64-byte keypair is
// its seed followed by its public key, which must match.
func importKey(kt chain.KeyType, key secret.Bytes) (*keyMaterial, error) {
	raw := key
	if kt == chain.Ed25519 && len(key) == ed25519.PrivateKeySize {
		raw = key[:ed25519.SeedSize]
	}
	pub, err := chain.PublicKey(kt, raw)
	if err != nil {
		return nil, ErrInvalidKey
	}
	if len(key) == ed25519.PrivateKeySize && string(key[ed25519.SeedSize:]) != string(pub) {
		return nil, &errkind.Field{Name: "private_key", Msg: "the keypair's public half is not its seed's public key"}
	}
	return &keyMaterial{
		raw: raw.Clone(), pub: pub,
		prov: provenance.Record{Origin: provenance.Imported, Entropy: provenance.Entropy{
			Mode: provenance.EntropyExternal, Health: "not_applicable",
		}},
	}, nil
}

// generateKey draws a key from the CSP source (chain.GenerateKey redraws
// the ~2^-128 values that are not valid scalars) and records the draw.
func (s *Service) generateKey(kt chain.KeyType) (*keyMaterial, error) {
	r := &drawRecorder{s: s}
	raw, pub, err := chain.GenerateKey(kt, r)
	if err != nil {
		return nil, fmt.Errorf("wallet: generate key: %w", err)
	}
	return &keyMaterial{raw: raw, pub: pub, prov: provenance.Record{
		Origin: provenance.Generated, Entropy: r.entropy(provenance.DrawnForKey),
	}}, nil
}
