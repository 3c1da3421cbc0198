package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// tailState is where a file sink's chain stands after open-time recovery.
type tailState struct {
	found     bool // a checkpoint was found (else the chain starts fresh)
	seq       uint64
	hash      [sha256.Size]byte
	truncated int64  // bytes cut from a torn tail
	tornFile  string // where the cut bytes were kept for forensics
}

// maxTailScan bounds the memory used to find a line boundary at open.
const maxTailScan = 64 << 20

// recoverTail finds the last checkpoint line of the active file (or of the
// newest rotated file when the active one holds none) and cuts any torn tail
// after it. Lines after the last checkpoint were never acknowledged (a
// request is acknowledged only once its batch's checkpoint is durable), so
// cutting them loses no acknowledged record; they are kept in a side file.
func (s *FileSink) recoverTail() (tailState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st tailState
	if s.f == nil {
		if err := s.reopen(); err != nil {
			return st, err
		}
	}
	// With the ring's records written back, the acknowledged part of the
	// file ends at replayEnd. After it lies at most the batch that was being
	// written: kept when it is whole (a checkpoint ends it; over-recording
	// is the safe side), but not when it holds NUL bytes, which a file
	// system may leave in a tail it had not flushed when the power went.
	limit := s.size
	if s.replayed && s.replayEnd < s.size {
		tail := make([]byte, s.size-s.replayEnd)
		if _, err := s.f.ReadAt(tail, s.replayEnd); err != nil && !errors.Is(err, io.EOF) {
			return st, fmt.Errorf("audit file sink %s: read tail: %w", s.path, err)
		}
		if bytes.IndexByte(tail, 0) >= 0 {
			limit = s.replayEnd
		}
	}
	end, line, err := lastCheckpoint(s.f, limit)
	if err != nil {
		return st, fmt.Errorf("audit file sink %s: read tail: %w", s.path, err)
	}
	if end < s.size {
		torn, err := s.cutTail(end)
		if err != nil {
			return st, err
		}
		st.truncated, st.tornFile = s.size-end, torn
		s.size = end
	}
	if err := s.resetWAL(); err != nil {
		return st, fmt.Errorf("audit file sink %s: %w", s.path, err)
	}
	if line != nil {
		return chainState(st, line)
	}
	prev, err := newestRotated(s.path)
	if err != nil || prev == "" {
		return st, err
	}
	f, err := os.Open(prev)
	if err != nil {
		return st, fmt.Errorf("audit file sink: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return st, fmt.Errorf("audit file sink: %w", err)
	}
	_, line, err = lastCheckpoint(f, fi.Size())
	if err != nil {
		return st, fmt.Errorf("audit file sink %s: read tail: %w", prev, err)
	}
	if line == nil {
		return st, fmt.Errorf("audit file sink: rotated file %s ends without a checkpoint", prev)
	}
	return chainState(st, line)
}

func chainState(st tailState, line []byte) (tailState, error) {
	var h lineHead
	if err := json.Unmarshal(line, &h); err != nil || h.Seq == nil {
		return st, fmt.Errorf("audit file sink: last checkpoint line is malformed")
	}
	st.found, st.seq, st.hash = true, *h.Seq, sha256.Sum256(line)
	return st, nil
}

// cutTail copies the bytes after end to a side file, then truncates.
func (s *FileSink) cutTail(end int64) (string, error) {
	torn := s.path + "." + time.Now().UTC().Format(rotatedSuffix) + ".torn"
	out, err := os.OpenFile(torn, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("audit file sink: save torn tail: %w", err)
	}
	_, err = io.Copy(out, io.NewSectionReader(s.f, end, s.size-end))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("audit file sink: save torn tail: %w", err)
	}
	if err := s.f.Truncate(end); err != nil {
		return "", fmt.Errorf("audit file sink: truncate torn tail: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return "", fmt.Errorf("audit file sink: truncate torn tail: %w", err)
	}
	return torn, nil
}

// lastCheckpoint reads r backwards from size and returns the offset just
// past the newline of the last complete checkpoint line, and that line.
// It returns (0, nil, nil) when there is none.
func lastCheckpoint(r io.ReaderAt, size int64) (int64, []byte, error) {
	const chunk = 64 << 10
	var buf []byte // file bytes [pos, pos+len(buf)), lines after it examined
	pos := size
	for pos > 0 {
		n := min(int64(chunk), pos)
		pos -= n
		b := make([]byte, n, n+int64(len(buf)))
		if _, err := r.ReadAt(b, pos); err != nil && !errors.Is(err, io.EOF) {
			return 0, nil, err
		}
		buf = append(b, buf...)
		if len(buf) > maxTailScan {
			return 0, nil, fmt.Errorf("no line boundary in the last %d bytes", maxTailScan)
		}
		for {
			j := bytes.LastIndexByte(buf, '\n') // ends the candidate line
			if j < 0 {
				break
			}
			i := bytes.LastIndexByte(buf[:j], '\n') // ends the line before
			if i < 0 && pos > 0 {
				break // the line starts in an earlier chunk
			}
			line := buf[i+1 : j]
			if isCheckpointLine(line) {
				return pos + int64(j) + 1, slices.Clone(line), nil
			}
			buf = buf[:i+1]
			if i < 0 {
				break
			}
		}
	}
	return 0, nil, nil
}

func isCheckpointLine(line []byte) bool {
	if !bytes.Contains(line, []byte(`"type":"checkpoint"`)) {
		return false
	}
	var h lineHead
	return json.Unmarshal(line, &h) == nil && h.Type == typeCheckpoint && h.Seq != nil
}

// newestRotated returns the newest rotated file of path, or "".
func newestRotated(path string) (string, error) {
	matches, err := filepath.Glob(globEscape(path) + ".*")
	if err != nil {
		return "", fmt.Errorf("audit file sink: %w", err)
	}
	var rotated []string
	for _, m := range matches {
		if isRotatedName(path, m) {
			rotated = append(rotated, m)
		}
	}
	if len(rotated) == 0 {
		return "", nil
	}
	slices.SortFunc(rotated, compareRotated)
	return rotated[len(rotated)-1], nil
}

// RotatedFiles lists the rotated files of path, oldest first, followed by
// path itself: the order VerifyFiles expects.
func RotatedFiles(path string) ([]string, error) {
	matches, err := filepath.Glob(globEscape(path) + ".*")
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var out []string
	for _, m := range matches {
		if isRotatedName(path, m) {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, compareRotated)
	return append(out, path), nil
}

// compareRotated orders by timestamp, then by the -N collision counter.
func compareRotated(a, b string) int {
	ta, na := splitRotated(a)
	tb, nb := splitRotated(b)
	if c := strings.Compare(ta, tb); c != 0 {
		return c
	}
	return na - nb
}

func splitRotated(name string) (string, int) {
	i := strings.LastIndexByte(name, 'Z')
	n := 0
	if i >= 0 && i+2 < len(name) && name[i+1] == '-' {
		fmt.Sscanf(name[i+2:], "%d", &n)
		return name[:i+1], n
	}
	return name, 0
}

func isRotatedName(path, name string) bool {
	suffix, ok := strings.CutPrefix(name, path+".")
	if !ok || len(suffix) < len(rotatedSuffix) {
		return false
	}
	if _, err := time.Parse(rotatedSuffix, suffix[:len(rotatedSuffix)]); err != nil {
		return false
	}
	rest := suffix[len(rotatedSuffix):]
	if rest == "" {
		return true
	}
	if rest[0] != '-' || len(rest) == 1 {
		return false
	}
	for _, c := range rest[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}
