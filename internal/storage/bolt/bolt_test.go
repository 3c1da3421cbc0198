package bolt_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/bolt"
	"github.com/moonvault/moonvault/internal/storage/storagetest"
)

func openTemp(t testing.TB) *bolt.Backend {
	t.Helper()
	b, err := bolt.Open(filepath.Join(t.TempDir(), "vault.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return b
}

func TestContract(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend { return openTemp(t) })
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "vault.db")
	b, err := bolt.Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := b.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := b.Get(t.Context(), "k"); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Get after Close = %v, want ErrUnavailable", err)
	}
	b, err = bolt.Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer b.Close()
	if v, err := b.Get(t.Context(), "k"); err != nil || string(v) != "v" {
		t.Fatalf("Get after reopen = %q, %v", v, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("database file mode = %v, %v; want 0600", fi.Mode(), err)
	}
}

const (
	killEnv  = "MOONVAULT_BOLT_KILL_CHILD"
	killAcks = 200
)

// TestKillDurability runs a child that writes in a loop and prints each
// acknowledged key, SIGKILLs it mid-stream, and checks every acknowledged
// write survived in the file.
func TestKillDurability(t *testing.T) {
	if path := os.Getenv(killEnv); path != "" {
		killChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "vault.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillDurability$", "-test.count=1")
	cmd.Env = append(os.Environ(), killEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	acked := readAcks(t, out, killAcks)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill child: %v", err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v", err)
	}
	b, err := bolt.Open(path)
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer b.Close()
	for _, k := range acked {
		v, err := b.Get(t.Context(), k)
		if err != nil || string(v) != "value-of-"+k {
			t.Fatalf("acknowledged %s lost after kill -9: %q, %v", k, v, err)
		}
	}
	t.Logf("%d acknowledged writes survived SIGKILL", len(acked))
}

// readAcks collects at least n "ack <key>" lines from the child.
func readAcks(t *testing.T, r interface{ Read([]byte) (int, error) }, n int) []string {
	t.Helper()
	var acked []string
	sc := bufio.NewScanner(r)
	for len(acked) < n && sc.Scan() {
		if k, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
			acked = append(acked, k)
		}
	}
	if len(acked) < n {
		t.Fatalf("child stopped after %d acks: %v", len(acked), sc.Err())
	}
	return acked
}

func killChild(path string) {
	b, err := bolt.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		k := fmt.Sprintf("kill/%08d", i)
		// Alternate single puts and batches so both paths are covered.
		if i%2 == 0 {
			err = b.Put(context.Background(), k, []byte("value-of-"+k))
		} else {
			err = b.Batch(context.Background(), []storage.Op{{Key: k, Value: []byte("value-of-" + k)}, {Key: k + "/x", Value: []byte("x")}})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "child write:", err)
			os.Exit(2)
		}
		fmt.Fprintf(w, "ack %s\n", k)
		w.Flush()
	}
}
