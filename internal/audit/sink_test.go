package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// faultFS is a fault-injecting file layer for FileSink: it fails writes (a
// full disk) or syncs (an I/O error) on demand, and keeps for every file
// the content it had at its last successful sync: what a power cut would
// leave (crashCopy). A kill -9 test cannot see a missing fsync, since the
// page cache survives the process; this can. Files are told apart by
// inode, so a file keeps its state when rotation renames it (renames
// themselves are taken as durable).
type faultFS struct {
	mu       sync.Mutex
	full     bool // WriteAt writes half, then fails with ENOSPC
	failSync bool // Sync and Datasync fail with EIO
	dirs     map[string]bool
	files    map[uint64]*faultState // by inode
}

type faultState struct {
	durable []byte // content as of the last successful sync
	syncs   int
}

type faultFile struct {
	*os.File
	fs  *faultFS
	ino uint64
}

func newFaultFS() *faultFS {
	return &faultFS{dirs: map[string]bool{}, files: map[uint64]*faultState{}}
}

func inode(t interface{ Sys() any }) uint64 { return t.Sys().(*syscall.Stat_t).Ino }

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
	ino := inode(st)
	fs.mu.Lock()
	fs.dirs[filepath.Dir(name)] = true
	if _, ok := fs.files[ino]; !ok {
		data, _ := os.ReadFile(name) // #nosec G304 -- test temp file
		fs.files[ino] = &faultState{durable: data}
	}
	fs.mu.Unlock()
	return &faultFile{File: f, fs: fs, ino: ino}, nil
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	full := f.fs.full
	f.fs.mu.Unlock()
	if full {
		n, _ := f.File.WriteAt(p[:len(p)/2], off)
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.File.WriteAt(p, off)
}

func (f *faultFile) sync(real func() error) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.failSync {
		return &os.PathError{Op: "sync", Path: f.Name(), Err: syscall.EIO}
	}
	if err := real(); err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	data := make([]byte, st.Size())
	if _, err := f.File.ReadAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	s := f.fs.files[f.ino]
	s.durable = data
	s.syncs++
	return nil
}

func (f *faultFile) Sync() error     { return f.sync(f.File.Sync) }
func (f *faultFile) Datasync() error { return f.sync(f.File.Sync) }

func (fs *faultFS) set(full, failSync bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.full, fs.failSync = full, failSync
}

// syncs counts the successful syncs of the file now at name.
func (fs *faultFS) syncs(name string) int {
	st, err := os.Stat(name)
	if err != nil {
		return 0
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if s, ok := fs.files[inode(st)]; ok {
		return s.syncs
	}
	return 0
}

// crashCopy writes into dir what a power cut now would leave of every file
// (under its current base name): the content of each at its last sync.
func (fs *faultFS) crashCopy(t *testing.T, dir string) {
	t.Helper()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for d := range fs.dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			info, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			if s, ok := fs.files[inode(info)]; ok {
				if err := os.WriteFile(filepath.Join(dir, e.Name()), s.durable, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

func openFault(t *testing.T, path string, walSize int64) (*FileSink, *faultFS) {
	t.Helper()
	fs := newFaultFS()
	s, err := newFileSinkWAL(path, 0, fs.open, walSize)
	if err != nil {
		t.Fatal(err)
	}
	return s, fs
}

// requestIDs returns the request ids of the request lines of a log file.
func requestIDs(t *testing.T, path string) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for _, line := range readLines(t, path) {
		var v struct {
			Type      string `json:"type"`
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal(line, &v); err != nil {
			t.Fatal(err)
		}
		if v.Type == typeRequest {
			ids[v.RequestID] = true
		}
	}
	return ids
}

// TestFileSinkDurableBeforeAck is issue 21's mutation 2 for the audit sink:
// after every acknowledged Record, a power cut (only synced bytes survive)
// followed by a restart must keep every acknowledged line, the log must
// verify, and the sink must have synced for it. Without the ring's
// fdatasync (or with the file's fsync dropped at a wrap, or for a batch
// larger than the ring) this fails. The small ring wraps several times on
// the way; the tiny one holds no batch, so every batch is fsynced into the
// file itself.
func TestFileSinkDurableBeforeAck(t *testing.T) {
	for _, walSize := range []int64{defaultWALSize, 6 << 10, walHeaderSize + walRecordHdr + 64} {
		t.Run(fmt.Sprintf("wal=%d", walSize), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			s, fs := openFault(t, path, walSize)
			l, err := New([]Sink{s}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			hk, priv, keys := testKeys()
			l.SetKeys(hk, priv, "k1")
			for i := range 25 {
				before := fs.syncs(path) + fs.syncs(path+".wal")
				record(t, l, i)
				if after := fs.syncs(path) + fs.syncs(path+".wal"); after <= before {
					t.Fatalf("record %d acknowledged without a sync", i)
				}
				cp := restartAfterPowerCut(t, fs)
				data, _ := os.ReadFile(cp)
				rep, err := verifyBytes(data, keys)
				if err != nil && !errors.Is(err, ErrUnverified) { // the restart's own lines are unsigned
					t.Fatalf("after a power cut at record %d: %v", i, err)
				}
				mustKeepRecords(t, requestIDs(t, cp), i, rep)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(path)
			if _, err := verifyBytes(data, keys); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// restartAfterPowerCut copies what a power cut would leave of fs's files
// and opens and closes a log on the copy, as a restart would; it returns
// the copy's path.
func restartAfterPowerCut(t *testing.T, fs *faultFS) string {
	t.Helper()
	crashed := t.TempDir()
	fs.crashCopy(t, crashed)
	cp := filepath.Join(crashed, "audit.log")
	l, err := New([]Sink{openFile(t, cp, 0)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return cp
}

// mustKeepRecords fails unless ids holds records 0 to last, all of them
// acknowledged before a power cut.
func mustKeepRecords(t *testing.T, ids map[string]bool, last int, rep *Report) {
	t.Helper()
	for j := 0; j <= last; j++ {
		if !ids[fmt.Sprintf("req-%d", j)] {
			t.Fatalf("power cut after record %d lost acknowledged record %d (report %+v)", last, j, rep)
		}
	}
}

// TestFileSinkDurableAcrossRotation: a batch may be durable only in the
// ring when its file is rotated, and rotation empties the ring; the file
// must be fsynced before that (issue 21, mutation 2b: dropping that fsync
// survived the other tests). After every acknowledged Record a power cut
// followed by a restart must keep every acknowledged line in the rotated
// set, and the set must verify.
func TestFileSinkDurableAcrossRotation(t *testing.T) {
	const maxBytes = 2 << 10 // rotates every few records
	path := filepath.Join(t.TempDir(), "audit.log")
	fs := newFaultFS()
	s, err := newFileSinkWAL(path, maxBytes, fs.open, defaultWALSize)
	if err != nil {
		t.Fatal(err)
	}
	l, err := New([]Sink{s}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	hk, priv, keys := testKeys()
	l.SetKeys(hk, priv, "k1")
	for i := range 12 {
		record(t, l, i)
		cp := restartAfterPowerCut(t, fs)
		files, err := RotatedFiles(cp)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := VerifyFiles(files, keys)
		if err != nil && !errors.Is(err, ErrUnverified) { // the restart's own lines are unsigned
			t.Fatalf("after a power cut at record %d: %v", i, err)
		}
		ids := map[string]bool{}
		for _, f := range files {
			for id := range requestIDs(t, f) {
				ids[id] = true
			}
		}
		mustKeepRecords(t, ids, i, rep)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := RotatedFiles(path)
	if err != nil || len(files) < 4 {
		t.Fatalf("rotated set %v, %v: want several rotations", files, err)
	}
	if _, err := VerifyFiles(files, keys); err != nil {
		t.Fatal(err)
	}
}

// TestFileSinkRecoversFromFullDisk: while the disk is full (or a sync
// fails) records are refused and nothing half-written stays in the file;
// once the disk has room the same sink writes again by itself.
func TestFileSinkRecoversFromFullDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	s, fs := openFault(t, path, defaultWALSize)
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
	}{{"full disk", true, false}, {"sync error", false, true}} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		good := st.Size()
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
	if got := len(requestIDs(t, path)); got != 2 {
		t.Fatalf("%d distinct request lines, want the 2 acknowledged ones (report %+v)", got, rep)
	}
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

// TestFileSinkPowerCutLeavesZeros: a file system may leave NUL bytes where
// the log's unflushed tail was. Past the acknowledged part they are cut
// (kept in the .torn side file), and every acknowledged line survives. The
// acknowledged part ends where the ring says: after its records, or, when
// the last batch was larger than the ring and fsynced into the file
// itself, where the ring's header (reset after that fsync) says. That
// header must be durable too: a stale one makes the cut take the
// acknowledged batch (issue 21, mutation 2b: the fdatasync of the ring's
// header dropped).
func TestFileSinkPowerCutLeavesZeros(t *testing.T) {
	for _, tc := range []struct {
		name    string
		walSize int64
		bigLast bool // the last batch is larger than the ring
	}{
		{"records in the ring", defaultWALSize, false},
		{"last batch larger than the ring", 6 << 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			s, fs := openFault(t, path, tc.walSize)
			l, err := New([]Sink{s}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			hk, priv, keys := testKeys()
			l.SetKeys(hk, priv, "k1")
			for i := range 5 {
				e := sampleEntry(i)
				if tc.bigLast && i == 4 {
					e.Path += "/" + strings.Repeat("x", 8<<10)
				}
				if err := l.Record(context.Background(), e); err != nil {
					t.Fatal(err)
				}
			}
			crashed := t.TempDir()
			fs.crashCopy(t, crashed)
			cp := filepath.Join(crashed, "audit.log")
			f, err := os.OpenFile(cp, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			// More zeros than the ring's records can cover when written back.
			if _, err := f.Write(append(make([]byte, 64<<10), `{"seq":99,"type":"checkpoint"}`+"\n"...)); err != nil {
				t.Fatal(err)
			}
			f.Close()
			l2, err := New([]Sink{openFile(t, cp, 0)}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			l2.SetKeys(hk, priv, "k1")
			if err := l2.Close(); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(cp)
			if _, err := verifyBytes(data, keys); err != nil {
				t.Fatalf("after zeros past the ring: %v", err)
			}
			ids := requestIDs(t, cp)
			for i := range 5 {
				if !ids[fmt.Sprintf("req-%d", i)] {
					t.Fatalf("acknowledged record %d lost", i)
				}
			}
			if side, _ := filepath.Glob(cp + ".*.torn"); len(side) != 1 {
				t.Fatalf("torn side files: %v", side)
			}
			l.Close()
		})
	}
}
