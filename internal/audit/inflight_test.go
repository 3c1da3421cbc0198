package audit

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestCountedCallersEndTheWait: with CountCallers a batch waits up to
// FlushInterval for more lines while other callers are in flight, but not
// once it holds a line of every one of them: with an interval of an hour,
// a lone caller is never held, and each step of four concurrent callers is
// committed at once, in one batch.
func TestCountedCallersEndTheWait(t *testing.T) {
	l, err := New([]Sink{openFile(t, filepath.Join(t.TempDir(), "audit.log"), 0)},
		Options{FlushInterval: time.Hour, CountCallers: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A deadline far below the interval: waiting it out fails the test.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// step has each of n Entered callers record one line, concurrently,
	// and returns the number of batches they took.
	step := func(n int) uint64 {
		t.Helper()
		before := l.Stats().Batches
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() { errs <- l.Record(ctx, sampleEntry(i)) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("%d callers: %v (the batch waited for the interval although every caller was in it)", n, err)
			}
		}
		return l.Stats().Batches - before
	}
	for round, n := range []int{1, 4, 4, 1, 4} {
		for range n {
			l.Enter()
		}
		// A request line, then a response line, as a request records them.
		for line := range 2 {
			if got := step(n); got != 1 {
				t.Fatalf("round %d, line %d: %d callers took %d batches, want 1", round, line, n, got)
			}
		}
		for range n {
			l.Leave()
		}
	}
	if got := l.callers.Load(); got != 0 {
		t.Fatalf("%d callers still counted after they left", got)
	}
}
