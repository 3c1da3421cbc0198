package audit

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestCountedCallersEndTheWait: with CountCallers a batch waits up to
// FlushInterval for more lines while Entered callers have yet to record,
// but not once it holds all of them: with an interval of an hour, rounds
// of concurrent callers are recorded at once, each round in one batch, and
// a lone caller is never held.
func TestCountedCallersEndTheWait(t *testing.T) {
	const callers = 4
	l, err := New([]Sink{openFile(t, filepath.Join(t.TempDir(), "audit.log"), 0)},
		Options{FlushInterval: time.Hour, CountCallers: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A deadline far below the interval: waiting it out fails the test.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for round := range 6 {
		n := callers
		if round == 3 {
			n = 1 // a lone request
		}
		before := l.Stats()
		for range n {
			l.Enter() // all are in flight before any records
		}
		var wg sync.WaitGroup
		errs := make(chan error, 2*n)
		for i := range n {
			wg.Go(func() {
				errs <- l.Record(ctx, sampleEntry(round*callers+i)) // a request line first
				errs <- l.RecordLast(ctx, sampleEntry(round*callers+i))
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v (the batch waited for the interval although every caller was in it)", round, err)
			}
		}
		// Round 0's first line is committed at once (no commit started an
		// interval before it); later rounds wait for every caller: one
		// batch of request lines, one of last lines.
		if got := l.Stats().Batches - before.Batches; round > 0 && got != 2 {
			t.Fatalf("round %d: %d callers took %d batches, want 2", round, n, got)
		}
	}
	if got := l.callers.Load(); got != 0 {
		t.Fatalf("%d callers still counted after their last lines", got)
	}
	// A caller that leaves without a last line is uncounted.
	l.Enter()
	l.Leave()
	if err := l.Record(ctx, sampleEntry(99)); err != nil {
		t.Fatal(err)
	}
}
