package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/postgres"
	"github.com/moonvault/moonvault/internal/storage/postgres/pgtest"
	"github.com/moonvault/moonvault/internal/storage/storagetest"
)

func batchOps(w, i int) []storage.Op {
	ops := make([]storage.Op, 3)
	for j, part := range []string{"a", "b", "c"} {
		k := fmt.Sprintf("fault/%d/%06d/%s", w, i, part)
		ops[j] = storage.Op{Key: k, Value: []byte("v-" + k)}
	}
	return ops
}

// TestOutageUnderLoad writes continuously through a proxy, cuts it for a
// second and restores it: writes fail with ErrUnavailable during the outage,
// recover by themselves, every acknowledged write is present, and no batch
// is ever half-applied.
func TestOutageUnderLoad(t *testing.T) {
	url := pgtest.NewDatabase(t)
	proxy := pgtest.NewProxy(t, pgtest.TargetOf(t, url))
	b := open(t, proxy.URL(url))

	const writers = 4
	var (
		stop       atomic.Bool
		acks       atomic.Int64
		failures   atomic.Int64
		mu         sync.Mutex
		acked      = map[[2]int]bool{}
		attempted  [writers]int
		wrongError error
		wg         sync.WaitGroup
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				attempted[w] = i + 1
				ops := batchOps(w, i)
				var err error
				if i%4 == 0 { // some single Puts too
					err = b.Put(context.Background(), ops[0].Key, ops[0].Value)
					if err == nil {
						err = b.Batch(context.Background(), ops[1:])
					}
				} else {
					err = b.Batch(context.Background(), ops)
				}
				if err != nil {
					failures.Add(1)
					if !errors.Is(err, storage.ErrUnavailable) {
						mu.Lock()
						wrongError = err
						mu.Unlock()
					}
					time.Sleep(5 * time.Millisecond)
					continue
				}
				mu.Lock()
				acked[[2]int{w, i}] = true
				mu.Unlock()
				acks.Add(1)
			}
		}()
	}
	waitFor(t, "writes before the outage", func() bool { return acks.Load() >= 100 })
	proxy.Cut()
	before := failures.Load()
	time.Sleep(time.Second)
	ackedDuring := acks.Load()
	outageFailures := failures.Load() - before
	proxy.Restore()
	waitFor(t, "writes to recover after Restore", func() bool { return acks.Load() >= ackedDuring+100 })
	stop.Store(true)
	wg.Wait()

	if outageFailures == 0 {
		t.Error("no write failed while the database was cut off")
	}
	if wrongError != nil {
		t.Errorf("a write failed without ErrUnavailable: %v", wrongError)
	}
	t.Logf("%d acknowledged writes, %d failed during the ~1s outage", acks.Load(), outageFailures)

	direct := open(t, url)
	for w := range writers {
		for i := range attempted[w] {
			present := 0
			for _, op := range batchOps(w, i) {
				v, err := direct.Get(t.Context(), op.Key)
				switch {
				case err == nil && string(v) == string(op.Value):
					present++
				case errors.Is(err, storage.ErrNotFound):
				default:
					t.Fatalf("Get(%s) = %q, %v", op.Key, v, err)
				}
			}
			if acked[[2]int{w, i}] && present != 3 {
				t.Fatalf("acknowledged write %d/%d has %d of 3 keys", w, i, present)
			}
			// Writes 4k are a Put then a Batch of 2: 0, 1 or 3 keys.
			if i%4 != 0 && present != 0 && present != 3 {
				t.Fatalf("batch %d/%d half-applied: %d of 3 keys", w, i, present)
			}
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKillDurability: every write acknowledged before a SIGKILL is in the
// database afterwards (the shared contract in storagetest). The database
// server itself is not killed: other packages' tests share it.
func TestKillDurability(t *testing.T) {
	url := os.Getenv("MOONVAULT_STORAGETEST_KILL_TARGET")
	if url == "" {
		url = pgtest.NewDatabase(t)
		open(t, url) // migrate before the child starts
	}
	storagetest.KillDurability(t, url, func(u string) (storage.Backend, error) { return postgres.Open(context.Background(), u, nil) })
}
