package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"syscall"
)

// The write-ahead ring makes a batch durable without an fsync of the log
// file itself (issue 14). Appending to a file changes its size, so each
// fsync of it is an ext4 journal commit, and journal commits queue behind
// every other fsync on the file system (bolt's, other processes'): at p99
// that cost milliseconds to tens of milliseconds on a busy disk. The ring is
// a file preallocated with zeros once, so an fdatasync of a batch written
// into it changes no metadata and commits no journal (as bolt, PostgreSQL's
// WAL and most databases do). The log file is appended without its own
// fsync, so tail -f and log shippers see every line at once, and is
// fsynced when the ring wraps, at rotation and at close. After a crash the
// batches recorded in the ring are written back into the log file at open.
//
// Layout: a 512-byte header {magic, version, the log size durable when the
// ring was reset, generation, SHA-256 of the 4 KiB of the log before that
// size, CRC-32C}, then records
// {magic, generation, seq, log offset, length, CRC-32C, data}, contiguous
// in the log and in the ring. A record counts only with the header's
// generation, the next seq and the next log offset, and a good CRC, so
// stale records of an earlier pass end the scan. The fingerprint ties the
// ring to the log's content (not its inode, so a copy of both files still
// recovers); at rotation the ring is emptied before the file is renamed.

const (
	walHeaderSize = 512
	walRecordHdr  = 4 + 8 + 8 + 8 + 4 + 4
	walVersion    = 1
	// defaultWALSize is the ring's size. At 20k lines/s of ~600 bytes the
	// log file is fsynced about once a second.
	defaultWALSize = 16 << 20
)

var (
	walMagic       = []byte("MVAUDWAL")
	walRecordMagic = []byte("MVWR")
	crcTable       = crc32.MakeTable(crc32.Castagnoli)
	errWALFull     = errors.New("audit wal: full")
)

type wal struct {
	f    file
	size int64 // preallocated size
	pos  int64 // where the next record goes
	gen  uint64
	seq  uint64 // of the last record written
	next int64  // log offset the next record must have
}

// openWAL opens (creating and preallocating with zeros when needed) the
// ring at path.
func openWAL(open openFunc, path string, size int64) (*wal, error) {
	f, err := open(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit wal: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit wal: %w", err)
	}
	if st.Size() < size {
		// Written zeros, not fallocate: unwritten extents would turn every
		// first write into a metadata change again.
		zero := make([]byte, 1<<20)
		for off := st.Size(); off < size; {
			n := min(int64(len(zero)), size-off)
			if _, err := f.WriteAt(zero[:n], off); err != nil {
				f.Close()
				return nil, fmt.Errorf("audit wal: preallocate: %w", err)
			}
			off += n
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("audit wal: preallocate: %w", err)
		}
	}
	return &wal{f: f, size: size, pos: walHeaderSize}, nil
}

type walHeader struct {
	durable int64 // -1: the ring describes no file
	gen     uint64
	fp      [sha256.Size]byte
}

const walHeaderUsed = 8 + 4 + 8 + 8 + sha256.Size

func (w *wal) readHeader() (walHeader, bool) {
	var b [walHeaderSize]byte
	if _, err := w.f.ReadAt(b[:], 0); err != nil && !errors.Is(err, io.EOF) {
		return walHeader{}, false
	}
	if !bytes.Equal(b[:8], walMagic) || binary.BigEndian.Uint32(b[8:12]) != walVersion {
		return walHeader{}, false
	}
	if crc32.Checksum(b[:walHeaderUsed], crcTable) != binary.BigEndian.Uint32(b[walHeaderUsed:walHeaderUsed+4]) {
		return walHeader{}, false
	}
	h := walHeader{
		durable: int64(binary.BigEndian.Uint64(b[12:20])), // #nosec G115 -- written from an int64
		gen:     binary.BigEndian.Uint64(b[20:28]),
	}
	copy(h.fp[:], b[28:28+sha256.Size])
	return h, true
}

// fingerprint hashes the 4 KiB of log before end.
func fingerprint(log file, end int64) ([sha256.Size]byte, error) {
	start := max(0, end-4096)
	buf := make([]byte, end-start)
	if _, err := log.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
		return [sha256.Size]byte{}, err
	}
	return sha256.Sum256(buf), nil
}

// reset starts a new generation for log, durable up to durable (the
// caller has fsynced it), or describing no file when log is nil: every
// earlier record is obsolete.
func (w *wal) reset(log file, durable int64) error {
	var fp [sha256.Size]byte
	if log == nil {
		durable = -1
	} else {
		var err error
		if fp, err = fingerprint(log, durable); err != nil {
			return fmt.Errorf("audit wal: %w", err)
		}
	}
	var b [walHeaderSize]byte
	copy(b[:8], walMagic)
	binary.BigEndian.PutUint32(b[8:12], walVersion)
	binary.BigEndian.PutUint64(b[12:20], uint64(durable)) // #nosec G115 -- read back as an int64
	binary.BigEndian.PutUint64(b[20:28], w.gen+1)
	copy(b[28:], fp[:])
	binary.BigEndian.PutUint32(b[walHeaderUsed:], crc32.Checksum(b[:walHeaderUsed], crcTable))
	if _, err := w.f.WriteAt(b[:], 0); err != nil {
		return fmt.Errorf("audit wal: %w", err)
	}
	if err := fdatasync(w.f); err != nil {
		return fmt.Errorf("audit wal: %w", err)
	}
	w.gen++
	w.seq, w.pos, w.next = 0, walHeaderSize, durable
	return nil
}

// fits says whether a record of n data bytes fits before the ring's end.
func (w *wal) fits(n int) bool {
	return w.pos+walRecordHdr+int64(n) <= w.size
}

// append writes one record for data at log offset off and makes it
// durable. It returns errWALFull when the ring has no room left.
func (w *wal) append(off int64, data []byte, buf []byte) ([]byte, error) {
	if !w.fits(len(data)) {
		return buf, errWALFull
	}
	if off != w.next {
		return buf, fmt.Errorf("audit wal: record at log offset %d, expected %d", off, w.next)
	}
	buf = append(buf[:0], walRecordMagic...)
	buf = binary.BigEndian.AppendUint64(buf, w.gen)
	buf = binary.BigEndian.AppendUint64(buf, w.seq+1)
	buf = binary.BigEndian.AppendUint64(buf, uint64(off))       // #nosec G115 -- a file offset
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(data))) // #nosec G115 -- fits() bounds it by the ring size
	crc := crc32.Update(crc32.Checksum(buf[4:], crcTable), crcTable, data)
	buf = binary.BigEndian.AppendUint32(buf, crc)
	buf = append(buf, data...)
	if _, err := w.f.WriteAt(buf, w.pos); err != nil {
		return buf, fmt.Errorf("audit wal: %w", err)
	}
	if err := fdatasync(w.f); err != nil {
		return buf, fmt.Errorf("audit wal: %w", err)
	}
	w.seq++
	w.pos += int64(len(buf))
	w.next = off + int64(len(data))
	return buf, nil
}

// replay writes the records of the ring's current generation back into log
// and returns the end of the last one. ok is false when the ring does not
// describe this file's content (fresh ring, emptied at rotation or close,
// or another file).
func (w *wal) replay(log file) (end int64, ok bool, err error) {
	h, valid := w.readHeader()
	if valid {
		w.gen = h.gen
	}
	if !valid || h.durable < 0 {
		return 0, false, nil
	}
	st, err := log.Stat()
	if err != nil {
		return 0, false, fmt.Errorf("audit wal: %w", err)
	}
	if st.Size() < h.durable {
		return 0, false, nil
	}
	if fp, err := fingerprint(log, h.durable); err != nil {
		return 0, false, fmt.Errorf("audit wal: %w", err)
	} else if fp != h.fp {
		return 0, false, nil
	}
	end = h.durable
	pos := int64(walHeaderSize)
	var hdr [walRecordHdr]byte
	for seq := uint64(1); pos+walRecordHdr <= w.size; seq++ {
		if _, err := w.f.ReadAt(hdr[:], pos); err != nil {
			break
		}
		n := int64(binary.BigEndian.Uint32(hdr[28:32]))
		if !bytes.Equal(hdr[:4], walRecordMagic) || binary.BigEndian.Uint64(hdr[4:12]) != h.gen ||
			binary.BigEndian.Uint64(hdr[12:20]) != seq || int64(binary.BigEndian.Uint64(hdr[20:28])) != end || // #nosec G115 -- compared, not used as a size
			pos+walRecordHdr+n > w.size {
			break
		}
		data := make([]byte, n)
		if _, err := w.f.ReadAt(data, pos+walRecordHdr); err != nil {
			break
		}
		if crc32.Update(crc32.Checksum(hdr[4:32], crcTable), crcTable, data) != binary.BigEndian.Uint32(hdr[32:36]) {
			break
		}
		if _, err := log.WriteAt(data, end); err != nil {
			return 0, false, fmt.Errorf("audit wal: replay: %w", err)
		}
		end += n
		pos += walRecordHdr + n
	}
	return end, true, nil
}

func (w *wal) close() error { return w.f.Close() }

// fdatasync flushes f's data (and only the metadata needed to read it).
func fdatasync(f file) error {
	if s, ok := f.(interface{ Datasync() error }); ok {
		return s.Datasync()
	}
	for {
		err := syscall.Fdatasync(int(f.Fd())) // #nosec G115 -- a file descriptor fits an int
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
