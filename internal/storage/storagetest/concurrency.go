package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/moonvault/moonvault/internal/storage"
	"golang.org/x/sync/errgroup"
)

// The properties that hold while many writers and readers share one
// backend, as the nodes of a cluster do.

// testBatchAtomicToReaders flips one key into another with a Batch while
// readers check that every List snapshot holds exactly one of them.
func testBatchAtomicToReaders(t *testing.T, b storage.Backend) {
	ctx := t.Context()
	mustPut(t, b, "flip/x", []byte("0"))
	done := make(chan struct{})
	errc := make(chan error, 2)
	for range 2 {
		go func() {
			for {
				select {
				case <-done:
					errc <- nil
					return
				default:
				}
				keys, err := b.List(ctx, "flip/", "", 0)
				if err != nil {
					errc <- err
					return
				}
				if len(keys) != 1 {
					errc <- fmt.Errorf("reader saw a half-applied batch: %q", keys)
					return
				}
			}
		}()
	}
	from, to := "flip/x", "flip/y"
	for i := range 50 {
		err := b.Batch(ctx, []storage.Op{{Key: to, Value: []byte{byte(i)}}, {Key: from, Delete: true}})
		if err != nil {
			t.Fatalf("Batch %d: %v", i, err)
		}
		from, to = to, from
	}
	close(done)
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

func testConcurrent(t *testing.T, b storage.Backend) {
	const writers, perWriter = 8, 25
	var wg sync.WaitGroup
	errc := make(chan error, writers*2)
	for w := range writers {
		wg.Add(2)
		go func() { // writer that reads its own writes
			defer wg.Done()
			for i := range perWriter {
				k := fmt.Sprintf("conc/%d/%03d", w, i)
				v := []byte(k + "=value")
				if err := b.Put(t.Context(), k, v); err != nil {
					errc <- fmt.Errorf("put %s: %w", k, err)
					return
				}
				got, err := b.Get(t.Context(), k)
				if err != nil || !bytes.Equal(got, v) {
					errc <- fmt.Errorf("get %s after put = %q, %v", k, got, err)
					return
				}
			}
		}()
		go func() { // reader
			defer wg.Done()
			for range perWriter {
				if _, err := b.List(t.Context(), "conc/", "", 10); err != nil {
					errc <- fmt.Errorf("list: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if got := mustList(t, b, "conc/", "", 0); len(got) != writers*perWriter {
		t.Fatalf("List after concurrent writes = %d keys, want %d", len(got), writers*perWriter)
	}
}

// testBatchCreateRace: of many writers claiming one key at once, exactly
// one wins, and only its other writes are present.
func testBatchCreateRace(t *testing.T, b storage.Backend) {
	const n = 12
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.Batch(t.Context(), []storage.Op{
				{Key: "race/name", Value: []byte(fmt.Sprint(i)), Create: true},
				{Key: fmt.Sprintf("race/data/%02d", i), Value: []byte("x")},
			})
		}()
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Fatalf("writers %d and %d both created the key", won, i)
		case err == nil:
			won = i
		case !errors.Is(err, storage.ErrConflict):
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	if won < 0 {
		t.Fatal("no writer created the key")
	}
	if got := string(mustGet(t, b, "race/name")); got != fmt.Sprint(won) {
		t.Fatalf("name = %s, winner %d", got, won)
	}
	if got := mustList(t, b, "race/data/", "", 0); len(got) != 1 || got[0] != fmt.Sprintf("race/data/%02d", won) {
		t.Fatalf("data keys = %v, want only the winner's", got)
	}
}

// testCompareAndSwapConcurrent: increments by read-modify-write loops from
// many goroutines are never lost, which is what limits and single-use
// checks rely on across nodes.
func testCompareAndSwapConcurrent(t *testing.T, b storage.Backend) {
	incrementsKept(t, b, "cas/counter", 8, 20, func(ctx context.Context) error {
		for attempt := 0; attempt <= 10_000; attempt++ {
			cur, err := b.Get(ctx, "cas/counter")
			var old []byte
			n := 0
			switch {
			case err == nil:
				old = cur
				if _, err := fmt.Sscan(string(cur), &n); err != nil {
					return fmt.Errorf("counter %q: %w", cur, err)
				}
			case !errors.Is(err, storage.ErrNotFound):
				return err
			}
			err = b.CompareAndSwap(ctx, "cas/counter", old, []byte(fmt.Sprint(n+1)))
			if !errors.Is(err, storage.ErrConflict) {
				return err
			}
		}
		return errors.New("no progress after 10,000 attempts")
	})
}

// incrementsKept runs workers goroutines that each increment the counter at
// key each times with inc, and fails unless the counter then reads
// workers*each: no increment was lost.
func incrementsKept(t *testing.T, b storage.Backend, key string, workers, each int, inc func(context.Context) error) {
	t.Helper()
	var g errgroup.Group
	for range workers {
		g.Go(func() error {
			for range each {
				if err := inc(t.Context()); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := string(mustGet(t, b, key)); got != fmt.Sprint(workers*each) {
		t.Fatalf("counter = %s, want %d: an update was lost", got, workers*each)
	}
}

// testUpdate: concurrent read-modify-writes lose nothing; fn sees absence;
// an error from fn writes nothing; del deletes, and deleting an absent key
// writes nothing.
func testUpdate(t *testing.T, b storage.Backend) {
	ctx := t.Context()
	const workers, each = 8, 15
	incrementsKept(t, b, "upd/counter", workers, each, func(ctx context.Context) error {
		return b.Update(ctx, "upd/counter", func(cur []byte, found bool) ([]byte, bool, error) {
			n := 0
			if found {
				if _, err := fmt.Sscan(string(cur), &n); err != nil {
					return nil, false, err
				}
			}
			return []byte(fmt.Sprint(n + 1)), false, nil
		})
	})
	boom := errors.New("refused")
	if err := b.Update(ctx, "upd/counter", func([]byte, bool) ([]byte, bool, error) { return []byte("x"), false, boom }); !errors.Is(err, boom) {
		t.Fatalf("Update with a failing fn = %v", err)
	}
	if got := string(mustGet(t, b, "upd/counter")); got != fmt.Sprint(workers*each) {
		t.Fatalf("a failed Update wrote %q", got)
	}
	if err := b.Update(ctx, "upd/counter", func([]byte, bool) ([]byte, bool, error) { return nil, true, nil }); err != nil {
		t.Fatal(err)
	}
	wantMissing(t, b, "upd/counter")
	if err := b.Update(ctx, "upd/absent", func(cur []byte, found bool) ([]byte, bool, error) {
		if found || cur != nil {
			t.Errorf("fn saw %q, %v for an absent key", cur, found)
		}
		return nil, true, nil
	}); err != nil {
		t.Fatal(err)
	}
	wantMissing(t, b, "upd/absent")
	if err := b.Update(ctx, "upd/empty", func([]byte, bool) ([]byte, bool, error) { return nil, false, nil }); err != nil {
		t.Fatal(err)
	}
	if v := mustGet(t, b, "upd/empty"); len(v) != 0 {
		t.Fatalf("nil next stored %q, want an empty value", v)
	}
}
