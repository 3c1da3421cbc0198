package signpolicy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"math/big"
	"sync"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/storage"
)

// Stateful limits keep, per policy and account, the spend (or count) of
// signed requests in a bucketed sliding window: windowSteps buckets of
// window/windowSteps each. A bucket counts while any part of it lies in
// the window, so spend leaves the total at most one step (24 min of a 24 h
// window) after it left the window: never early, so a limit is never
// exceeded. The record holds at most maxBuckets buckets whatever the
// traffic. Every change is one atomic Update (compare-and-swap), so
// concurrent requests on any number of nodes cannot overshoot.
const (
	windowSteps = 60
	minStep     = time.Second
	maxBuckets  = 2 * windowSteps
)

type windowRecord struct {
	Buckets []bucket `json:"b"`
}

type bucket struct {
	Start  int64  `json:"s"` // unix ns, inclusive
	End    int64  `json:"e"` // unix ns, exclusive
	Amount string `json:"a,omitempty"`
	Count  int64  `json:"n,omitempty"`
}

// limitSpec is a parsed Limit.
type limitSpec struct {
	amount *big.Int // nil for a count limit
	count  int64
	window time.Duration
}

func (l *Limit) spec() (*limitSpec, error) {
	w, err := l.window()
	if err != nil {
		return nil, err
	}
	s := &limitSpec{window: w, count: l.Count}
	if l.Amount != "" {
		if s.amount, err = l.amount(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (l *limitSpec) step() time.Duration { return max(l.window/windowSteps, minStep) }

func decodeWindow(cur []byte, found bool) (*windowRecord, error) {
	var r windowRecord
	if !found {
		return &r, nil
	}
	if err := json.Unmarshal(cur, &r); err != nil {
		return nil, errkind.Wrap(errkind.Integrity, fmt.Errorf("limit record: %w", err))
	}
	return &r, nil
}

// prune drops buckets wholly outside the window ending at now and merges
// the oldest when a record has more than maxBuckets (after window changes).
func (r *windowRecord) prune(now time.Time, window time.Duration) {
	cut := now.Add(-window).UnixNano()
	kept := r.Buckets[:0]
	for _, b := range r.Buckets {
		if b.End > cut {
			kept = append(kept, b)
		}
	}
	r.Buckets = kept
	for len(r.Buckets) > maxBuckets {
		a, b := r.Buckets[0], r.Buckets[1]
		m := bucket{Start: min(a.Start, b.Start), End: max(a.End, b.End), Count: a.Count + b.Count}
		m.Amount = addDecimal(a.Amount, b.Amount)
		r.Buckets = append([]bucket{m}, r.Buckets[2:]...)
	}
}

func (r *windowRecord) totals() (*big.Int, int64) {
	sum, n := new(big.Int), int64(0)
	for _, b := range r.Buckets {
		sum.Add(sum, parseDecimal(b.Amount))
		n += b.Count
	}
	return sum, n
}

func parseDecimal(s string) *big.Int {
	v, ok := new(big.Int).SetString(s, 10)
	if !ok || v.Sign() < 0 {
		return new(big.Int)
	}
	return v
}

func addDecimal(a, b string) string {
	v := new(big.Int).Add(parseDecimal(a), parseDecimal(b))
	if v.Sign() == 0 {
		return ""
	}
	return v.String()
}

// limitCheck is the outcome of checking one request against one limit.
type limitCheck struct {
	exceeded bool
	reason   string
}

// check computes whether value would take the total past the limit. A
// zero-value request never exceeds an amount limit: it spends nothing.
func (l *limitSpec) check(r *windowRecord, chain string, value *big.Int) limitCheck {
	sum, n := r.totals()
	if l.amount == nil {
		next := n + 1
		return limitCheck{
			exceeded: next > l.count,
			reason: fmt.Sprintf("%s count would reach %d signed requests, limit %d",
				FormatWindow(l.window), next, l.count),
		}
	}
	next := new(big.Int).Add(sum, value)
	return limitCheck{
		exceeded: value.Sign() > 0 && next.Cmp(l.amount) > 0,
		reason: fmt.Sprintf("%s native spend would reach %s, limit %s",
			FormatWindow(l.window), FormatAmount(chain, next), FormatAmount(chain, l.amount)),
	}
}

// Reservation is spend recorded against limits before signing. Release it
// if signing fails; once signed it stays until it leaves the window.
type Reservation struct {
	kv      Updater
	locks   *keyLocks
	entries []reservation
}

type reservation struct {
	key        string
	start, end int64
	amount     *big.Int
}

// limiter reads and updates limit records.
type limiter struct {
	kv  Storage
	now func() time.Time
	// locks serialize this node's updates of one record: concurrent
	// requests on a hot limit would otherwise race each other's
	// compare-and-swap until the barrier gives up (409). Across nodes the
	// compare-and-swap alone decides; the contenders are then one per node.
	locks *keyLocks
}

// keyLocks is a fixed set of mutexes striped by key.
type keyLocks struct {
	seed maphash.Seed
	mu   [64]sync.Mutex
}

func newKeyLocks() *keyLocks { return &keyLocks{seed: maphash.MakeSeed()} }

func (k *keyLocks) lock(key string) func() {
	if k == nil {
		return func() {}
	}
	m := &k.mu[maphash.String(k.seed, key)%uint64(len(k.mu))]
	m.Lock()
	return m.Unlock
}

var errLimitExceeded = errors.New("limit exceeded")

// peek checks without writing (the dry run, and requests that will not sign).
func (lm *limiter) peek(ctx context.Context, key string, l *limitSpec, chain string, value *big.Int) (limitCheck, error) {
	raw, err := lm.kv.Get(ctx, key)
	found := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return limitCheck{}, storageErr("read limit", err)
	}
	r, err := decodeWindow(raw, found)
	if err != nil {
		return limitCheck{}, err
	}
	r.prune(lm.now(), l.window)
	return l.check(r, chain, value), nil
}

// reserve atomically checks and records one request. With force it records
// without checking (a request whose approval covers this limit).
func (lm *limiter) reserve(ctx context.Context, key string, l *limitSpec, chain string, value *big.Int, force bool) (limitCheck, *reservation, error) {
	var res limitCheck
	var rsv *reservation
	defer lm.locks.lock(key)()
	err := lm.kv.Update(ctx, key, func(cur []byte, found bool) ([]byte, bool, error) {
		r, err := decodeWindow(cur, found)
		if err != nil {
			return nil, false, err
		}
		now := lm.now()
		r.prune(now, l.window)
		res = l.check(r, chain, value)
		if res.exceeded && !force {
			return nil, false, errLimitExceeded
		}
		step := l.step()
		start := now.Truncate(step).UnixNano()
		end := start + int64(step)
		rsv = &reservation{key: key, start: start, end: end, amount: new(big.Int).Set(value)}
		i := len(r.Buckets) - 1
		if i < 0 || r.Buckets[i].Start != start || r.Buckets[i].End != end {
			r.Buckets = append(r.Buckets, bucket{Start: start, End: end})
			i++
		}
		b := &r.Buckets[i]
		b.Count++
		b.Amount = addDecimal(b.Amount, value.String())
		return mustJSON(r), false, nil
	})
	switch {
	case errors.Is(err, errLimitExceeded):
		return res, nil, nil
	case err != nil:
		return limitCheck{}, nil, storageErr("reserve limit", err)
	}
	return res, rsv, nil
}

// Release returns the reserved spend: call it when signing failed. It is
// safe to call on a nil Reservation and more than once.
func (r *Reservation) Release(ctx context.Context) error {
	if r == nil {
		return nil
	}
	var errs []error
	for _, e := range r.entries {
		unlock := r.locks.lock(e.key)
		errs = append(errs, release(ctx, r.kv, e))
		unlock()
	}
	r.entries = nil
	return errors.Join(errs...)
}

func release(ctx context.Context, kv Updater, e reservation) error {
	err := kv.Update(ctx, e.key, func(cur []byte, found bool) ([]byte, bool, error) {
		r, err := decodeWindow(cur, found)
		if err != nil {
			return nil, false, err
		}
		for i := range r.Buckets {
			b := &r.Buckets[i]
			if b.Start != e.start || b.End != e.end {
				continue
			}
			b.Count = max(b.Count-1, 0)
			v := new(big.Int).Sub(parseDecimal(b.Amount), e.amount)
			if v.Sign() <= 0 {
				b.Amount = ""
			} else {
				b.Amount = v.String()
			}
			if b.Count == 0 && b.Amount == "" {
				r.Buckets = append(r.Buckets[:i], r.Buckets[i+1:]...)
			}
			if len(r.Buckets) == 0 {
				return nil, true, nil
			}
			return mustJSON(r), false, nil
		}
		return nil, false, errNothingToRelease
	})
	if err != nil && !errors.Is(err, errNothingToRelease) {
		return storageErr("release limit", err)
	}
	return nil
}

var errNothingToRelease = errors.New("nothing to release")

// valueOf is the request's native value, never nil.
func valueOf(in *intent.Intent) *big.Int {
	if in.Value == nil {
		return new(big.Int)
	}
	return in.Value
}
