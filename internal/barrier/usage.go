package barrier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/storage"
)

// Nonce budget. Every record is encrypted with AES-GCM under a random
// 96-bit nonce, and NIST SP 800-38D §8.3 allows at most 2^32 invocations
// of the authenticated encryption function with one key when nonces are
// random. The barrier therefore counts encryptions per key term, across
// every node sharing the storage, and rotates to a new term well before
// the limit.
//
// The count is an upper bound, kept at core/keyring-usage: a node reserves
// a block of encryptions there (compare-and-swap) before it uses them, so
// the stored total of a term is never below what all nodes together
// encrypted under it. The record is encrypted like any other record (under
// the active term, path as associated data); storage that replays an older
// copy can make the count lag, which a running node notices (its own
// reservations are never forgotten).

// Budget tunes the per-term encryption budget; zero fields take the
// defaults.
type Budget struct {
	// Block is how many encryptions a node reserves at a time (default 65536).
	Block uint64
	// RotateAt is the reserved total at which the term is rotated
	// automatically (default 2^30: a quarter of the NIST limit).
	RotateAt uint64
	// Limit is the total past which writes under the term are refused until
	// the rotation lands (default 3·2^30, under 2^32 by 2^30).
	Limit uint64
}

func (bu Budget) withDefaults() Budget {
	if bu.Block == 0 {
		bu.Block = 1 << 16
	}
	if bu.RotateAt == 0 {
		bu.RotateAt = 1 << 30
	}
	if bu.Limit == 0 {
		bu.Limit = 3 << 30
	}
	return bu
}

// ErrBudgetExhausted: the active term reached its encryption limit and the
// rotation that should have replaced it has not landed (storage down or
// refusing): writes are refused rather than risk a repeated nonce.
var ErrBudgetExhausted = errkind.New(errkind.Unavailable, "encryption_budget_exhausted",
	"barrier: the active key term reached its encryption limit (NIST SP 800-38D §8.3); the keyring is being rotated, retry")

const usagePath = "core/keyring-usage"

// usage is one node's view of a term's encryption count.
type usage struct {
	mu       sync.Mutex    // serializes reservations
	used     atomic.Uint64 // encryptions by this node
	granted  atomic.Uint64 // encryptions this node reserved
	reserved atomic.Uint64 // the stored total at this node's last look
}

// usageRecord is the JSON at core/keyring-usage: reserved totals by term.
type usageRecord struct {
	Terms map[string]uint64 `json:"terms"`
}

// sealValue encrypts value for path under the active term, counting the
// encryption against the term's budget.
func (b *Barrier) sealValue(ctx context.Context, kr *keyring, path string, value []byte) ([]byte, error) {
	for {
		t := kr.terms[kr.active]
		n := t.use.used.Add(1)
		if n <= t.use.granted.Load() {
			return kr.seal(path, value), nil
		}
		err := b.reserve(ctx, t, n)
		if err == nil {
			return kr.seal(path, value), nil
		}
		t.use.used.Add(^uint64(0)) // not used after all
		if !errors.Is(err, ErrBudgetExhausted) {
			return nil, err
		}
		// The term is spent: rotate now (or pick up another node's
		// rotation) and encrypt under the new term.
		if _, _, rerr := b.RotateFrom(ctx, t.term); rerr != nil {
			b.log.Error("the active key term is spent and the keyring could not be rotated; writes are refused", "term", t.term, "err", rerr)
			return nil, err
		}
		if kr = b.ring.Load(); kr == nil {
			return nil, ErrSealed
		}
		if kr.active == t.term {
			return nil, err
		}
	}
}

// reserve takes blocks of the term's budget until this node's n-th
// encryption is covered.
func (b *Barrier) reserve(ctx context.Context, t *term, n uint64) error {
	u := t.use
	u.mu.Lock()
	defer u.mu.Unlock()
	for n > u.granted.Load() {
		total, err := b.reserveBlock(ctx, t.term)
		if err != nil {
			return err
		}
		u.granted.Add(b.budget.Block)
		if total > u.reserved.Load() {
			u.reserved.Store(total)
		}
		if total >= b.budget.RotateAt {
			b.autoRotate(t.term, total)
		}
	}
	return nil
}

// reserveBlock adds one block to the stored total of term tn and returns the
// new total. A usage record that fails its integrity check is replaced by
// one that counts the term as due for rotation (fail safe: never assume
// fewer encryptions than there may have been).
func (b *Barrier) reserveBlock(ctx context.Context, tn uint32) (uint64, error) {
	if err := b.writes.enter(); err != nil { // within the record's write: Seal waits for both
		return 0, err
	}
	defer b.writes.leave()
	for attempt := 0; attempt < maxUpdateAttempts; attempt++ {
		kr := b.ring.Load()
		if kr == nil {
			return 0, ErrSealed
		}
		raw, counts, err := b.readUsage(ctx, kr, true)
		if err != nil {
			return 0, err
		}
		total := counts[tn] + b.budget.Block
		if total > b.budget.Limit {
			return 0, fmt.Errorf("term %d: %d encryptions reserved: %w", tn, counts[tn], ErrBudgetExhausted)
		}
		counts[tn] = total
		if kr = b.ring.Load(); kr == nil {
			return 0, ErrSealed
		}
		err = b.backend.CompareAndSwap(ctx, usagePath, raw, kr.seal(usagePath, encodeUsage(kr, counts)))
		if err == nil {
			return total, nil
		}
		if !errors.Is(err, storage.ErrConflict) {
			return 0, fmt.Errorf("barrier: reserving encryptions: %w", err)
		}
		if err := backoff(ctx, attempt); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("barrier: reserving encryptions: %d attempts lost to concurrent writers: %w", maxUpdateAttempts, storage.ErrConflict)
}

// readUsage reads the usage record. reload allows one keyring reload for a
// record written under a term this node does not know yet (never while
// b.mu is held).
func (b *Barrier) readUsage(ctx context.Context, kr *keyring, reload bool) ([]byte, map[uint32]uint64, error) {
	counts := map[uint32]uint64{}
	raw, err := b.backend.Get(ctx, usagePath)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, counts, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("barrier: reading %s: %w", usagePath, err)
	}
	pt, err := kr.open(usagePath, raw)
	if errors.Is(err, ErrUnknownTerm) && reload {
		if rerr := b.reloadForTerm(ctx, recordTerm(raw)); rerr == nil {
			if kr = b.ring.Load(); kr == nil {
				return nil, nil, ErrSealed
			}
			pt, err = kr.open(usagePath, raw)
		}
	}
	var rec usageRecord
	if err == nil {
		err = json.Unmarshal(pt, &rec)
	}
	for k, v := range rec.Terms {
		if n, perr := strconv.ParseUint(k, 10, 32); perr == nil {
			counts[uint32(n)] = v
		}
	}
	if err != nil {
		b.log.Error("the encryption count record failed its integrity check; counting the active term as due for rotation", "path", usagePath, "err", err)
		clear(counts)
		counts[kr.active] = b.budget.RotateAt
	}
	return raw, counts, nil
}

// encodeUsage keeps the counts of the terms still in the keyring.
func encodeUsage(kr *keyring, counts map[uint32]uint64) []byte {
	rec := usageRecord{Terms: map[string]uint64{}}
	for _, n := range slices.Sorted(maps.Keys(counts)) {
		if kr.terms[n] != nil {
			rec.Terms[strconv.FormatUint(uint64(n), 10)] = counts[n]
		}
	}
	js, _ := json.Marshal(rec) // cannot fail: a map of numbers
	return js
}

// loadUsageLocked shows the stored count of the active term at unseal.
func (b *Barrier) loadUsageLocked(ctx context.Context, kr *keyring) {
	_, counts, err := b.readUsage(ctx, kr, false)
	if err != nil {
		b.log.Warn("could not read the encryption count", "err", err)
		return
	}
	if t := kr.terms[kr.active]; counts[kr.active] > t.use.reserved.Load() {
		t.use.reserved.Store(counts[kr.active])
	}
}

// autoRotate starts one background rotation away from term tn.
func (b *Barrier) autoRotate(tn uint32, total uint64) {
	if !b.rotating.CompareAndSwap(false, true) {
		return
	}
	b.log.Warn("key term reached its rotation threshold; rotating the keyring", "term", tn, "encryptions", total, "rotate_at", b.budget.RotateAt)
	go func() {
		defer b.rotating.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		n, rotated, err := b.RotateFrom(ctx, tn)
		switch {
		case errors.Is(err, ErrSealed):
		case err != nil:
			b.log.Error("automatic keyring rotation failed; it is tried again at the next reservation", "term", tn, "err", err)
		case rotated:
			b.log.Info("keyring rotated automatically (encryption budget)", "from", tn, "term", n)
		}
	}()
}

// Usage is the encryption count of the active term, as this node knows it.
type Usage struct {
	Term uint32 `json:"term"`
	// Encryptions is an upper bound of the encryptions under the term by
	// every node: what they reserved.
	Encryptions uint64 `json:"encryptions"`
	RotateAt    uint64 `json:"rotate_at"`
	Limit       uint64 `json:"limit"`
}

// Usage reports the active term's encryption count; the zero Usage while
// sealed.
func (b *Barrier) Usage() Usage {
	kr := b.ring.Load()
	if kr == nil {
		return Usage{}
	}
	t := kr.terms[kr.active]
	return Usage{Term: t.term, Encryptions: max(t.use.reserved.Load(), t.use.used.Load()), RotateAt: b.budget.RotateAt, Limit: b.budget.Limit}
}
