package auth

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLimiterReserveIsAtomic: a burst of concurrent attempts cannot all
// pass the check before the first failure is counted (check and count are
// one step), so at most max are verified at once.
func TestLimiterReserveIsAtomic(t *testing.T) {
	l := newLimiter(10, time.Minute)
	now := time.Now()
	var allowed atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 60; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if wait, _ := l.reserve(now, "u:alice", "a:10.0.0.1"); wait == 0 {
				allowed.Add(1) // never released: all attempts still in flight
			}
		}()
	}
	close(start)
	wg.Wait()
	if got := allowed.Load(); got != 10 {
		t.Fatalf("%d concurrent attempts passed, want 10", got)
	}
	// Released attempts that succeeded free their slot; failures count.
	l2 := newLimiter(2, time.Minute)
	_, rel := l2.reserve(now, "u:bob")
	rel()
	_, rel = l2.reserve(now, "u:bob")
	l2.fail(now, "u:bob")
	rel()
	if w, _ := l2.reserve(now, "u:bob"); w != 0 {
		t.Fatal("one failure should leave one attempt")
	}
}
