package storagetest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/moonvault/moonvault/internal/fsyncfault"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/testdeps"
)

const fsyncEnv = "MOONVAULT_STORAGETEST_FSYNC_TARGET"

// FsyncFailure is the other half of the crash contract, for backends that
// make writes durable in this process (bolt; not PostgreSQL, whose server
// fsyncs): a write is acknowledged only after an fsync that succeeded.
// KillDurability cannot see a missing fsync, because a killed process
// leaves its writes in the page cache; here a re-executed child makes
// every fsync fail (fsyncfault) and the backend must then refuse every
// write (Put, Batch, CompareAndSwap, Delete, and the Commit of a restore
// when the backend is a storage.Restorer), and a reopen must show none of
// them.
// Call it at the top of the test; in the child it never returns.
func FsyncFailure(t *testing.T, target string, open func(target string) (storage.Backend, error)) {
	if child := os.Getenv(fsyncEnv); child != "" {
		fsyncChild(child, open)
	}
	b0, err := open(target)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if err := b0.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1") // #nosec G204 G702 -- re-executes this test binary with fixed arguments
	cmd.Env = append(os.Environ(), fsyncEnv+"="+target)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	lines := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok {
			lines[k] = v
		}
	}
	if msg, ok := lines["unsupported"]; ok {
		testdeps.Missing(t, "cannot inject fsync failures: %s", msg)
	}
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if lines["before"] != "ok" {
		t.Fatalf("write before the fault: %q\n%s", lines["before"], out)
	}
	ops := []string{"put", "batch", "cas", "delete"}
	if _, ok := b0.(storage.Restorer); ok {
		ops = append(ops, "restore")
	}
	for _, op := range ops {
		res, ok := lines[op]
		switch {
		case !ok:
			t.Errorf("child reported nothing for %s\n%s", op, out)
		case res == "acknowledged":
			t.Errorf("%s was acknowledged although fsync failed: the backend does not fsync before it acknowledges", op)
		default:
			t.Logf("%s refused: %s", op, res)
		}
	}
	b, err := open(target)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer b.Close()
	ctx := t.Context()
	if v, err := b.Get(ctx, "fsync/before"); err != nil || string(v) != "v" {
		t.Fatalf("write acknowledged before the fault lost: %q, %v", v, err)
	}
	for _, k := range []string{"fsync/put", "fsync/batch/1", "fsync/batch/2", "fsync/cas", "fsync/restored"} {
		if v, err := b.Get(ctx, k); err == nil {
			t.Errorf("refused write %s is in the store after reopen: %q", k, v)
		}
	}
}

func fsyncChild(target string, open func(string) (storage.Backend, error)) {
	ctx := context.Background()
	b, err := open(target)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	report := func(op string, err error) {
		if err != nil {
			fmt.Printf("%s %s\n", op, strings.ReplaceAll(err.Error(), "\n", " "))
			return
		}
		fmt.Printf("%s acknowledged\n", op)
	}
	if err := b.Put(ctx, "fsync/before", []byte("v")); err != nil {
		fmt.Printf("before %v\n", err)
		os.Exit(0)
	}
	fmt.Println("before ok")
	// A restore is staged before the fault and committed under it.
	var staging storage.Staging
	if r, ok := b.(storage.Restorer); ok {
		if staging, err = r.BeginRestore(ctx); err == nil {
			err = staging.Put(ctx, "fsync/restored", []byte("v"))
		}
		if err != nil {
			fmt.Printf("before %v\n", err)
			os.Exit(0)
		}
	}
	if err := fsyncfault.Install(); err != nil {
		fmt.Printf("unsupported %v\n", err)
		os.Exit(0)
	}
	report("put", b.Put(ctx, "fsync/put", []byte("v")))
	report("batch", b.Batch(ctx, []storage.Op{{Key: "fsync/batch/1", Value: []byte("v")}, {Key: "fsync/batch/2", Value: []byte("v")}}))
	report("cas", b.CompareAndSwap(ctx, "fsync/cas", nil, []byte("v")))
	report("delete", b.Delete(ctx, "fsync/before"))
	if staging != nil {
		report("restore", staging.Commit(ctx))
	}
	os.Exit(0)
}
