package barrier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

// One keyring shared by every node: reloads that never move the active
// term back, compare-and-swap writes that merge what other nodes added, and
// the watch that picks up their changes.

// Reload re-reads the keyring, picking up terms another node added. Terms
// already known are kept, and the active term never moves back: a stale
// keyring replayed by storage cannot roll the barrier back. When storage
// lacks a term this node holds, the node says so loudly and writes the
// keyring back with it, so that nothing it encrypted becomes unreadable.
func (b *Barrier) Reload(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reloadLocked(ctx)
}

func (b *Barrier) reloadLocked(ctx context.Context) error {
	_, _, lost, err := b.refreshLocked(ctx)
	if err != nil || !lost {
		return err
	}
	_, err = b.modifyLocked(ctx, b.root, b.wrapper, func(cur *keyring) (*keyring, error) { return cur, nil })
	if err != nil {
		return fmt.Errorf("barrier: writing back the terms storage lost: %w", err)
	}
	return nil
}

// reloadForTerm reloads unless another caller already fetched term.
func (b *Barrier) reloadForTerm(ctx context.Context, tn uint32) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if kr := b.ring.Load(); kr != nil && kr.terms[tn] != nil {
		return nil
	}
	return b.reloadLocked(ctx)
}

// maxRingAttempts bounds modifyLocked's retries under contention.
const maxRingAttempts = 50

// modifyLocked is every keyring change: read the stored keyring, merge it
// with the one in memory, let fn build the next keyring, and store that with
// compare-and-swap under writeRoot and writeW. When another node changed the
// keyring in between, the write is refused (never last-writer-wins): the
// node says so, reloads, and calls fn again on what is now stored. fn must
// not change its argument; keys it creates for a keyring that lost the race
// are destroyed here.
func (b *Barrier) modifyLocked(ctx context.Context, writeRoot secret.Bytes, writeW Wrapper, fn func(cur *keyring) (*keyring, error)) (*keyring, error) {
	for attempt := 0; ; attempt++ {
		raw, cur, _, err := b.refreshLocked(ctx)
		if err != nil {
			return nil, err
		}
		next, err := fn(cur)
		if err != nil {
			return nil, err
		}
		blob, err := encodeKeyring(ctx, writeRoot, writeW, next)
		if err == nil {
			err = b.backend.CompareAndSwap(ctx, keyringPath, raw, blob)
		}
		if err == nil {
			b.ring.Store(next)
			return next, nil
		}
		for n, t := range next.terms { // keys made for a keyring never stored
			if cur.terms[n] != t {
				t.key.Destroy()
			}
		}
		if !errors.Is(err, storage.ErrConflict) {
			return nil, fmt.Errorf("barrier: writing keyring: %w", err)
		}
		if attempt+1 >= maxRingAttempts {
			return nil, fmt.Errorf("barrier: writing keyring: %d attempts lost to concurrent writers: %w", maxRingAttempts, err)
		}
		b.log.Warn("keyring changed on another node while this node wrote it; reloading and trying again", "term", cur.active, "attempt", attempt+1)
		if err := backoff(ctx, attempt); err != nil {
			return nil, err
		}
	}
}

// refreshLocked reads the stored keyring and merges it into the one in
// memory. It returns the stored record (for compare-and-swap), the merged
// keyring (also installed) and whether storage lacked terms held here.
func (b *Barrier) refreshLocked(ctx context.Context) (raw []byte, merged *keyring, lost bool, err error) {
	cur := b.ring.Load()
	if cur == nil {
		return nil, nil, false, ErrSealed
	}
	raw, stored, err := b.readKeyring(ctx, b.root, b.wrapper)
	if errors.Is(err, ErrNotInitialized) {
		return nil, nil, false, fmt.Errorf("%w: %q: the keyring record is missing from storage", ErrIntegrity, keyringPath)
	}
	if err != nil {
		return nil, nil, false, err
	}
	merged, changed, lost := b.merge(cur, stored)
	if changed {
		b.ring.Store(merged)
		b.log.Info("barrier keyring reloaded", "term", merged.active, "terms", len(merged.terms))
	}
	return raw, merged, lost, nil
}

// merge combines the keyring in memory with the stored one. Storage is
// authoritative for the keys of the terms it holds and for the metadata;
// terms only memory holds are kept (storage lost them: rolled back, or an
// older node overwrote them), and the active term never moves back.
func (b *Barrier) merge(cur, stored *keyring) (merged *keyring, changed, lost bool) {
	merged = &keyring{active: cur.active, terms: maps.Clone(cur.terms), meta: cur.meta}
	for n, t := range stored.terms {
		switch mine := merged.terms[n]; {
		case mine == nil:
			merged.terms[n] = t
			changed = true
		case !mine.key.Equal(t.key):
			b.log.Error("the stored keyring holds another key for a term this node holds: two nodes created the same term; adopting the stored key (what this node wrote under its own key cannot be read)", "term", n)
			merged.terms[n] = t
			changed = true
		default:
			t.key.Destroy()
		}
	}
	var missing []uint32
	for n := range cur.terms {
		if stored.terms[n] == nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		b.log.Error("the stored keyring lacks terms this node holds (storage rolled back or overwritten); keeping them and writing them back", "terms", missing)
		lost = true
	}
	switch {
	case stored.active > cur.active:
		b.log.Info("keyring term changed on another node; this node now writes under it", "term", stored.active, "was", cur.active)
		merged.active = stored.active
		changed = true
	case stored.active < cur.active:
		b.log.Warn("stored keyring is older than the one in memory; keeping the newer active term",
			"stored_term", stored.active, "term", cur.active)
		lost = true
	}
	if stored.meta != nil && !bytes.Equal(stored.meta, cur.meta) {
		merged.meta = stored.meta
		changed = true
	}
	return merged, changed, lost
}

// withMeta returns a copy of kr with meta replaced.
func (kr *keyring) withMeta(meta []byte) *keyring {
	return &keyring{active: kr.active, terms: maps.Clone(kr.terms), meta: bytes.Clone(meta)}
}

// watchLocked subscribes to keyring changes when the backend reports them,
// and reloads off the notifier's goroutine (its fn must not block).
func (b *Barrier) watchLocked() {
	sub, ok := b.backend.(storage.Subscriber)
	if !ok {
		return
	}
	kick := make(chan struct{}, 1)
	stop := make(chan struct{})
	cancel := sub.Subscribe(func(key string) {
		if key == keyringPath || key == "" {
			select {
			case kick <- struct{}{}:
			default: // a reload is already pending
			}
		}
	})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-kick:
				select {
				case <-stop: // sealed meanwhile: this watcher's session is over
					return
				default:
				}
				ctx, done := context.WithTimeout(context.Background(), 30*time.Second)
				err := b.Reload(ctx)
				done()
				if err != nil && !errors.Is(err, ErrSealed) {
					b.log.Warn("barrier keyring reload failed", "error", err)
				}
			}
		}
	}()
	b.stopWatch = func() {
		cancel()
		close(stop)
	}
}
