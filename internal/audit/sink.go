package audit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moonvault/moonvault/internal/errkind"
)

// ErrLocked means another process (or another sink in this one) holds the
// audit file: two writers would interleave two chains and corrupt both.
var ErrLocked = errkind.New(errkind.Conflict, "audit_file_locked",
	"the audit file is in use by another writer (each node needs its own audit_file)")

// file is what FileSink needs of an open file; tests put a fault-injecting
// layer in its place.
type file interface {
	io.WriterAt
	io.ReaderAt
	Sync() error
	Truncate(size int64) error
	Close() error
	Stat() (os.FileInfo, error)
	Chmod(mode os.FileMode) error
	Fd() uintptr
}

// openFunc opens a file as os.OpenFile does.
type openFunc func(name string, flag int, perm os.FileMode) (file, error)

func osOpen(name string, flag int, perm os.FileMode) (file, error) {
	return os.OpenFile(name, flag, perm) // #nosec G304 -- the operator names the audit file
}

// Sink is one destination of the log. Write receives whole batches (each
// ending with a checkpoint line) and must make them durable before it
// returns; a file sink writes and fsyncs.
type Sink interface {
	Write(p []byte) error
	Name() string
}

// rotatedSuffix is the UTC timestamp appended to a rotated file's name; it
// sorts lexically in time order.
const rotatedSuffix = "20060102T150405.000000000Z"

// FileSink appends to a file, makes every batch durable before Write
// returns, and rotates by size. Durability goes through a preallocated
// write-ahead ring beside the file (path + ".wal", see wal.go); the file
// itself is fsynced when the ring wraps, at rotation and at close.
type FileSink struct {
	path     string
	maxBytes int64
	openFile openFunc
	walSize  int64

	mu   sync.Mutex
	f    file  // nil after a failure that left the handle unusable
	size int64 // bytes known durable; the file is cut back to this on error

	wal       *wal
	walBuf    []byte
	flushed   int64 // writeback of the file was started up to here
	walReady  bool  // the ring's generation describes f up to size
	replayed  bool  // open found ring records for f and wrote them back
	replayEnd int64 // where the acknowledged part of f ends (when replayed)
}

// NewFileSink opens (or creates, mode 0600) the log file at path. When a
// batch would make the file exceed maxBytes (0: never), the file is renamed
// to path.<UTC timestamp> and a new one is started; the chain continues.
//
// The file is locked (flock, exclusive) while the sink holds it: a second
// writer, such as a second node given the same audit_file, fails with an
// error wrapping ErrLocked instead of corrupting both chains.
func NewFileSink(path string, maxBytes int64) (*FileSink, error) {
	return newFileSink(path, maxBytes, osOpen)
}

func newFileSink(path string, maxBytes int64, open openFunc) (*FileSink, error) {
	return newFileSinkWAL(path, maxBytes, open, defaultWALSize)
}

func newFileSinkWAL(path string, maxBytes int64, open openFunc, walSize int64) (*FileSink, error) {
	if maxBytes < 0 {
		return nil, fmt.Errorf("audit file sink: maxBytes must not be negative")
	}
	s := &FileSink{path: path, maxBytes: maxBytes, openFile: open, walSize: walSize}
	if err := s.open(); err != nil {
		return nil, err
	}
	w, err := openWAL(open, path+".wal", walSize)
	if err != nil {
		s.f.Close()
		return nil, err
	}
	s.wal = w
	// Batches acknowledged through the ring but not yet in the file (a
	// crash before the file was fsynced) are written back now.
	end, ok, err := w.replay(s.f)
	if err == nil && ok {
		if err = s.f.Sync(); err == nil {
			s.replayed, s.replayEnd = true, end
			var st os.FileInfo
			if st, err = s.f.Stat(); err == nil {
				s.size = st.Size()
			}
		}
	}
	if err != nil {
		s.f.Close()
		w.close()
		return nil, fmt.Errorf("audit file sink %s: %w", path, err)
	}
	return s, nil
}

func (s *FileSink) open() error {
	f, err := s.openFile(s.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit file sink: %w", err)
	}
	if err := lock(f, s.path); err != nil {
		f.Close()
		return err
	}
	// An existing file may have been created with looser permissions.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("audit file sink: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit file sink: %w", err)
	}
	s.f, s.size, s.walReady = f, st.Size(), false
	return nil
}

// resetWAL makes the file durable up to size and starts a new ring
// generation from there.
func (s *FileSink) resetWAL() error {
	if err := s.f.Sync(); err != nil {
		return err
	}
	if err := s.wal.reset(s.f, s.size); err != nil {
		return err
	}
	s.walReady = true
	return nil
}

// Name identifies the sink in logs and recovery lines.
func (s *FileSink) Name() string { return "file:" + s.path }

// Path is the current (active) file.
func (s *FileSink) Path() string { return s.path }

// Write appends p and makes it durable: one record in the ring and one
// fdatasync of it. On failure the file is cut back to its last durable
// size so that a retry appends cleanly after the last good batch.
func (s *FileSink) Write(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		if err := s.reopen(); err != nil {
			return err
		}
	}
	if s.maxBytes > 0 && s.size > 0 && s.size+int64(len(p)) > s.maxBytes {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	if !s.walReady || !s.wal.fits(len(p)) {
		// First write, or the ring is full: fsync the file, then reuse
		// the ring from its start.
		if err := s.resetWAL(); err != nil {
			return fmt.Errorf("audit file sink %s: %w", s.path, err)
		}
	}
	n, err := s.f.WriteAt(p, s.size)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	big := false
	if err == nil {
		if s.wal.fits(len(p)) {
			s.walBuf, err = s.wal.append(s.size, p, s.walBuf)
		} else { // a batch larger than the ring: fsync the file itself
			big = true
			err = s.f.Sync()
		}
	}
	if err != nil {
		// After a failed fsync the page cache may have dropped the data
		// (Linux "fsyncgate"); rewriting the whole batch is the safe retry.
		if n > 0 {
			if terr := s.f.Truncate(s.size); terr != nil {
				s.f.Close()
				s.f = nil
			}
		}
		return fmt.Errorf("audit file sink %s: %w", s.path, err)
	}
	s.size += int64(n)
	s.startWriteback()
	if big {
		if err := s.wal.reset(s.f, s.size); err != nil {
			s.walReady = false // the next write resets again; this batch is durable
		}
	}
	return nil
}

// writebackChunk is how much of the file may be dirty before its writeback
// is started: the fsync at a ring wrap then finds little left to write and
// does not stall the log (RocksDB's bytes_per_sync does the same).
const writebackChunk = 1 << 20

// startWriteback asks the kernel to start writing the file's new bytes to
// disk, without waiting (sync_file_range(2) SYNC_FILE_RANGE_WRITE). It is a
// hint: durability comes from the ring and the fsyncs, never from this.
func (s *FileSink) startWriteback() {
	if s.size < s.flushed { // cut back or rotated
		s.flushed = 0
	}
	if s.size-s.flushed < writebackChunk {
		return
	}
	_ = unix.SyncFileRange(int(s.f.Fd()), s.flushed, s.size-s.flushed, unix.SYNC_FILE_RANGE_WRITE) // #nosec G115 -- a file descriptor fits an int
	s.flushed = s.size
}

// reopen reopens the file after a failure and cuts anything written past
// the last durable size.
func (s *FileSink) reopen() error {
	want := s.size
	if err := s.open(); err != nil {
		return err
	}
	if s.size > want {
		if err := s.f.Truncate(want); err != nil {
			s.f.Close()
			s.f = nil
			return fmt.Errorf("audit file sink %s: %w", s.path, err)
		}
		s.size = want
	}
	return nil
}

func (s *FileSink) rotate() error {
	// The file is complete and durable before it gets its rotated name: a
	// ring left describing it is then never needed again.
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("audit file sink: rotate: %w", err)
	}
	if err := s.wal.reset(nil, 0); err != nil {
		return fmt.Errorf("audit file sink: rotate: %w", err)
	}
	s.walReady = false
	name := s.path + "." + time.Now().UTC().Format(rotatedSuffix)
	for i := 1; ; i++ {
		if _, err := os.Lstat(name); errors.Is(err, os.ErrNotExist) {
			break
		}
		name = fmt.Sprintf("%s.%s-%d", s.path, time.Now().UTC().Format(rotatedSuffix), i)
	}
	if err := os.Rename(s.path, name); err != nil {
		return fmt.Errorf("audit file sink: rotate: %w", err)
	}
	s.f.Close()
	s.f = nil
	f, err := s.openFile(s.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		s.size = 0
		return fmt.Errorf("audit file sink: rotate: %w", err)
	}
	if err := lock(f, s.path); err != nil {
		f.Close()
		s.size = 0
		return err
	}
	s.f, s.size, s.walReady = f, 0, false
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("audit file sink: rotate: %w", err)
	}
	return nil
}

// Close makes the file durable, empties the ring, and closes both.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if s.f != nil {
		if s.walReady {
			errs = append(errs, s.resetWAL())
		} else {
			errs = append(errs, s.f.Sync())
		}
		errs = append(errs, s.f.Close())
		s.f = nil
	}
	if s.wal != nil {
		errs = append(errs, s.wal.close())
		s.wal = nil
	}
	return errors.Join(errs...)
}

// lock takes an exclusive, non-blocking flock on f. The kernel drops it
// when the process dies, so a crashed node never leaves a stale lock.
func lock(f file, path string) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) // #nosec G115 -- a file descriptor fits an int
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return fmt.Errorf("audit file sink %s: %w", path, ErrLocked)
	}
	if err != nil {
		return fmt.Errorf("audit file sink %s: lock: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writerSink sends batches to an io.Writer such as standard output.
type writerSink struct {
	w    io.Writer
	name string
}

// NewWriterSink returns a sink for a stream (standard output in a
// container). It does not fsync: the collector owns durability, so use it
// beside a file sink, not instead of one, when acknowledgements must be
// durable.
func NewWriterSink(w io.Writer, name string) Sink { return &writerSink{w: w, name: name} }

func (s *writerSink) Write(p []byte) error {
	if _, err := s.w.Write(p); err != nil {
		return fmt.Errorf("audit sink %s: %w", s.name, err)
	}
	return nil
}

func (s *writerSink) Name() string { return s.name }
