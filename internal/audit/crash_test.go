package audit

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

const crashChildEnv = "MOONVAULT_AUDIT_CRASH_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path) // never returns: the parent kills it
	}
	os.Exit(m.Run())
}

// splitSink writes each batch in two writes, each fsynced, so that a kill
// between them leaves a torn tail the way a crash mid-write can.
type splitSink struct{ *FileSink }

func (s splitSink) Write(p []byte) error {
	half := len(p) / 2
	if err := s.FileSink.Write(p[:half]); err != nil {
		return err
	}
	return s.FileSink.Write(p[half:])
}

// crashChild records as fast as it can from several goroutines until
// killed, and says "ready" once the first record is durable.
func crashChild(path string) {
	fs, err := NewFileSink(path, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	l, err := New([]Sink{splitSink{fs}}, Options{BatchMax: 16})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	hk, priv, _ := testKeys()
	l.SetKeys(hk, priv, "k1")
	var once sync.Once
	for w := range 4 {
		go func() {
			for i := 0; ; i++ {
				if err := l.Record(context.Background(), sampleEntry(w*1_000_000+i)); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				once.Do(func() { fmt.Println("ready") })
			}
		}()
	}
	select {}
}

// lastCheckpointPrefix returns data up to and including its last
// checkpoint line.
func lastCheckpointPrefix(t *testing.T, data []byte) []byte {
	t.Helper()
	end, _, err := lastCheckpoint(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	return data[:end]
}

func TestCrashRecovery(t *testing.T) {
	_, _, keys := testKeys()
	torn := 0
	for attempt := range 12 { // a kill lands mid-batch about half the time
		path := filepath.Join(t.TempDir(), "audit.log")
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child did not start: %q %v: %s", line, err, stderr.String())
		}
		time.Sleep(time.Duration(100+37*attempt) * time.Millisecond) // let it write for a while
		if err := cmd.Process.Kill(); err != nil {                   // SIGKILL
			t.Fatal(err)
		}
		cmd.Wait()

		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		prefix := lastCheckpointPrefix(t, data)
		rep, err := verifyBytes(prefix, keys)
		if err != nil {
			t.Fatalf("prefix up to the last checkpoint: %v", err)
		}
		if rep.SignedCheckpoints == 0 {
			t.Fatalf("child wrote no signed checkpoint: %+v", rep)
		}
		wasTorn := len(prefix) < len(data)
		if wasTorn {
			torn++
			if _, err := verifyBytes(data, keys); err == nil {
				t.Fatal("a torn file verified")
			}
		}

		// Reopen: the tail is cut back and the whole file verifies.
		writeLog(t, path, 2, 0)
		after, _ := os.ReadFile(path)
		if !bytes.HasPrefix(after, prefix) {
			t.Fatal("recovery changed acknowledged lines")
		}
		rep2, err := verifyBytes(after, keys)
		if err != nil {
			t.Fatalf("after recovery: %v", err)
		}
		if rep2.LastSeq <= rep.LastSeq {
			t.Fatalf("chain did not continue: %d after %d", rep2.LastSeq, rep.LastSeq)
		}
		hasRecovery := bytes.Contains(after[len(prefix):], []byte(`"type":"recovery"`))
		if hasRecovery != wasTorn {
			t.Fatalf("recovery line present = %v, torn tail = %v", hasRecovery, wasTorn)
		}
		t.Logf("attempt %d: %d lines before the kill, torn tail: %v", attempt, rep.Lines, wasTorn)
		if torn > 0 && attempt >= 1 {
			break
		}
	}
	if torn == 0 {
		t.Fatal("no attempt left a torn tail: recovery was not exercised")
	}
}
