// Package wallet is the account service: it creates secp256k1 accounts
// whose private keys are seal-wrapped in storage and never leave the
// process, keeps recently used keys unwrapped in a bounded cache, and signs
// with them (EIP-191 messages, EIP-712 typed data, transactions) through
// package evm.
package wallet

import (
	"context"
	"crypto/rand"
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

	"github.com/moonvault/moonvault/internal/errkind"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	"golang.org/x/sync/singleflight"

	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

// Sealer seal-wraps critical security parameters (package sealwrap).
type Sealer interface {
	Wrap(ctx context.Context, path string, plaintext []byte) ([]byte, error)
	Unwrap(ctx context.Context, path string, envelope []byte) (secret.Bytes, error)
}

// Errors the HTTP layer maps to statuses.
var (
	ErrNotFound     = errkind.New(errkind.NotFound, "not_found", "account not found")
	ErrExists       = errkind.New(errkind.Conflict, "conflict", "account already exists")
	ErrInvalidName  = errkind.New(errkind.Invalid, "invalid_request", "invalid account name: use 1-64 of a-z A-Z 0-9 . _ -")
	ErrInvalidOwner = errkind.New(errkind.Invalid, "invalid_request", "invalid owner or grantee")
	ErrInvalidKey   = errkind.New(errkind.Invalid, "invalid_request", "invalid private key: need 32 bytes, a valid secp256k1 scalar")
	// ErrKeyMismatch means a stored key does not match its account record:
	// storage was tampered with or corrupted. Fail closed.
	ErrKeyMismatch = errkind.New(errkind.Integrity, "integrity_error", "stored key does not match account address")
)

// CSPPrefix holds the seal-wrapped private keys.
const CSPPrefix = "wallet/keys/"

const (
	prefixAccounts  = "wallet/accounts/"
	prefixKeys      = CSPPrefix
	prefixAddresses = "wallet/addresses/"

	defaultCacheSize = 10_000
	defaultListLimit = 100
	maxListLimit     = 1000
	// lockStripes: a create holds two stripes across its bolt commit (an
	// fsync), so with 64 stripes and 64 concurrent creates nearly every
	// stripe was held and creation ran one commit at a time (issue 14: p99
	// 164 ms). With 4096 a create meets a held stripe ~3% of the time.
	lockStripes = 4096
)

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
	Name      string
	Owner     string
	Address   common.Address
	PublicKey []byte // uncompressed SEC1, 65 bytes
	CreatedAt time.Time
	Grants    []string // principals, besides Owner, allowed to use the account
}

// ID names the account.
func (a *Account) ID() AccountID { return AccountID{Owner: a.Owner, Name: a.Name} }

// record is the stored form of an Account.
type record struct {
	Name      string         `json:"name"`
	Owner     string         `json:"owner"`
	Address   common.Address `json:"address"`
	PublicKey hexutil.Bytes  `json:"public_key"`
	CreatedAt time.Time      `json:"created_at"`
	Grants    []string       `json:"grants,omitempty"`
}

func (r *record) account() *Account {
	return &Account{Name: r.Name, Owner: r.Owner, Address: r.Address, PublicKey: r.PublicKey, CreatedAt: r.CreatedAt, Grants: r.Grants}
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
}

// Service manages accounts. It is safe for concurrent use.
type Service struct {
	kv     storage.KV
	sealer Sealer
	rand   io.Reader
	log    *slog.Logger
	cache  *keyCache
	onSign func(chain, kind string)
	flight singleflight.Group
	locks  [lockStripes]sync.Mutex
	now    func() time.Time
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
	return &Service{kv: kv, sealer: sealer, rand: rand, log: opts.Logger, cache: newKeyCache(opts.CacheSize), onSign: opts.OnSign, now: time.Now}
}

func accountKey(owner, name string) string { return prefixAccounts + AccountID{owner, name}.String() }
func keyPath(owner, name string) string    { return prefixKeys + AccountID{owner, name}.String() }
func addressKey(a common.Address) string {
	return prefixAddresses + "0x" + hex.EncodeToString(a[:])
}

// lockFor serialises writers of the same account name or address on this
// node (check-then-write). Storage has no compare-and-swap, so two nodes
// racing on the same new name remain possible: last writer wins.
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

// Create makes an account for owner. An empty name is generated. The key is
// drawn from the entropy source, or imported (then it must be 32 bytes and
// a valid secp256k1 scalar; the caller keeps and destroys importKey).
// Record, wrapped key and address index are written in one atomic batch.
func (s *Service) Create(ctx context.Context, owner, name string, importKey secret.Bytes) (*Account, error) {
	if err := checkOwner(owner); err != nil {
		return nil, err
	}
	generated := name == ""
	if !generated && !nameRe.MatchString(name) {
		return nil, ErrInvalidName
	}
	var raw secret.Bytes
	if importKey != nil {
		if len(importKey) != 32 {
			return nil, ErrInvalidKey
		}
		raw = importKey.Clone()
	} else {
		var err error
		if raw, err = s.generateKey(); err != nil {
			return nil, err
		}
	}
	defer raw.Destroy()
	key, err := crypto.ToECDSA(raw)
	if err != nil {
		return nil, ErrInvalidKey
	}
	defer zeroKey(key)

	for attempt := 0; ; attempt++ {
		if generated {
			if name, err = randomName(); err != nil {
				return nil, err
			}
		}
		acct, err := s.create(ctx, owner, name, raw, key)
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

func (s *Service) create(ctx context.Context, owner, name string, raw secret.Bytes, key *ecdsaKey) (*Account, error) {
	addr := crypto.PubkeyToAddress(key.PublicKey)
	unlock := s.lockFor(AccountID{owner, name}.String(), addr.Hex())
	defer unlock()
	if _, err := s.kv.Get(ctx, accountKey(owner, name)); err == nil {
		return nil, errNameTaken
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("wallet: read account: %w", err)
	}
	if _, err := s.kv.Get(ctx, addressKey(addr)); err == nil {
		return nil, fmt.Errorf("%w: address %s is already in the vault", ErrExists, addr.Hex())
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("wallet: read address index: %w", err)
	}
	envelope, err := s.sealer.Wrap(ctx, keyPath(owner, name), raw)
	if err != nil {
		return nil, fmt.Errorf("wallet: seal-wrap key: %w", err)
	}
	rec := &record{Name: name, Owner: owner, Address: addr, PublicKey: crypto.FromECDSAPub(&key.PublicKey), CreatedAt: s.now().UTC().Truncate(time.Millisecond)}
	recJSON, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("wallet: encode account: %w", err)
	}
	if err := s.kv.Batch(ctx, []storage.Op{
		{Key: accountKey(owner, name), Value: recJSON},
		{Key: keyPath(owner, name), Value: envelope},
		{Key: addressKey(addr), Value: []byte(AccountID{owner, name}.String())},
	}); err != nil {
		return nil, fmt.Errorf("wallet: write account: %w", err)
	}
	s.log.InfoContext(ctx, "account created", "owner", owner, "name", name, "address", addr.Hex())
	return rec.account(), nil
}

// generateKey draws a private key from the CSP source, redrawing the
// (probability ~2^-128) values that are not valid scalars (SEC 1 §3.2.1).
func (s *Service) generateKey() (secret.Bytes, error) {
	buf := make(secret.Bytes, 32)
	for range 16 {
		if _, err := io.ReadFull(s.rand, buf); err != nil {
			buf.Destroy()
			return nil, fmt.Errorf("wallet: generate key: %w", err)
		}
		if k, err := crypto.ToECDSA(buf); err == nil {
			zeroKey(k)
			return buf, nil
		}
	}
	buf.Destroy()
	return nil, errors.New("wallet: generate key: entropy source returns invalid scalars")
}

func randomName() (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil { // names are not secret
		return "", fmt.Errorf("wallet: generate name: %w", err)
	}
	return "acct-" + hex.EncodeToString(b[:]), nil
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
	r, err := s.getRecord(ctx, owner, name)
	if err != nil {
		return nil, err
	}
	return r.account(), nil
}

// List returns owner's accounts in name order, starting after the cursor
// `after` (a name; "" for the first page), at most limit (default 100, at
// most 1000). next is the cursor of the following page, "" at the end.
func (s *Service) List(ctx context.Context, owner, after string, limit int) ([]Account, string, error) {
	if err := checkOwner(owner); err != nil {
		return nil, "", err
	}
	if limit <= 0 {
		limit = defaultListLimit
	}
	limit = min(limit, maxListLimit)
	prefix := prefixAccounts + owner + "/"
	from := ""
	if after != "" {
		from = prefix + after
	}
	keys, err := s.kv.List(ctx, prefix, from, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("wallet: list accounts: %w", err)
	}
	next := ""
	if len(keys) > limit {
		keys = keys[:limit]
		next = strings.TrimPrefix(keys[limit-1], prefix)
	}
	out := make([]Account, 0, len(keys))
	for _, k := range keys {
		r, err := s.getRecord(ctx, owner, strings.TrimPrefix(k, prefix))
		if errors.Is(err, ErrNotFound) {
			continue // deleted since List
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, *r.account())
	}
	return out, next, nil
}

// ByAddress finds the account holding addr through the address index.
func (s *Service) ByAddress(ctx context.Context, addr common.Address) (*Account, error) {
	b, err := s.kv.Get(ctx, addressKey(addr))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("wallet: read address index: %w", err)
	}
	id, err := ParseAccountID(string(b))
	if err != nil {
		return nil, fmt.Errorf("wallet: corrupt address index entry for %s: %w", addr.Hex(), err)
	}
	r, err := s.getRecord(ctx, id.Owner, id.Name)
	if err != nil {
		return nil, err
	}
	if r.Address != addr {
		return nil, ErrNotFound // stale index entry
	}
	return r.account(), nil
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
	if err := s.kv.Put(ctx, accountKey(owner, name), b); err != nil {
		return fmt.Errorf("wallet: write account: %w", err)
	}
	return nil
}

// Delete removes the account, its wrapped key and its address index in one
// atomic batch, and wipes the cached key.
func (s *Service) Delete(ctx context.Context, owner, name string) error {
	unlock := s.lockFor(AccountID{owner, name}.String())
	defer unlock()
	r, err := s.getRecord(ctx, owner, name)
	if err != nil {
		return err
	}
	ops := []storage.Op{
		{Key: accountKey(owner, name), Delete: true},
		{Key: keyPath(owner, name), Delete: true},
	}
	// The index may point at another account after a corrupted history;
	// only remove it when it is ours.
	if b, err := s.kv.Get(ctx, addressKey(r.Address)); err == nil && string(b) == (AccountID{owner, name}).String() {
		ops = append(ops, storage.Op{Key: addressKey(r.Address), Delete: true})
	}
	if err := s.kv.Batch(ctx, ops); err != nil {
		return fmt.Errorf("wallet: delete account: %w", err)
	}
	s.cache.remove(AccountID{owner, name}.String())
	s.log.InfoContext(ctx, "account deleted", "owner", owner, "name", name, "address", r.Address.Hex())
	return nil
}
