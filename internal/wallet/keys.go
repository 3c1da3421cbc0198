package wallet

import (
	"container/list"
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"math/big"
	"sync"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"

	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/wallet/evm"
)

type ecdsaKey = ecdsa.PrivateKey

// zeroKey clears the words of the private scalar in place.
func zeroKey(k *ecdsaKey) {
	if k != nil && k.D != nil {
		clear(k.D.Bits())
		k.D.SetInt64(0)
	}
}

// SignMessage signs data as an EIP-191 personal message with a's key.
func (s *Service) SignMessage(ctx context.Context, a *Account, data []byte) (sig, hash []byte, err error) {
	err = s.withKey(ctx, a, func(k *ecdsaKey) error {
		sig, hash, err = evm.SignMessage(data, k)
		return err
	})
	s.signed(err, intent.KindMessage)
	return sig, hash, err
}

// SignTypedData signs an EIP-712 document (from evm.ParseTypedData).
func (s *Service) SignTypedData(ctx context.Context, a *Account, td *apitypes.TypedData) (sig, hash []byte, err error) {
	err = s.withKey(ctx, a, func(k *ecdsaKey) error {
		sig, hash, err = evm.SignTypedData(td, k)
		return err
	})
	s.signed(err, intent.KindTypedData)
	return sig, hash, err
}

// SignTransaction signs tx for chainID (from evm.ParseTransaction).
func (s *Service) SignTransaction(ctx context.Context, a *Account, tx *types.Transaction, chainID *big.Int) (signed *types.Transaction, err error) {
	err = s.withKey(ctx, a, func(k *ecdsaKey) error {
		signed, err = evm.SignTransaction(tx, chainID, k)
		return err
	})
	s.signed(err, intent.KindTransaction)
	return signed, err
}

// signed reports a successful signature to OnSign.
func (s *Service) signed(err error, kind string) {
	if err == nil && s.onSign != nil {
		s.onSign(intent.ChainEthereum, kind)
	}
}

// Purge wipes every cached key (on seal). Loads in flight are discarded.
func (s *Service) Purge() { s.cache.purge() }

// withKey runs fn with a's private key: from the cache, or loaded from
// storage and seal-unwrapped (one load per key however many callers miss
// at once). The key stays pinned while fn runs, so eviction never wipes
// it under a signer.
func (s *Service) withKey(ctx context.Context, a *Account, fn func(*ecdsaKey) error) error {
	if a == nil {
		return ErrNotFound
	}
	id := a.ID().String()
	for range 2 {
		if e := s.cache.acquire(id, a.Address); e != nil {
			defer s.cache.release(e)
			return fn(e.key)
		}
		if s.cache.max <= 0 {
			break
		}
		// The shared load must not fail because the first caller went
		// away; storage and HSM calls carry their own timeouts.
		_, err, _ := s.flight.Do(id, func() (any, error) {
			gen := s.cache.generation()
			k, err := s.loadKey(context.WithoutCancel(ctx), a)
			if err != nil {
				return nil, err
			}
			s.cache.add(id, a.Address, k, gen)
			return nil, nil
		})
		if err != nil {
			return err
		}
	}
	// Cache disabled or thrashing: use a private copy and wipe it.
	k, err := s.loadKey(ctx, a)
	if err != nil {
		return err
	}
	defer zeroKey(k)
	return fn(k)
}

// loadKey reads and unwraps a's key and checks it against a's address.
func (s *Service) loadKey(ctx context.Context, a *Account) (*ecdsaKey, error) {
	path := keyPath(a.Owner, a.Name)
	env, err := s.kv.Get(ctx, path)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("wallet: read key: %w", err)
	}
	raw, err := s.sealer.Unwrap(ctx, path, env)
	if err != nil {
		return nil, fmt.Errorf("wallet: unwrap key: %w", err)
	}
	defer raw.Destroy()
	k, err := crypto.ToECDSA(raw)
	if err != nil {
		return nil, fmt.Errorf("wallet: %w", ErrKeyMismatch)
	}
	if crypto.PubkeyToAddress(k.PublicKey) != a.Address {
		zeroKey(k)
		return nil, ErrKeyMismatch
	}
	return k, nil
}

// keyCache is an LRU of unwrapped keys keyed by "owner/name". Entries are
// reference counted: an evicted entry is wiped when its last user releases
// it.
type keyCache struct {
	max int

	mu    sync.Mutex
	gen   uint64
	ll    *list.List // front = most recent
	items map[string]*list.Element
}

type cacheEntry struct {
	id   string
	addr common.Address
	key  *ecdsaKey
	refs int
	dead bool
}

func newKeyCache(max int) *keyCache {
	return &keyCache{max: max, ll: list.New(), items: map[string]*list.Element{}}
}

func (c *keyCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// acquire pins and returns the entry for id when it holds addr's key. An
// entry for another address (the account was deleted and re-created, maybe
// on another node) is dropped.
func (c *keyCache) acquire(id string, addr common.Address) *cacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[id]
	if !ok {
		return nil
	}
	e := el.Value.(*cacheEntry)
	if e.addr != addr {
		c.unlinkLocked(el)
		return nil
	}
	c.ll.MoveToFront(el)
	e.refs++
	return e
}

func (c *keyCache) release(e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.refs--
	if e.dead && e.refs == 0 {
		zeroKey(e.key)
	}
}

// add inserts k unless the cache was purged since gen (then k is wiped).
func (c *keyCache) add(id string, addr common.Address, k *ecdsaKey, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen || c.max <= 0 {
		zeroKey(k)
		return
	}
	if el, ok := c.items[id]; ok {
		c.unlinkLocked(el)
	}
	c.items[id] = c.ll.PushFront(&cacheEntry{id: id, addr: addr, key: k})
	for c.ll.Len() > c.max {
		c.unlinkLocked(c.ll.Back())
	}
}

func (c *keyCache) remove(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[id]; ok {
		c.unlinkLocked(el)
	}
}

func (c *keyCache) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for c.ll.Len() > 0 {
		c.unlinkLocked(c.ll.Back())
	}
}

func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

func (c *keyCache) unlinkLocked(el *list.Element) {
	e := el.Value.(*cacheEntry)
	c.ll.Remove(el)
	delete(c.items, e.id)
	e.dead = true
	if e.refs == 0 {
		zeroKey(e.key)
	}
}
