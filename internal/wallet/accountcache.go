package wallet

import (
	"slices"
	"sync"
)

// accountCache keeps decoded account records for the sign path, so that a
// signature does not read, decrypt and decode the record again. It is used
// only when this process is the only writer of its storage (bbolt: the
// file is locked by one process; Options.ExclusiveStorage), because then
// every change to an account record goes through this Service, which
// invalidates the entry. Over shared storage (PostgreSQL, several nodes) a
// record changed by another node (a grant revoked, an account deleted) must
// be seen at once, so every request reads it.
//
// A reader that misses records the generation before it reads storage and
// adds what it read only if no write happened meanwhile, so a record read
// before a concurrent change is never cached after it.
type accountCache struct {
	mu    sync.RWMutex
	gen   uint64
	items map[string]*Account
	// ids is the Ethereum address index (JSON-RPC names accounts by
	// address); any account write clears it.
	ids map[[20]byte]AccountID
	max int
}

// maxCachedAccounts bounds the cache (about 300 bytes per account).
const maxCachedAccounts = 100_000

func newAccountCache(max int) *accountCache {
	return &accountCache{items: make(map[string]*Account), ids: make(map[[20]byte]AccountID), max: max}
}

// id returns the cached account of an Ethereum address, or false and
// the generation to pass to addID.
func (c *accountCache) id(addr [20]byte) (AccountID, bool, uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	id, ok := c.ids[addr]
	return id, ok, c.gen
}

// addID caches an address index entry unless an account changed since gen.
func (c *accountCache) addID(addr [20]byte, id AccountID, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if len(c.ids) >= c.max {
		clear(c.ids)
	}
	c.ids[addr] = id
}

// get returns a copy of the cached account, or nil and the generation to
// pass to add.
func (c *accountCache) get(id string) (*Account, uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if a := c.items[id]; a != nil {
		return a.clone(), 0
	}
	return nil, c.gen
}

// add caches a (a copy) unless an account changed since gen was read.
func (c *accountCache) add(id string, a *Account, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if len(c.items) >= c.max {
		for k := range c.items { // evict one, any
			delete(c.items, k)
			break
		}
	}
	c.items[id] = a.clone()
}

// invalidate drops id after a write to its record (nil id: every entry).
func (c *accountCache) invalidate(id *string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.ids) // an address may now name another account, or none
	if id == nil {
		clear(c.items)
		return
	}
	delete(c.items, *id)
}

// clone copies a, so that no caller shares the cached value.
func (a *Account) clone() *Account {
	b := *a
	b.PublicKey = slices.Clone(a.PublicKey)
	b.Grants = slices.Clone(a.Grants)
	if a.Origin != nil {
		o := *a.Origin
		b.Origin = &o
	}
	return &b
}
