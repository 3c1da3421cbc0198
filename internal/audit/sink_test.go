package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// faultFS is a fault-injecting file layer for FileSink: it records what was
// written and what was synced, and fails writes (a full disk) or syncs (an
// I/O error) on demand.
type faultFS struct {
	mu            sync.Mutex
	full          bool  // Write writes half, then fails with ENOSPC
	failSync      bool  // Sync fails with EIO
	written       int64 // bytes written through the layer (file offset)
	synced        int64 // written as of the last successful Sync
	writes, syncs int
}

type faultFile struct {
	*os.File
	fs *faultFS
}

func (fs *faultFS) open(name string, flag int, perm os.FileMode) (file, error) {
	f, err := os.OpenFile(name, flag, perm) // #nosec G304 -- test temp file
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	fs.mu.Lock()
	fs.written, fs.synced = st.Size(), st.Size()
	fs.mu.Unlock()
	return &faultFile{File: f, fs: fs}, nil
}

func (f *faultFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	f.fs.writes++
	if f.fs.full {
		n, _ := f.File.Write(p[:len(p)/2])
		f.fs.written += int64(n)
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	n, err := f.File.Write(p)
	f.fs.written += int64(n)
	return n, err
}

func (f *faultFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.failSync {
		return &os.PathError{Op: "sync", Path: f.Name(), Err: syscall.EIO}
	}
	f.fs.syncs++
	if err := f.File.Sync(); err != nil {
		return err
	}
	f.fs.synced = f.fs.written
	return nil
}

func (f *faultFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.File.Truncate(size); err != nil {
		return err
	}
	f.fs.written = size
	f.fs.synced = min(f.fs.synced, size)
	return nil
}

func (fs *faultFS) state() (written, synced int64, syncs int) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.written, fs.synced, fs.syncs
}

func (fs *faultFS) set(full, failSync bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.full, fs.failSync = full, failSync
}

func openFault(t *testing.T, path string) (*FileSink, *faultFS) {
	t.Helper()
	fs := &faultFS{}
	s, err := newFileSink(path, 0, fs.open)
	if err != nil {
		t.Fatal(err)
	}
	return s, fs
}

// TestFileSinkSyncsBeforeAck sees a missing fsync (issue 21, mutation 2): a
// kill -9 test cannot, since a killed process leaves its writes in the page
// cache. Every acknowledged Record must have all its bytes synced.
func TestFileSinkSyncsBeforeAck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	s, fs := openFault(t, path)
	l, err := New([]Sink{s}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	hk, priv, keys := testKeys()
	l.SetKeys(hk, priv, "k1")
	for i := range 20 {
		_, _, before := fs.state()
		record(t, l, i)
		written, synced, after := fs.state()
		if written == 0 || synced != written || after <= before {
			t.Fatalf("record %d acknowledged with %d of %d bytes synced (%d syncs before, %d after)", i, synced, written, before, after)
		}
		if st, err := os.Stat(path); err != nil || st.Size() != synced {
			t.Fatalf("file size %v, synced %d: %v", st.Size(), synced, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if _, err := verifyBytes(data, keys); err != nil {
		t.Fatal(err)
	}
}

// TestFileSinkRecoversFromFullDisk: while the disk is full (or fsync
// fails) records are refused and nothing half-written stays in the file;
// once the disk has room the same sink writes again by itself.
func TestFileSinkRecoversFromFullDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	s, fs := openFault(t, path)
	l, err := New([]Sink{s}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	hk, priv, keys := testKeys()
	l.SetKeys(hk, priv, "k1")
	record(t, l, 0)
	for _, fault := range []struct {
		name           string
		full, failSync bool
	}{{"full disk", true, false}, {"fsync error", false, true}} {
		good, _, _ := fs.state()
		fs.set(fault.full, fault.failSync)
		for i := range 3 {
			if err := l.Record(context.Background(), sampleEntry(100+i)); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("%s: Record = %v, want ErrUnavailable", fault.name, err)
			}
		}
		if st, err := os.Stat(path); err != nil || st.Size() != good {
			t.Fatalf("%s: file holds %v bytes after refused records, want %d (cut back): %v", fault.name, st.Size(), good, err)
		}
		fs.set(false, false) // room again: no reopen, no restart
		record(t, l, 1)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	rep, err := verifyBytes(data, keys)
	if err != nil {
		t.Fatal(err)
	}
	if got := countRequests(t, path); got != 3 {
		t.Fatalf("%d request lines, want the 3 acknowledged ones (report %+v)", got, rep)
	}
}

func countRequests(t *testing.T, path string) int {
	n := 0
	for _, line := range readLines(t, path) {
		if lineType(t, line) == typeRequest {
			n++
		}
	}
	return n
}

// TestFileSinkLocked: a second writer of one file (two nodes given the same
// audit_file) is refused with a clear error, and may open it once the first
// has closed it.
func TestFileSinkLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	first := openFile(t, path, 0)
	_, err := NewFileSink(path, 0)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second writer: %v, want ErrLocked", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second := openFile(t, path, 0)
	second.Close()
}
