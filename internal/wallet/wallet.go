// Package wallet is the account service: it creates accounts on every
// chain the vault knows (Ethereum, Bitcoin, Solana: one chain.Chain each),
// generated from the vault's entropy, imported, or derived from an HD
// wallet whose seed it keeps; private keys and seeds are seal-wrapped in
// storage and never leave the process. It keeps recently used keys in a
// bounded cache and signs parsed requests (chain.Request) with them.
package wallet

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"golang.org/x/sync/singleflight"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/provenance"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/wallet/btc"
	"github.com/moonvault/moonvault/internal/wallet/chain"
	"github.com/moonvault/moonvault/internal/wallet/evm"
	"github.com/moonvault/moonvault/internal/wallet/solana"
)

// Sealer seal-wraps critical security parameters (package sealwrap).
type Sealer interface {
	Wrap(ctx context.Context, path string, plaintext []byte) ([]byte, error)
	Unwrap(ctx context.Context, path string, envelope []byte) (secret.Bytes, error)
}

// sealDescriber is implemented by sealwrap.Sealer: how an envelope it
// wrote is protected (for provenance records).
type sealDescriber interface {
	Describe(envelope []byte) (wrapped bool, mechanism string, err error)
}

// ProvenanceSigner signs provenance records (provenance.Signer).
type ProvenanceSigner interface {
	Sign(ctx context.Context, r *provenance.Record) (*provenance.Signed, error)
}

// Errors the HTTP layer maps to statuses.
var (
	ErrNotFound     = errkind.New(errkind.NotFound, "not_found", "account not found")
	ErrExists       = errkind.New(errkind.Conflict, "conflict", "account already exists")
	ErrInvalidName  = errkind.New(errkind.Invalid, "invalid_request", "invalid account name: use 1-64 of a-z A-Z 0-9 . _ -")
	ErrInvalidOwner = errkind.New(errkind.Invalid, "invalid_request", "invalid owner or grantee")
	ErrInvalidKey   = &errkind.Field{Name: "private_key", Msg: "must be 32 bytes of hex: a secp256k1 scalar, or an Ed25519 seed (Solana also takes the 64-byte keypair, seed then public key)"}
	// ErrKeyMismatch means a stored key does not match its account record:
	// storage was tampered with or corrupted. Fail closed.
	ErrKeyMismatch = errkind.New(errkind.Integrity, "integrity_error", "stored key does not match account address")
	// ErrNoProvenance: the account was made before provenance records were
	// kept.
	ErrNoProvenance = errkind.New(errkind.NotFound, "provenance_not_recorded", "no provenance record: the account predates provenance records")
)

// Storage layout (docs/design.md "Storage layout").
const (
	// CSPPrefix holds the seal-wrapped private keys.
	CSPPrefix = "wallet/keys/"
	// SeedPrefix holds the seal-wrapped HD wallet seeds.
	SeedPrefix = "wallet/seeds/"

	prefixAccounts   = "wallet/accounts/"
	prefixKeys       = CSPPrefix
	prefixAddresses  = "wallet/addresses/"
	prefixProvenance = "wallet/provenance/"
	prefixWallets    = "wallet/hd/"
	prefixSeeds      = SeedPrefix
	prefixDerived    = "wallet/derived/" // <owner>/<wallet>/<account>: accounts derived from a wallet

	defaultCacheSize = 10_000
	defaultListLimit = 100
	maxListLimit     = 1000
	// lockStripes: a create holds two stripes across its bolt commit (an
	// fsync), so with 64 stripes and 64 concurrent creates nearly every
	// stripe was held and creation ran one commit at a time (issue 14: p99
	// 164 ms). With 4096 a create meets a held stripe ~3% of the time.
	lockStripes = 4096
)

// CSPPrefixes are every prefix under which this package keeps seal-wrapped
// critical security parameters (rewrap and seal migration cover them).
func CSPPrefixes() []string { return []string{CSPPrefix, SeedPrefix} }

var (
	nameRe  = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,64}$`)
	ownerRe = regexp.MustCompile(`^[A-Za-z0-9._@:+-]{1,128}$`) // no "/": owners are path segments
)

// AccountID names an account: its owner's namespace and its name. Its
// string form "owner/name" is how audit lines, policies and the address
// index name it (owners and names never hold "/").
type AccountID struct {
	Owner, Name string
}

func (id AccountID) String() string { return id.Owner + "/" + id.Name }

// ParseAccountID reads "owner/name".
func ParseAccountID(s string) (AccountID, error) {
	owner, name, ok := strings.Cut(s, "/")
	if !ok || !ownerRe.MatchString(owner) || !nameRe.MatchString(name) {
		return AccountID{}, fmt.Errorf("wallet: %q is not owner/name", s)
	}
	return AccountID{Owner: owner, Name: name}, nil
}

// Account is an account's public record. It has no key field by design.
type Account struct {
	Name  string
	Owner string
	// Chain is intent.ChainEthereum, ChainBitcoin or ChainSolana.
	Chain       string
	Network     string // bitcoin only
	AddressType string // bitcoin only
	KeyType     chain.KeyType
	Address     string // in the chain's own form (EIP-55, bech32/bech32m, base58)
	// PublicKey is the 65-byte uncompressed point for Ethereum (as accounts
	// always showed it), the 33-byte compressed point for Bitcoin, and the
	// 32-byte key for Solana.
	PublicKey []byte
	CreatedAt time.Time
	Grants    []string // principals, besides Owner, allowed to use the account
	Origin    *Origin  // set when derived from an HD wallet
}

// Origin is the HD origin of a derived account.
type Origin struct {
	Wallet      string `json:"wallet"`
	Fingerprint string `json:"fingerprint"` // master key fingerprint, hex
	Path        string `json:"derivation_path"`
	// XPub is the BIP-32 extended public key of the account level (the
	// path's first three levels), secp256k1 chains only.
	XPub string `json:"xpub,omitempty"`
}

// ID names the account.
func (a *Account) ID() AccountID { return AccountID{Owner: a.Owner, Name: a.Name} }

// ChainAccount is what the account's chain package knows of it.
func (a *Account) ChainAccount() chain.Account {
	return chain.Account{
		Options:   chain.Options{Network: a.Network, AddressType: a.AddressType},
		Address:   a.Address,
		PublicKey: a.PublicKey,
	}
}

// EthereumAddress is the account's address when it is an Ethereum account.
func (a *Account) EthereumAddress() (common.Address, bool) {
	if a.Chain != intent.ChainEthereum || !common.IsHexAddress(a.Address) {
		return common.Address{}, false
	}
	return common.HexToAddress(a.Address), true
}

// record is the stored form of an Account. Records written before accounts
// had a chain have none: they are Ethereum accounts.
type record struct {
	Name        string        `json:"name"`
	Owner       string        `json:"owner"`
	Chain       string        `json:"chain,omitempty"`
	Network     string        `json:"network,omitempty"`
	AddressType string        `json:"address_type,omitempty"`
	KeyType     string        `json:"key_type,omitempty"`
	Address     string        `json:"address"`
	PublicKey   hexutil.Bytes `json:"public_key"`
	CreatedAt   time.Time     `json:"created_at"`
	Grants      []string      `json:"grants,omitempty"`
	Origin      *Origin       `json:"origin,omitempty"`
}

func (r *record) account() *Account {
	a := &Account{
		Name: r.Name, Owner: r.Owner, Chain: r.Chain, Network: r.Network, AddressType: r.AddressType,
		KeyType: chain.KeyType(r.KeyType), Address: r.Address, PublicKey: r.PublicKey,
		CreatedAt: r.CreatedAt, Grants: r.Grants, Origin: r.Origin,
	}
	if a.Chain == "" {
		a.Chain = intent.ChainEthereum
	}
	if a.Chain == intent.ChainEthereum {
		if a.KeyType == "" {
			a.KeyType = chain.Secp256k1
		}
		if common.IsHexAddress(a.Address) {
			a.Address = common.HexToAddress(a.Address).Hex() // EIP-55 (old records stored lower case)
		}
	}
	return a
}

// Options tune a Service.
type Options struct {
	// CacheSize bounds the number of unwrapped keys kept in memory
	// (default 10,000; negative disables the cache).
	CacheSize int
	Logger    *slog.Logger
	// OnSign, when set, is told of every signature made (metrics); chain
	// and kind are intent.Chain* and intent.Kind* values.
	OnSign func(chain, kind string)
	// Chains overrides the chain packages by name (default: Ethereum,
	// Bitcoin with btc.Options{}, Solana).
	Chains map[string]chain.Chain
	// Provenance signs the record kept for every account created. The
	// server always sets it; without it no record is kept.
	Provenance ProvenanceSigner
	// ExclusiveStorage says this process is the only writer of the
	// storage (bbolt, in memory), so decoded account records may be
	// cached for the sign path (accountCache). Leave it false when other
	// nodes write the same storage.
	ExclusiveStorage bool
}

// DefaultChains are the chains a Service serves unless Options.Chains
// says otherwise.
func DefaultChains() map[string]chain.Chain {
	return map[string]chain.Chain{
		intent.ChainEthereum: evm.Chain{},
		intent.ChainBitcoin:  btc.Chain{},
		intent.ChainSolana:   solana.Chain{},
	}
}

// Service manages accounts and HD wallets. It is safe for concurrent use.
type Service struct {
	kv     storage.KV
	sealer Sealer
	rand   io.Reader
	log    *slog.Logger
	cache  *keyCache
	// accounts caches account records; nil unless ExclusiveStorage.
	accounts *accountCache
	onSign   func(chain, kind string)
	chains   map[string]chain.Chain
	prov     ProvenanceSigner
	flight   singleflight.Group
	locks    [lockStripes]sync.Mutex
	now      func() time.Time
}

// New returns a Service. rand is the CSP entropy source (the entropy
// mixer); when it fails, Create fails closed and writes nothing.
func New(kv storage.KV, sealer Sealer, rand io.Reader, opts Options) *Service {
	if opts.CacheSize == 0 {
		opts.CacheSize = defaultCacheSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Chains == nil {
		opts.Chains = DefaultChains()
	}
	s := &Service{
		kv: kv, sealer: sealer, rand: rand, log: opts.Logger, cache: newKeyCache(opts.CacheSize),
		onSign: opts.OnSign, chains: opts.Chains, prov: opts.Provenance, now: time.Now,
	}
	if opts.ExclusiveStorage {
		s.accounts = newAccountCache(maxCachedAccounts)
	}
	return s
}

// changed drops the cached record of owner/name after a write to it.
func (s *Service) changed(owner, name string) {
	if s.accounts != nil {
		id := AccountID{owner, name}.String()
		s.accounts.invalidate(&id)
	}
}

// Chain returns the chain package of the named chain.
func (s *Service) Chain(name string) (chain.Chain, error) {
	if c, ok := s.chains[name]; ok {
		return c, nil
	}
	return nil, errkind.FieldErr("chain", fmt.Sprintf("unknown chain %q (%s)", truncate(name, 32), strings.Join(s.ChainNames(), ", ")))
}

// ChainNames lists the chains served, sorted.
func (s *Service) ChainNames() []string {
	out := make([]string, 0, len(s.chains))
	for n := range s.chains {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func accountKey(owner, name string) string { return prefixAccounts + AccountID{owner, name}.String() }
func keyPath(owner, name string) string    { return prefixKeys + AccountID{owner, name}.String() }
func provenanceKey(owner, name string) string {
	return prefixProvenance + AccountID{owner, name}.String()
}

// addressKey is the address index entry of an account. Ethereum keeps the
// layout JSON-RPC has always used (wallet/addresses/0x<hex>, lower case);
// other chains have their own namespace, Bitcoin's per network (testnet
// and signet addresses share the tb1 prefix).
func addressKey(chainName, network, addr string) string {
	switch chainName {
	case intent.ChainEthereum:
		return prefixAddresses + strings.ToLower(addr)
	case intent.ChainBitcoin:
		return prefixAddresses + chainName + "/" + network + "/" + addr
	}
	return prefixAddresses + chainName + "/" + addr
}

func ethAddressKey(a common.Address) string {
	return prefixAddresses + "0x" + hex.EncodeToString(a[:])
}

// lockFor serialises writers of the same account name or address on this
// node, so that local callers get a clear answer without a storage round
// trip lost to each other. Across nodes, the claims in the create batch
// (storage.Op.Create on the name and the address index) decide: exactly one
// node wins a race, the other gets ErrExists.
func (s *Service) lockFor(ids ...string) func() {
	idx := make([]int, 0, len(ids))
	for _, id := range ids {
		h := fnv.New32a()
		h.Write([]byte(id))
		i := int(h.Sum32() % lockStripes)
		if !slices.Contains(idx, i) {
			idx = append(idx, i)
		}
	}
	slices.Sort(idx) // fixed order: no deadlock between two multi-stripe lockers
	for _, i := range idx {
		s.locks[i].Lock()
	}
	return func() {
		for _, i := range idx {
			s.locks[i].Unlock()
		}
	}
}

func checkOwner(owner string) error {
	if !ownerRe.MatchString(owner) {
		return ErrInvalidOwner
	}
	return nil
}

// page is a List page's key range and size: the keys under prefix after
// the name `after` ("" for the first page), at most limit (default 100, at
// most 1000).
func page(prefix, after string, limit int) (string, string, int) {
	if limit <= 0 {
		limit = defaultListLimit
	}
	from := ""
	if after != "" {
		from = prefix + after
	}
	return prefix, from, min(limit, maxListLimit)
}

// generatedName names an account or HD wallet its creator did not name:
// prefix, the creation time in milliseconds (12 hex digits, so names sort
// in creation order until the year 10889) and 32 random bits. A list of
// generated names reads oldest first, and consecutive creations land side
// by side in storage: each of an account's three records keyed by its name
// joins the page the previous account's went to, instead of dirtying a page
// of its own in every commit (issue 14: account creation). The order is
// the clock's: a clock stepped back sorts later names first, which costs
// only that locality. A name shows its creation time to the millisecond, as
// the account's created_at does to whoever may see the account (names are
// scoped to their owner). A collision (the same millisecond and the same
// random bits) is a taken name, which the caller retries.
func generatedName(prefix string, now time.Time) (string, error) {
	var b [10]byte
	binary.BigEndian.PutUint64(b[:8], uint64(max(now.UnixMilli(), 0))<<16) // #nosec G115 -- not negative
	// Names are not secret: crypto/rand without the HSM.
	if _, err := rand.Read(b[6:]); err != nil {
		return "", fmt.Errorf("wallet: generate name: %w", err)
	}
	return prefix + hex.EncodeToString(b[:6]) + "-" + hex.EncodeToString(b[6:]), nil
}

func (s *Service) getRecord(ctx context.Context, owner, name string) (*record, error) {
	if err := checkOwner(owner); err != nil {
		return nil, err
	}
	if !nameRe.MatchString(name) {
		return nil, ErrInvalidName
	}
	b, err := s.kv.Get(ctx, accountKey(owner, name))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("wallet: read account: %w", err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("wallet: decode account %s/%s: %w", owner, name, err)
	}
	return &r, nil
}

// Get returns owner's account name, or ErrNotFound.
func (s *Service) Get(ctx context.Context, owner, name string) (*Account, error) {
	var id string
	var gen uint64
	if s.accounts != nil && checkOwner(owner) == nil && nameRe.MatchString(name) {
		id = AccountID{owner, name}.String()
		var a *Account
		if a, gen = s.accounts.get(id); a != nil {
			return a, nil
		}
	}
	r, err := s.getRecord(ctx, owner, name)
	if err != nil {
		return nil, err
	}
	a := r.account()
	if id != "" {
		s.accounts.add(id, a, gen)
	}
	return a, nil
}

// List returns owner's accounts in name order, starting after the cursor
// `after` (a name; "" for the first page), at most limit (default 100, at
// most 1000). next is the cursor of the following page, "" at the end.
func (s *Service) List(ctx context.Context, owner, after string, limit int) ([]Account, string, error) {
	return s.ListChain(ctx, owner, "", after, limit)
}

// ListChain is List of the accounts on chainName ("" for every chain).
func (s *Service) ListChain(ctx context.Context, owner, chainName, after string, limit int) ([]Account, string, error) {
	if err := checkOwner(owner); err != nil {
		return nil, "", err
	}
	if chainName != "" {
		if _, err := s.Chain(chainName); err != nil {
			return nil, "", err
		}
	}
	prefix, from, limit := page(prefixAccounts+owner+"/", after, limit)
	var out []Account
	for {
		keys, err := s.kv.List(ctx, prefix, from, limit+1)
		if err != nil {
			return nil, "", fmt.Errorf("wallet: list accounts: %w", err)
		}
		for _, k := range keys {
			r, err := s.getRecord(ctx, owner, strings.TrimPrefix(k, prefix))
			if errors.Is(err, ErrNotFound) {
				continue // deleted since List
			}
			if err != nil {
				return nil, "", err
			}
			if a := r.account(); chainName == "" || a.Chain == chainName {
				out = append(out, *a)
			}
			if len(out) > limit {
				return out[:limit], out[limit-1].Name, nil
			}
		}
		if len(keys) <= limit {
			return out, "", nil
		}
		from = keys[len(keys)-1]
	}
}

// ByAddress finds the Ethereum account holding addr through the address
// index (JSON-RPC).
func (s *Service) ByAddress(ctx context.Context, addr common.Address) (*Account, error) {
	id, cached, gen := AccountID{}, false, uint64(0)
	if s.accounts != nil {
		id, cached, gen = s.accounts.id(addr)
	}
	if !cached {
		b, err := s.kv.Get(ctx, ethAddressKey(addr))
		if errors.Is(err, storage.ErrNotFound) {
			return nil, ErrNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("wallet: read address index: %w", err)
		}
		if id, err = ParseAccountID(string(b)); err != nil {
			return nil, fmt.Errorf("wallet: corrupt address index entry for %s: %w", addr.Hex(), err)
		}
		if s.accounts != nil {
			s.accounts.addID(addr, id, gen)
		}
	}
	a, err := s.Get(ctx, id.Owner, id.Name)
	if err != nil {
		return nil, err
	}
	if got, ok := a.EthereumAddress(); !ok || got != addr {
		return nil, ErrNotFound // stale index entry
	}
	return a, nil
}

// Grant lets grantee use owner's account; granting twice is a no-op.
func (s *Service) Grant(ctx context.Context, owner, name, grantee string) error {
	return s.updateGrants(ctx, owner, name, grantee, true)
}

// Revoke withdraws a grant; revoking an absent grant is a no-op.
func (s *Service) Revoke(ctx context.Context, owner, name, grantee string) error {
	return s.updateGrants(ctx, owner, name, grantee, false)
}

func (s *Service) updateGrants(ctx context.Context, owner, name, grantee string, add bool) error {
	if err := checkOwner(grantee); err != nil {
		return err
	}
	unlock := s.lockFor(AccountID{owner, name}.String())
	defer unlock()
	r, err := s.getRecord(ctx, owner, name)
	if err != nil {
		return err
	}
	has := slices.Contains(r.Grants, grantee)
	switch {
	case add && !has:
		r.Grants = append(r.Grants, grantee)
		slices.Sort(r.Grants)
	case !add && has:
		r.Grants = slices.DeleteFunc(r.Grants, func(g string) bool { return g == grantee })
	default:
		return nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("wallet: encode account: %w", err)
	}
	err = s.kv.Put(ctx, accountKey(owner, name), b)
	s.changed(owner, name) // also on error: the write may have landed
	if err != nil {
		return fmt.Errorf("wallet: write account: %w", err)
	}
	return nil
}

// Delete removes the account, its wrapped key, its provenance record, its
// address index entry and its mark on the wallet it derives from in one
// atomic batch, and wipes the cached key.
func (s *Service) Delete(ctx context.Context, owner, name string) error {
	unlock := s.lockFor(AccountID{owner, name}.String())
	defer unlock()
	r, err := s.getRecord(ctx, owner, name)
	if err != nil {
		return err
	}
	a := r.account()
	ops := []storage.Op{
		{Key: accountKey(owner, name), Delete: true},
		{Key: keyPath(owner, name), Delete: true},
		{Key: provenanceKey(owner, name), Delete: true},
	}
	if a.Origin != nil && nameRe.MatchString(a.Origin.Wallet) {
		ops = append(ops, storage.Op{Key: derivedKey(owner, a.Origin.Wallet, name), Delete: true})
	}
	// The index may point at another account after a corrupted history;
	// only remove it when it is ours.
	ak := addressKey(a.Chain, a.Network, a.Address)
	if b, err := s.kv.Get(ctx, ak); err == nil && string(b) == (AccountID{owner, name}).String() {
		ops = append(ops, storage.Op{Key: ak, Delete: true})
	}
	err = s.kv.Batch(ctx, ops)
	s.changed(owner, name) // also on error: the write may have landed
	if err != nil {
		return fmt.Errorf("wallet: delete account: %w", err)
	}
	s.cache.remove(AccountID{owner, name}.String())
	s.log.InfoContext(ctx, "account deleted", "owner", owner, "name", name, "chain", a.Chain, "address", a.Address)
	return nil
}
