package wallet

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/wallet/chain"
	"github.com/moonvault/moonvault/internal/wallet/evm"
)

// Sign signs r (parsed by the account's chain for this account) with a's
// key. kind is the request's intent.Kind*, for metrics.
func (s *Service) Sign(ctx context.Context, a *Account, r chain.Request, kind string) (any, error) {
	var out any
	err := s.withKey(ctx, a, func(k chain.Key) error {
		var err error
		out, err = r.Sign(k)
		return err
	})
	if err != nil {
		return nil, err
	}
	if s.onSign != nil {
		s.onSign(a.Chain, kind)
	}
	return out, nil
}

var errNotEthereum = errkind.New(errkind.Invalid, "unsupported_operation", "not an Ethereum account")

// SignMessage signs data as an EIP-191 personal message with the key of
// a, an Ethereum account.
func (s *Service) SignMessage(ctx context.Context, a *Account, data []byte) (sig, hash []byte, err error) {
	if a == nil {
		return nil, nil, ErrNotFound
	}
	if a.Chain != intent.ChainEthereum {
		return nil, nil, errNotEthereum
	}
	err = s.withKey(ctx, a, func(k chain.Key) error {
		ek, ok := k.(*evm.Key)
		if !ok {
			return fmt.Errorf("wallet: %w", ErrKeyMismatch)
		}
		sig, hash, err = evm.SignMessage(data, ek.ECDSA())
		return err
	})
	if err == nil && s.onSign != nil {
		s.onSign(a.Chain, intent.KindMessage)
	}
	return sig, hash, err
}

// Purge wipes every cached key (on seal). Loads in flight are discarded.
func (s *Service) Purge() {
	s.cache.purge()
	if s.accounts != nil {
		s.accounts.invalidate(nil)
	}
}

// cacheTag is what a cached key must still match: an account deleted and
// re-created under the same name (maybe on another node) on another chain,
// network or key has another tag.
func cacheTag(a *Account) string {
	return a.Chain + "|" + a.Network + "|" + a.AddressType + "|" + a.Address
}

// withKey runs fn with a's private key: from the cache, or loaded from
// storage and seal-unwrapped (one load per key however many callers miss
// at once). The key stays pinned while fn runs, so eviction never wipes
// it under a signer.
func (s *Service) withKey(ctx context.Context, a *Account, fn func(chain.Key) error) error {
	if a == nil {
		return ErrNotFound
	}
	id, tag := a.ID().String(), cacheTag(a)
	for range 2 {
		if e := s.cache.acquire(id, tag); e != nil {
			defer s.cache.release(e)
			return fn(e.key)
		}
		if s.cache.max <= 0 {
			break
		}
		// The shared load must not fail because the first caller went
		// away; storage and HSM calls carry their own timeouts.
		_, err, _ := s.flight.Do(id+"\x00"+tag, func() (any, error) {
			gen := s.cache.generation()
			k, err := s.loadKey(context.WithoutCancel(ctx), a)
			if err != nil {
				return nil, err
			}
			s.cache.add(id, tag, k, gen)
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
	defer k.Destroy()
	return fn(k)
}

// loadKey reads and unwraps a's key and has a's chain check it against
// a's public key and address.
func (s *Service) loadKey(ctx context.Context, a *Account) (chain.Key, error) {
	ch, err := s.Chain(a.Chain)
	if err != nil {
		return nil, fmt.Errorf("wallet: account %s: %w", a.ID(), err)
	}
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
	k, err := ch.NewKey(raw, a.ChainAccount())
	if err != nil {
		// A key that does not parse or is not the account's: storage was
		// tampered with or corrupted. Fail closed.
		return nil, fmt.Errorf("%w: %w", ErrKeyMismatch, err)
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
	tag  string
	key  chain.Key
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

// acquire pins and returns the entry for id when it holds the key of the
// account tag describes. An entry for another one (the account was deleted
// and re-created, maybe on another node) is dropped.
func (c *keyCache) acquire(id, tag string) *cacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[id]
	if !ok {
		return nil
	}
	e := el.Value.(*cacheEntry)
	if e.tag != tag {
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
		e.key.Destroy()
	}
}

// add inserts k unless the cache was purged since gen (then k is wiped).
func (c *keyCache) add(id, tag string, k chain.Key, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen || c.max <= 0 {
		k.Destroy()
		return
	}
	if el, ok := c.items[id]; ok {
		c.unlinkLocked(el)
	}
	c.items[id] = c.ll.PushFront(&cacheEntry{id: id, tag: tag, key: k})
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
		e.key.Destroy()
	}
}
