package postgres_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/postgres"
	"github.com/moonvault/moonvault/internal/storage/postgres/pgtest"
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

const killEnv = "MOONVAULT_PG_KILL_CHILD_URL"

// TestKillDurability SIGKILLs a child writing through the backend and
// checks every write it acknowledged is in the database.
func TestKillDurability(t *testing.T) {
	if url := os.Getenv(killEnv); url != "" {
		killChild(url)
		return
	}
	url := pgtest.NewDatabase(t)
	open(t, url) // migrate before the child starts
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillDurability$", "-test.count=1")
	cmd.Env = append(os.Environ(), killEnv+"="+url)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	var acked []string
	sc := bufio.NewScanner(out)
	for len(acked) < 200 && sc.Scan() {
		if k, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
			acked = append(acked, k)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill child: %v", err)
	}
	err = cmd.Wait()
	if len(acked) < 200 {
		t.Fatalf("child stopped after %d acks: %v", len(acked), err)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v", err)
	}
	b := open(t, url)
	for _, k := range acked {
		v, err := b.Get(t.Context(), k)
		if err != nil || string(v) != "value-of-"+k {
			t.Fatalf("acknowledged %s lost after kill -9: %q, %v", k, v, err)
		}
	}
	t.Logf("%d acknowledged writes survived SIGKILL", len(acked))
}

func killChild(url string) {
	ctx := context.Background()
	b, err := postgres.Open(ctx, url, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		k := fmt.Sprintf("kill/%08d", i)
		if i%2 == 0 {
			err = b.Put(ctx, k, []byte("value-of-"+k))
		} else {
			err = b.Batch(ctx, []storage.Op{{Key: k, Value: []byte("value-of-" + k)}, {Key: k + "/x", Value: []byte("x")}})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "child write:", err)
			os.Exit(2)
		}
		fmt.Fprintf(w, "ack %s\n", k)
		w.Flush()
	}
}
