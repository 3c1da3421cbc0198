package storagetest

import (
	"sync"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/storage"
)

// SubscribeWait is how long the suite waits for a change notification. It
// is generous because PostgreSQL delivers them asynchronously.
const SubscribeWait = 5 * time.Second

func testSubscribe(t *testing.T, b storage.Backend) {
	sub, ok := b.(storage.Subscriber)
	if !ok {
		t.Logf("%T does not implement storage.Subscriber", b)
		return
	}
	ctx := t.Context()
	first := newRecorder()
	cancelFirst := sub.Subscribe(first.record)
	mustPut(t, b, "sub/a", []byte("1"))
	if err := b.Batch(ctx, []storage.Op{{Key: "sub/b", Value: []byte("2")}, {Key: "sub/a", Delete: true}}); err != nil {
		t.Fatalf("Batch: %v", err)
	}
	if err := b.Delete(ctx, "sub/b"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	first.waitFor(t, "sub/a", "sub/b")
	first.waitUntil(t, "sub/b notified twice (batch put, then delete)", func() bool { return first.count("sub/b") >= 2 })

	// After cancel, no further calls. A second subscriber sees a later key;
	// notifications arrive in commit order, so by then the first would have
	// seen sub/after had it still been subscribed.
	cancelFirst()
	cancelFirst() // idempotent
	second := newRecorder()
	defer sub.Subscribe(second.record)()
	mustPut(t, b, "sub/after", []byte("x"))
	mustPut(t, b, "sub/z", []byte("x"))
	second.waitFor(t, "sub/after", "sub/z")
	if n := first.count("sub/after"); n != 0 {
		t.Errorf("canceled subscriber was called %d times for sub/after", n)
	}
}

type recorder struct {
	mu     sync.Mutex
	seen   map[string]int
	change chan struct{}
}

func newRecorder() *recorder {
	return &recorder{seen: map[string]int{}, change: make(chan struct{}, 1)}
}

func (r *recorder) record(key string) {
	r.mu.Lock()
	r.seen[key]++
	r.mu.Unlock()
	select {
	case r.change <- struct{}{}:
	default:
	}
}

func (r *recorder) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[key]
}

func (r *recorder) waitFor(t *testing.T, keys ...string) {
	t.Helper()
	for _, k := range keys {
		r.waitUntil(t, "notification for "+k, func() bool { return r.count(k) > 0 })
	}
}

func (r *recorder) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(SubscribeWait)
	for !cond() {
		select {
		case <-r.change:
		case <-deadline:
			t.Fatalf("no %s within %v", what, SubscribeWait)
		}
	}
}
