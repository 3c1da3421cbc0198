package httpapi

import (
	"context"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/moonvault/moonvault/internal/errkind"
)

// gate lets an exclusive operation (operator rewrap, the switch of a
// restore) run with no other request in flight on this node. Requests
// hold it shared; an exclusive waiter stops new requests from entering
// (first come, first served) until it has run, or given up.
//
// Every wait is bounded, and only requests that are already authenticated
// and authorised, with their bodies read, ever wait or hold it: an
// unauthenticated or slow client cannot stall the node (review M1). An
// exclusive operation that cannot start within exclusiveWait gives up
// (503 busy) and lets the requests queued behind it in.
type gate struct {
	sem *semaphore.Weighted
	// exclusiveWait and sharedWait bound the waits (tests shorten them).
	exclusiveWait, sharedWait time.Duration
	// releaseShared is made once: a closure per request would allocate.
	releaseShared func()
	// epoch counts exclusive sections; a request authenticated in an
	// earlier one authenticates again (a restore may have replaced the
	// data its principal came from).
	epoch atomic.Uint64
}

const (
	gateSize = 1 << 40
	// exclusiveWait bounds how long an exclusive operation waits for the
	// requests in flight (while it waits, new requests queue behind it).
	exclusiveWait = 10 * time.Second
	// sharedWait bounds how long a request waits for an exclusive
	// operation to end.
	sharedWait = 60 * time.Second
)

func newGate() *gate {
	g := &gate{sem: semaphore.NewWeighted(gateSize), exclusiveWait: exclusiveWait, sharedWait: sharedWait}
	g.releaseShared = func() { g.sem.Release(1) }
	return g
}

// errBusy answers a request that could not enter the gate in time (503
// busy, Retry-After: 5).
var errBusy error = busyError{errkind.New(errkind.Unavailable, "busy",
	"this node is busy with an exclusive operation (restore, rewrap); nothing was done: retry shortly")}

type busyError struct{ err error }

func (b busyError) Error() string          { return b.err.Error() }
func (b busyError) Unwrap() error          { return b.err }
func (b busyError) RetryIn() time.Duration { return 5 * time.Second }

// enter waits for the gate, shared or exclusive, and returns its release.
// The fast path (shared, nobody waiting) takes no timer.
func (g *gate) enter(ctx context.Context, exclusive bool) (func(), error) {
	n, wait := int64(1), g.sharedWait
	if exclusive {
		n, wait = gateSize, g.exclusiveWait
	}
	if !g.sem.TryAcquire(n) {
		wctx, cancel := context.WithTimeout(ctx, wait)
		err := g.sem.Acquire(wctx, n)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, errBusy
		}
	}
	if !exclusive {
		return g.releaseShared, nil
	}
	return func() {
		g.epoch.Add(1)
		g.sem.Release(gateSize)
	}, nil
}
