package storagetest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/moonvault/moonvault/internal/storage"
)

const (
	killEnv  = "MOONVAULT_STORAGETEST_KILL_TARGET"
	killAcks = 200
)

// KillDurability is the crash half of the contract: a write a backend
// acknowledged survives SIGKILL. It re-executes the running test binary
// (the test that calls it) as a child that writes through open(target) in
// a loop, alternating puts and batches and printing each acknowledged key;
// the parent kills it after killAcks acknowledgements, reopens the storage
// and checks every acknowledged key. Call it at the top of the test; in the
// child it never returns.
func KillDurability(t *testing.T, target string, open func(target string) (storage.Backend, error)) {
	if child := os.Getenv(killEnv); child != "" {
		killChild(child, open)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1") // #nosec G204 G702 -- re-executes this test binary with fixed arguments
	cmd.Env = append(os.Environ(), killEnv+"="+target)
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
	for len(acked) < killAcks && sc.Scan() {
		if k, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
			acked = append(acked, k)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill child: %v", err)
	}
	err = cmd.Wait()
	if len(acked) < killAcks {
		t.Fatalf("child stopped after %d acks: %v", len(acked), err)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v", err)
	}
	b, err := open(target)
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

func killChild(target string, open func(string) (storage.Backend, error)) {
	ctx := context.Background()
	b, err := open(target)
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
		_ = w.Flush()
	}
}
