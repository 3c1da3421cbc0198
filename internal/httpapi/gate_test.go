package httpapi

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestGateBounded: an exclusive operation that cannot start in time gives
// up (busy), and the requests that queued behind it then enter; one that
// starts runs alone and bumps the epoch.
func TestGateBounded(t *testing.T) {
	g := newGate()
	g.exclusiveWait = 20 * time.Millisecond
	ctx := context.Background()
	held, err := g.enter(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	// A request queued behind the exclusive waiter gets in once it gave up.
	queued := make(chan error, 1)
	exclusiveDone := make(chan error, 1)
	go func() {
		_, err := g.enter(ctx, true)
		exclusiveDone <- err
	}()
	go func() {
		// Enter after the exclusive waiter is queued (it was started
		// first; if it is not yet queued this enters at once, which the
		// assertions below also accept).
		rel, err := g.enter(ctx, false)
		if err == nil {
			rel()
		}
		queued <- err
	}()
	if err := <-exclusiveDone; !errors.Is(err, errBusy) {
		t.Fatalf("exclusive enter while a request holds the gate = %v, want errBusy", err)
	}
	if err := <-queued; err != nil {
		t.Fatalf("a request queued behind a withdrawn exclusive waiter: %v", err)
	}
	epoch := g.epoch.Load()
	held()
	rel, err := g.enter(ctx, true)
	if err != nil {
		t.Fatalf("exclusive enter on an idle gate: %v", err)
	}
	rel()
	if g.epoch.Load() != epoch+1 {
		t.Fatal("an exclusive section did not bump the epoch")
	}
	// A cancelled request stops waiting with its own error.
	hold, _ := g.enter(ctx, true)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := g.enter(cctx, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled wait = %v, want context.Canceled", err)
	}
	hold()
}

func BenchmarkGateShared(b *testing.B) {
	g := newGate()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rel, err := g.enter(ctx, false)
			if err != nil {
				b.Fatal(err)
			}
			rel()
		}
	})
}

// BenchmarkRWMutexShared is what the gate replaced, for comparison.
func BenchmarkRWMutexShared(b *testing.B) {
	var mu sync.RWMutex
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.RLock()
			//lint:ignore SA2001 measuring the lock itself
			mu.RUnlock()
		}
	})
}
