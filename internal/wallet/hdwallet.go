package wallet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/hd"
	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/provenance"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/wallet/chain"
)

// HD wallet errors.
var (
	ErrWalletNotFound = errkind.New(errkind.NotFound, "wallet_not_found", "wallet not found")
	ErrWalletExists   = errkind.New(errkind.Conflict, "conflict", "wallet already exists")
	// ErrWalletInUse refuses to destroy a seed that accounts still derive
	// from (delete them first).
	ErrWalletInUse = errkind.New(errkind.Conflict, "wallet_in_use", "accounts derive from this wallet; delete them first")
	// ErrWalletIntegrity: a wallet's seed is not the one its record names.
	ErrWalletIntegrity = errkind.New(errkind.Integrity, "integrity_error", "stored seed does not match its wallet")
)

// Wallet is an HD wallet's public record. The seed is never part of it.
type Wallet struct {
	Name        string
	Owner       string
	Fingerprint string // BIP-32 master key fingerprint, hex
	Origin      string // provenance.Generated or provenance.Imported
	CreatedAt   time.Time
	// Accounts counts the accounts derived from it (Get only; -1 in List).
	Accounts int
}

// walletRecord is the stored form of a Wallet.
type walletRecord struct {
	Name        string             `json:"name"`
	Owner       string             `json:"owner"`
	Fingerprint string             `json:"fingerprint"`
	Origin      string             `json:"origin"`
	CreatedAt   time.Time          `json:"created_at"`
	Entropy     provenance.Entropy `json:"entropy"` // what the mnemonic was drawn from
	// Next is the next unused index per derivation scheme
	// ("ethereum", "bitcoin/mainnet/p2wpkh", "solana").
	Next map[string]uint32 `json:"next,omitempty"`
}

func (r *walletRecord) wallet(accounts int) *Wallet {
	return &Wallet{Name: r.Name, Owner: r.Owner, Fingerprint: r.Fingerprint, Origin: r.Origin, CreatedAt: r.CreatedAt, Accounts: accounts}
}

func walletKey(owner, name string) string { return prefixWallets + owner + "/" + name }
func seedPath(owner, name string) string  { return prefixSeeds + owner + "/" + name }
func walletID(owner, name string) string  { return "wallet:" + owner + "/" + name }
func derivedPrefix(owner, wallet string) string {
	return prefixDerived + owner + "/" + wallet + "/"
}
func derivedKey(owner, wallet, account string) string {
	return derivedPrefix(owner, wallet) + account
}

var errInvalidWalletName = errkind.FieldErr("name", "invalid wallet name: use 1-64 of a-z A-Z 0-9 . _ -")

func checkWalletName(name string) error {
	if !nameRe.MatchString(name) {
		return errInvalidWalletName
	}
	return nil
}

// CreateWallet makes an HD wallet for owner: from a new 24-word BIP-39
// mnemonic drawn from the entropy source when mnemonic is empty, or from
// the mnemonic given (12 to 24 words, with an optional BIP-39
// passphrase). Only the 64-byte seed is kept, seal-wrapped; the mnemonic
// is neither stored nor returned. An empty name is generated.
func (s *Service) CreateWallet(ctx context.Context, owner, name string, mnemonic, passphrase secret.String) (*Wallet, error) {
	if err := checkOwner(owner); err != nil {
		return nil, err
	}
	generated := name == ""
	if !generated {
		if err := checkWalletName(name); err != nil {
			return nil, err
		}
	}
	if mnemonic == "" && passphrase != "" {
		return nil, errkind.FieldErr("passphrase", "applies only to an imported mnemonic")
	}
	if len(passphrase) > hd.MaxMnemonicLen {
		return nil, errkind.FieldErr("passphrase", fmt.Sprintf("longer than %d bytes", hd.MaxMnemonicLen))
	}
	rec := &walletRecord{Owner: owner, Origin: provenance.Imported,
		Entropy: provenance.Entropy{Mode: provenance.EntropyExternal, Health: "not_applicable", DrawnFor: provenance.DrawnForWallet}}
	if mnemonic == "" {
		r := &drawRecorder{s: s}
		ent := make(secret.Bytes, hd.EntropySize)
		defer ent.Destroy()
		if _, err := io.ReadFull(r, ent); err != nil {
			return nil, fmt.Errorf("wallet: generate mnemonic: %w", err)
		}
		m, err := hd.NewMnemonic(ent)
		if err != nil {
			return nil, err
		}
		mnemonic = m
		rec.Origin, rec.Entropy = provenance.Generated, r.entropy(provenance.DrawnForWallet)
	}
	seed, err := hd.Seed(mnemonic, passphrase)
	if err != nil {
		return nil, err
	}
	defer seed.Destroy()
	master, err := hd.NewMaster(seed)
	if err != nil {
		return nil, fmt.Errorf("wallet: %w", err)
	}
	rec.Fingerprint = master.Fingerprint()
	master.Destroy()
	for attempt := 0; ; attempt++ {
		if generated {
			if name, err = generatedName("wallet-", s.now()); err != nil {
				return nil, err
			}
		}
		rec.Name = name
		w, err := s.createWallet(ctx, rec, seed)
		if errors.Is(err, errNameTaken) && generated && attempt < 3 {
			continue
		}
		if errors.Is(err, errNameTaken) {
			return nil, fmt.Errorf("%w: %s", ErrWalletExists, name)
		}
		return w, err
	}
}

func (s *Service) createWallet(ctx context.Context, rec *walletRecord, seed secret.Bytes) (*Wallet, error) {
	owner, name := rec.Owner, rec.Name
	unlock := s.lockFor(walletID(owner, name))
	defer unlock()
	if _, err := s.kv.Get(ctx, walletKey(owner, name)); err == nil {
		return nil, errNameTaken
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("wallet: read wallet: %w", err)
	}
	env, err := s.sealer.Wrap(ctx, seedPath(owner, name), seed)
	if err != nil {
		return nil, fmt.Errorf("wallet: seal-wrap seed: %w", err)
	}
	rec.CreatedAt = s.now().UTC().Truncate(time.Millisecond)
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("wallet: encode wallet: %w", err)
	}
	if err := s.kv.Batch(ctx, []storage.Op{
		{Key: walletKey(owner, name), Value: b, Create: true}, // claimed once, across nodes
		{Key: seedPath(owner, name), Value: env},
	}); err != nil {
		if errors.Is(err, storage.ErrConflict) {
			return nil, errNameTaken
		}
		return nil, fmt.Errorf("wallet: write wallet: %w", err)
	}
	s.log.InfoContext(ctx, "wallet created", "owner", owner, "name", name, "fingerprint", rec.Fingerprint, "origin", rec.Origin)
	return rec.wallet(0), nil
}

func (s *Service) getWalletRecord(ctx context.Context, owner, name string) (*walletRecord, error) {
	if err := checkOwner(owner); err != nil {
		return nil, err
	}
	if !nameRe.MatchString(name) {
		return nil, ErrWalletNotFound // no such name can exist
	}
	b, err := s.kv.Get(ctx, walletKey(owner, name))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrWalletNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("wallet: read wallet: %w", err)
	}
	return decodeWallet(b, owner, name)
}

func decodeWallet(b []byte, owner, name string) (*walletRecord, error) {
	var r walletRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("wallet: decode wallet %s/%s: %w", owner, name, err)
	}
	return &r, nil
}

// GetWallet returns owner's wallet name with the number of accounts
// derived from it.
func (s *Service) GetWallet(ctx context.Context, owner, name string) (*Wallet, error) {
	r, err := s.getWalletRecord(ctx, owner, name)
	if err != nil {
		return nil, err
	}
	keys, err := s.kv.List(ctx, derivedPrefix(owner, name), "", 0)
	if err != nil {
		return nil, fmt.Errorf("wallet: count accounts: %w", err)
	}
	return r.wallet(len(keys)), nil
}

// ListWallets returns owner's wallets in name order, paged as List.
func (s *Service) ListWallets(ctx context.Context, owner, after string, limit int) ([]Wallet, string, error) {
	if err := checkOwner(owner); err != nil {
		return nil, "", err
	}
	prefix, from, limit := page(prefixWallets+owner+"/", after, limit)
	keys, err := s.kv.List(ctx, prefix, from, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("wallet: list wallets: %w", err)
	}
	next := ""
	if len(keys) > limit {
		keys = keys[:limit]
		next = strings.TrimPrefix(keys[limit-1], prefix)
	}
	out := make([]Wallet, 0, len(keys))
	for _, k := range keys {
		r, err := s.getWalletRecord(ctx, owner, strings.TrimPrefix(k, prefix))
		if errors.Is(err, ErrWalletNotFound) {
			continue // deleted since List
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, *r.wallet(-1))
	}
	return out, next, nil
}

// DeleteWallet destroys owner's wallet: its seed and its record, in one
// batch. It refuses (ErrWalletInUse) while accounts derive from it: they
// keep keys of their own, but the seed is the only record of where they
// came from, and for a wallet the vault generated it is the only copy of
// the mnemonic's keys there will ever be.
func (s *Service) DeleteWallet(ctx context.Context, owner, name string) error {
	unlock := s.lockFor(walletID(owner, name))
	defer unlock()
	r, err := s.getWalletRecord(ctx, owner, name)
	if err != nil {
		return err
	}
	keys, err := s.kv.List(ctx, derivedPrefix(owner, name), "", 0)
	if err != nil {
		return fmt.Errorf("wallet: list derived accounts: %w", err)
	}
	if n := len(keys); n > 0 {
		first := strings.TrimPrefix(keys[0], derivedPrefix(owner, name))
		return fmt.Errorf("%w (%d account(s), %s the first)", ErrWalletInUse, n, first)
	}
	if err := s.kv.Batch(ctx, []storage.Op{
		{Key: walletKey(owner, name), Delete: true},
		{Key: seedPath(owner, name), Delete: true},
	}); err != nil {
		return fmt.Errorf("wallet: delete wallet: %w", err)
	}
	s.log.InfoContext(ctx, "wallet deleted; its seed was destroyed", "owner", owner, "name", name, "fingerprint", r.Fingerprint)
	return nil
}

// scheme names a derivation path family, whose indexes are counted
// together: "ethereum", "bitcoin/testnet/p2tr", "solana".
func scheme(chainName string, o chain.Options) string {
	parts := []string{chainName}
	for _, p := range []string{o.Network, o.AddressType} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/")
}

// reserveIndex takes the wallet's next unused index of the scheme, or
// moves it past an explicit one, with one atomic update of the wallet
// record (every node shares it).
func (s *Service) reserveIndex(ctx context.Context, owner, name, sch string, explicit *uint32) (uint32, error) {
	var idx uint32
	err := s.kv.Update(ctx, walletKey(owner, name), func(cur []byte, found bool) ([]byte, bool, error) {
		if !found {
			return nil, false, ErrWalletNotFound
		}
		r, err := decodeWallet(cur, owner, name)
		if err != nil {
			return nil, false, err
		}
		if r.Next == nil {
			r.Next = map[string]uint32{}
		}
		next := r.Next[sch]
		if explicit != nil {
			idx = *explicit
			if idx < next {
				return nil, false, errUnchanged
			}
		} else {
			idx = next
		}
		if idx >= hd.HardenedOffset {
			return nil, false, errkind.FieldErr("index", "the wallet has no unused index left on this path")
		}
		r.Next[sch] = idx + 1
		b, err := json.Marshal(r)
		return b, false, err
	})
	if errors.Is(err, errUnchanged) {
		return idx, nil
	}
	if err != nil {
		return 0, fmt.Errorf("wallet: reserve index: %w", err)
	}
	return idx, nil
}

// errUnchanged ends an Update that has nothing to write.
var errUnchanged = errors.New("unchanged")

// deriveKey derives the key of an account at index (nil: the next unused)
// on the chain's default path from owner's wallet.
func (s *Service) deriveKey(ctx context.Context, owner, walletName, chainName string, ch chain.Chain, opts chain.Options, index *uint32) (*keyMaterial, error) {
	if index != nil {
		if _, err := ch.DerivationPath(opts, *index); err != nil {
			return nil, err
		}
	}
	wr, err := s.getWalletRecord(ctx, owner, walletName)
	if err != nil {
		return nil, err
	}
	idx, err := s.reserveIndex(ctx, owner, walletName, scheme(chainName, opts), index)
	if err != nil {
		return nil, err
	}
	path, err := ch.DerivationPath(opts, idx)
	if err != nil {
		return nil, err
	}
	env, err := s.kv.Get(ctx, seedPath(owner, walletName))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrWalletNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("wallet: read seed: %w", err)
	}
	seed, err := s.sealer.Unwrap(ctx, seedPath(owner, walletName), env)
	if err != nil {
		return nil, fmt.Errorf("wallet: unwrap seed: %w", err)
	}
	master, err := hd.NewMaster(seed)
	seed.Destroy()
	if err != nil {
		return nil, fmt.Errorf("wallet: %w: %w", ErrWalletIntegrity, err)
	}
	defer master.Destroy()
	if master.Fingerprint() != wr.Fingerprint {
		return nil, ErrWalletIntegrity
	}
	k, err := chain.DeriveKey(master, ch.KeyType(), path)
	if err != nil {
		return nil, fmt.Errorf("wallet: derive %s: %w", path, err)
	}
	origin := &Origin{Wallet: walletName, Fingerprint: wr.Fingerprint, Path: path.String()}
	if ch.KeyType() == chain.Secp256k1 && len(path) >= 3 {
		testnet := chainName == intent.ChainBitcoin && opts.Network != "mainnet"
		if origin.XPub, err = master.XPub(path[:3], testnet); err != nil {
			k.Destroy()
			return nil, fmt.Errorf("wallet: xpub: %w", err)
		}
	}
	return &keyMaterial{raw: k.Private, pub: k.Public, origin: origin, prov: provenance.Record{
		Origin:  provenance.Derived,
		Wallet:  &provenance.Wallet{Name: walletName, Fingerprint: wr.Fingerprint, DerivationPath: origin.Path, Origin: wr.Origin},
		Entropy: wr.Entropy,
	}}, nil
}
