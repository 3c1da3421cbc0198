package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/secret"
)

// testSeed makes the checkpoint key deterministic across the crash child
// and the parent that verifies its file.
var testSeed = bytes.Repeat([]byte{7}, ed25519.SeedSize)

func testKeys() (secret.Bytes, ed25519.PrivateKey, map[string]ed25519.PublicKey) {
	priv := ed25519.NewKeyFromSeed(testSeed)
	return secret.Bytes("audit-hmac-key-for-tests-32bytes"), priv,
		map[string]ed25519.PublicKey{"k1": priv.Public().(ed25519.PublicKey)}
}

func sampleEntry(i int) *Entry {
	return &Entry{
		RequestID: fmt.Sprintf("req-%d", i), Subject: "alice", SessionID: "sid-1",
		RemoteAddr: "10.0.0.1:5555", Method: "POST", Path: "/v1/accounts/main/sign-message",
		Operation: "sign_message", Account: "main", Address: "0x00000000000000000000000000000000000000aa",
		Status: 200, LatencyMS: 1.25, Hashed: map[string]string{"message": "hmac-sha256:ab"},
	}
}

func openFile(t testing.TB, path string, maxBytes int64) *FileSink {
	t.Helper()
	s, err := NewFileSink(path, maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writeLog records n entries serially with keys set and closes the log.
func writeLog(t testing.TB, path string, n int, maxBytes int64) {
	t.Helper()
	l, err := New([]Sink{openFile(t, path, maxBytes)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	hk, priv, _ := testKeys()
	l.SetKeys(hk, priv, "k1")
	for i := range n {
		if err := l.Record(context.Background(), sampleEntry(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(data, []byte("\n"))[:bytes.Count(data, []byte("\n"))]
}

func lineType(t testing.TB, line []byte) string {
	t.Helper()
	var h lineHead
	if err := json.Unmarshal(line, &h); err != nil {
		t.Fatal(err)
	}
	return h.Type
}

func verifyBytes(data []byte, keys map[string]ed25519.PublicKey, opts ...VerifyOptions) (*Report, error) {
	return Verify(bytes.NewReader(data), keys, opts...)
}

func wantLine(t *testing.T, err error, line int) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("error = %v, want *VerifyError at line %d", err, line)
	}
	if ve.Line != line {
		t.Fatalf("VerifyError line = %d (%s), want %d", ve.Line, ve.Reason, line)
	}
}

func TestVerifyUntouched(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	writeLog(t, path, 20, 0)
	_, _, keys := testKeys()
	data, _ := os.ReadFile(path)
	rep, err := verifyBytes(data, keys)
	if err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if rep.Lines != len(lines) || rep.LastSeq != uint64(len(lines)) || rep.FirstSeq != 1 {
		t.Fatalf("report %+v for %d lines", rep, len(lines))
	}
	if rep.SignedCheckpoints == 0 || rep.UnsignedCheckpoints != 1 || rep.KeysFromLog {
		t.Fatalf("report %+v: want signed checkpoints and one unsigned (before SetKeys)", rep)
	}
	if rep.LinesAfterLastSigned != 0 {
		t.Fatalf("LinesAfterLastSigned = %d, want 0", rep.LinesAfterLastSigned)
	}
	requests := 0
	for _, l := range lines {
		if lineType(t, l) == typeRequest {
			requests++
		}
	}
	if requests != 20 {
		t.Fatalf("%d request lines, want 20", requests)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, %v; want 0600", st.Mode(), err)
	}
	// Without keys, the start line's published key is used and said so:
	// the log is intact but not verified against a trusted key.
	rep, err = verifyBytes(data, nil)
	if !errors.Is(err, ErrUnverified) || rep == nil || !rep.KeysFromLog || len(rep.Unverified) != 1 {
		t.Fatalf("keys from log: %+v, %v", rep, err)
	}
	// A key the operator did not trust must not verify.
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	_, err = verifyBytes(data, map[string]ed25519.PublicKey{"k1": other.Public().(ed25519.PublicKey)})
	var ve *VerifyError
	if !errors.As(err, &ve) || !strings.Contains(ve.Reason, "key other than the trusted one") {
		t.Fatalf("wrong key: %v", err)
	}
}

func TestVerifyTamper(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	writeLog(t, path, 12, 0)
	_, _, keys := testKeys()
	lines := readLines(t, path)
	types := make([]string, len(lines))
	for i, l := range lines {
		types[i] = lineType(t, l)
	}
	// k: the 1-based number of a request line in the middle.
	k := 0
	for i := len(lines) / 2; i < len(lines); i++ {
		if types[i] == typeRequest {
			k = i + 1
			break
		}
	}
	if k == 0 {
		t.Fatal("no request line")
	}
	lastCPBefore := func(n int) int { // last checkpoint line number before line n
		for i := n - 1; i >= 1; i-- {
			if types[i-1] == typeCheckpoint {
				return i
			}
		}
		return 0
	}
	join := func(ls [][]byte) []byte { return bytes.Join(ls, nil) }
	clone := func() [][]byte {
		c := make([][]byte, len(lines))
		for i := range lines {
			c[i] = bytes.Clone(lines[i])
		}
		return c
	}
	n := len(lines)
	tests := []struct {
		name   string
		mutate func() []byte
		opts   VerifyOptions
		line   int
	}{
		{"edit a field", func() []byte {
			c := clone()
			c[k-1] = bytes.Replace(c[k-1], []byte(`"status":200`), []byte(`"status":201`), 1)
			return join(c)
		}, VerifyOptions{}, k},
		{"delete a line", func() []byte {
			c := clone()
			return join(append(c[:k-1], c[k:]...))
		}, VerifyOptions{}, k},
		{"swap two lines", func() []byte {
			c := clone()
			c[k-1], c[k] = c[k], c[k-1]
			return join(c)
		}, VerifyOptions{}, k},
		{"truncate mid-file", func() []byte {
			c := clone()
			return append(join(c[:k-1]), c[k-1][:len(c[k-1])/2]...)
		}, VerifyOptions{}, lastCPBefore(k) + 1},
		{"truncate after a request line", func() []byte {
			return join(clone()[:k])
		}, VerifyOptions{}, lastCPBefore(k) + 1},
		{"truncate at the tail", func() []byte {
			d := join(clone())
			return d[:len(d)-10]
		}, VerifyOptions{}, n},
		{"cut at a batch boundary, below the anchor", func() []byte {
			return join(clone()[:n-1])
		}, VerifyOptions{MinSeq: uint64(n)}, n},
		{"prepend-deleted start", func() []byte {
			return join(clone()[2:])
		}, VerifyOptions{}, 1},
		{"reformat a checkpoint", func() []byte {
			c := clone()
			c[n-1] = bytes.Replace(c[n-1], []byte(`{"seq"`), []byte(`{ "seq"`), 1)
			return join(c)
		}, VerifyOptions{}, n},
		{"unknown type", func() []byte {
			c := clone()
			c[0] = bytes.Replace(c[0], []byte(`"type":"start"`), []byte(`"type":"stArt"`), 1)
			return join(c)
		}, VerifyOptions{}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := verifyBytes(tt.mutate(), keys, tt.opts)
			wantLine(t, err, tt.line)
		})
	}
	// A cut exactly at a batch boundary passes without an anchor: the
	// limitation MinSeq exists for.
	if _, err := verifyBytes(join(lines[:n-1]), keys); err != nil {
		t.Fatalf("boundary cut without anchor: %v", err)
	}
	if _, err := verifyBytes(join(lines), keys, VerifyOptions{MinSeq: uint64(n)}); err != nil {
		t.Fatalf("anchor at the end: %v", err)
	}
}

func TestHMAC(t *testing.T) {
	l, err := New([]Sink{openFile(t, filepath.Join(t.TempDir(), "a.log"), 0)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := l.HMAC("x"); got != hmacUnavailable {
		t.Fatalf("sealed HMAC = %q", got)
	}
	if id, pub := l.PublicKey(); id != "" || pub != nil {
		t.Fatalf("sealed PublicKey = %q, %x", id, pub)
	}
	_, priv, _ := testKeys()
	key := secret.Bytes("key-of-at-least-112-bits")
	l.SetKeys(key, priv, "k1")
	key.Destroy() // the log keeps its own copy
	// Known answer: HMAC-SHA256("key-of-at-least-112-bits", "The quick brown fox jumps over the lazy dog").
	const want = "hmac-sha256:d3194a74bf0cb2307a207ffd23b8c36cce995446c0f2073d571b5d5daeac1f8f"
	if got := l.HMAC("The quick brown fox jumps over the lazy dog"); got != want {
		t.Fatalf("HMAC = %q, want %q", got, want)
	}
	if id, pub := l.PublicKey(); id != "k1" || !bytes.Equal(pub, priv.Public().(ed25519.PublicKey)) {
		t.Fatalf("PublicKey = %q, %x", id, pub)
	}
	l.ClearKeys()
	if got := l.HMAC("x"); got != hmacUnavailable {
		t.Fatalf("HMAC after ClearKeys = %q", got)
	}
	k2 := bytes.Repeat([]byte("k"), 32) // FIPS 140-3 wants HMAC keys of at least 112 bits
	m := hmac.New(sha256.New, k2)
	m.Write([]byte("v"))
	l.SetKeys(secret.Bytes(k2), nil, "")
	if got := l.HMAC("v"); got != "hmac-sha256:"+hex.EncodeToString(m.Sum(nil)) {
		t.Fatalf("HMAC without signer = %q", got)
	}
}

func TestSealedLogIsUnsignedThenSigned(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := New([]Sink{openFile(t, path, 0)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := l.Record(context.Background(), sampleEntry(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, keys := testKeys()
	data, _ := os.ReadFile(path)
	// Intact, but no line is vouched for by a signature: not verified.
	rep, err := verifyBytes(data, keys)
	if !errors.Is(err, ErrUnverified) || rep == nil {
		t.Fatalf("sealed log: %v", err)
	}
	if rep.SignedCheckpoints != 0 || rep.UnsignedCheckpoints != rep.Checkpoints || rep.LinesAfterLastSigned != rep.Lines || rep.CoveredSeq != 0 {
		t.Fatalf("sealed report %+v", rep)
	}
	// Reopen, unseal, record: the signed checkpoint covers the sealed part.
	writeLog(t, path, 2, 0)
	data, _ = os.ReadFile(path)
	rep, err = verifyBytes(data, keys)
	if err != nil {
		t.Fatal(err)
	}
	if rep.SignedCheckpoints == 0 || rep.LinesAfterLastSigned != 0 {
		t.Fatalf("report after unseal %+v", rep)
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	writeLog(t, path, 60, 4096)
	files, err := RotatedFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("only %d files after rotation: %v", len(files), files)
	}
	_, _, keys := testKeys()
	rep, err := VerifyFiles(files, keys)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, f := range files {
		total += len(readLines(t, f))
		if st, err := os.Stat(f); err != nil || st.Size() > 4096 {
			t.Fatalf("%s: size %v, %v", f, st.Size(), err)
		}
	}
	if rep.Files != len(files) || rep.Lines != total {
		t.Fatalf("report %+v, want %d files and %d lines", rep, len(files), total)
	}
	// A later file alone continues a chain: refused unless allowed.
	data, _ := os.ReadFile(files[1])
	_, err = verifyBytes(data, keys)
	wantLine(t, err, 1)
	if _, err := verifyBytes(data, keys, VerifyOptions{AllowMidChainStart: true}); err != nil {
		t.Fatalf("mid-chain file: %v", err)
	}
	// A missing middle file is named at the first line of the next one.
	missing := append(append([]string{}, files[:1]...), files[2:]...)
	_, err = VerifyFiles(missing, keys)
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.File != files[2] || ve.Line != 1 {
		t.Fatalf("missing middle file: %v", err)
	}
	// Reordered files too.
	swapped := append([]string{}, files...)
	swapped[1], swapped[2] = swapped[2], swapped[1]
	if _, err := VerifyFiles(swapped, keys); !errors.As(err, &ve) {
		t.Fatalf("swapped files: %v", err)
	}
	// Reopen continues the chain in the active file.
	writeLog(t, path, 5, 4096)
	files, _ = RotatedFiles(path)
	if _, err := VerifyFiles(files, keys); err != nil {
		t.Fatalf("after reopen: %v", err)
	}
	// A crash just after a rotation leaves a new file holding only a torn
	// line: the chain resumes from the newest rotated file.
	if err := os.Rename(path, path+"."+time.Now().UTC().Format(rotatedSuffix)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(`{"seq":`), 0o600); err != nil {
		t.Fatal(err)
	}
	writeLog(t, path, 3, 4096)
	files, _ = RotatedFiles(path)
	if _, err := VerifyFiles(files, keys); err != nil {
		t.Fatalf("after a crash right after rotation: %v", err)
	}
	if lineType(t, readLines(t, path)[0]) != typeRecovery {
		t.Fatal("the torn new file was not recorded as a recovery")
	}
}

// faultSink wraps a sink and fails while fail is set.
type faultSink struct {
	Sink
	fail atomic.Bool
}

func (f *faultSink) Write(p []byte) error {
	if f.fail.Load() {
		return errors.New("injected write failure")
	}
	return f.Sink.Write(p)
}

func TestFailClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	first := openFile(t, path, 0)
	fs := &faultSink{Sink: first}
	fs.fail.Store(true)
	if _, err := New([]Sink{fs}, Options{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("New on a failing sink: %v", err)
	}
	first.Close() // the wrapper hides Close from New
	fs = &faultSink{Sink: openFile(t, path, 0)}
	var logs bytes.Buffer
	l, err := New([]Sink{fs}, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	fs.fail.Store(true)
	e := sampleEntry(1)
	e.Path = "/v1/secret-marker-path"
	if err := l.Record(context.Background(), e); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Record on a failing sink: %v", err)
	}
	if strings.Contains(logs.String(), "secret-marker") || !strings.Contains(logs.String(), "audit sink failed") {
		t.Fatalf("slog output must name the failure, never the entry: %q", logs.String())
	}
	fs.fail.Store(false) // the sink heals; the refused entry never happened
	if err := l.Record(context.Background(), sampleEntry(2)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Record(context.Background(), sampleEntry(3)); !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrClosed) {
		t.Fatalf("Record after Close: %v", err)
	}
	data, _ := os.ReadFile(path)
	if bytes.Contains(data, []byte("secret-marker")) {
		t.Fatal("a refused entry reached the file")
	}
	// Intact (never keyed, so unverified, but no *VerifyError).
	if rep, err := verifyBytes(data, nil); !errors.Is(err, ErrUnverified) || rep == nil || rep.Lines == 0 {
		t.Fatal(err)
	}
}

func TestTwoSinksOneFailing(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	fb := &faultSink{Sink: openFile(t, b, 0)}
	var stdout bytes.Buffer
	l, err := New([]Sink{openFile(t, a, 0), fb, NewWriterSink(&stdout, "stdout")}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	hk, priv, keys := testKeys()
	l.SetKeys(hk, priv, "k1")
	for i := range 30 {
		fb.fail.Store(i >= 10 && i < 20)
		if err := l.Record(context.Background(), sampleEntry(i)); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l.Stats().SinkFailures == 0 {
		t.Fatal("no sink failure counted")
	}
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if !bytes.Equal(da, db) || !bytes.Equal(da, stdout.Bytes()) {
		t.Fatal("the healed sink did not replay its backlog: copies differ")
	}
	if _, err := verifyBytes(db, keys); err != nil {
		t.Fatal(err)
	}
}

func TestTornTailRecovery(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	writeLog(t, path, 5, 0)
	lines := readLines(t, path)
	n := len(lines)
	// Simulate a crash mid-batch: one complete unacknowledged line, half of
	// the next, no checkpoint.
	var h lineHead
	json.Unmarshal(lines[n-1], &h)
	last := sha256.Sum256(bytes.TrimSuffix(lines[n-1], []byte("\n")))
	torn := appendLine(nil, *h.Seq+1, &last, typeRequest, []byte(`{"time":"2026-01-01T00:00:00Z","status":200}`))
	torn = append(torn, '\n')
	torn = append(torn, `{"seq":`...)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.Write(torn)
	f.Close()
	_, _, keys := testKeys()
	data, _ := os.ReadFile(path)
	_, err := verifyBytes(data, keys)
	wantLine(t, err, n+1)

	writeLog(t, path, 1, 0)
	data, _ = os.ReadFile(path)
	if _, err := verifyBytes(data, keys); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if lineType(t, readLines(t, path)[n]) != typeRecovery {
		t.Fatalf("line %d is not the recovery record", n+1)
	}
	side, _ := filepath.Glob(path + ".*.torn")
	if len(side) != 1 {
		t.Fatalf("torn side files: %v", side)
	}
	kept, _ := os.ReadFile(side[0])
	if !bytes.Equal(kept, torn) {
		t.Fatalf("side file holds %q, want the cut bytes", kept)
	}
	if files, _ := RotatedFiles(path); len(files) != 1 {
		t.Fatalf("the torn side file was taken for a rotated file: %v", files)
	}
}

func TestConcurrentRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := New([]Sink{openFile(t, path, 0)}, Options{BatchMax: 32})
	if err != nil {
		t.Fatal(err)
	}
	hk, priv, keys := testKeys()
	l.SetKeys(hk, priv, "k1")
	const workers, each = 16, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				e := sampleEntry(w*each + i)
				e.Hashed = map[string]string{"message": l.HMAC(e.RequestID)}
				errs <- l.Record(context.Background(), e)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	head := l.Head()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	rep, err := verifyBytes(data, keys, VerifyOptions{MinSeq: head.Seq})
	if err != nil {
		t.Fatal(err)
	}
	if rep.LastSeq != head.Seq+1 { // Close adds one final checkpoint
		t.Fatalf("LastSeq %d, head before Close %d", rep.LastSeq, head.Seq)
	}
	seen := map[string]bool{}
	var prevSeq uint64
	for _, line := range readLines(t, path) {
		var v struct {
			Seq       uint64 `json:"seq"`
			Type      string `json:"type"`
			RequestID string `json:"request_id"`
		}
		json.Unmarshal(line, &v)
		if v.Seq <= prevSeq {
			t.Fatalf("seq %d after %d", v.Seq, prevSeq)
		}
		prevSeq = v.Seq
		if v.Type == typeRequest {
			seen[v.RequestID] = true
		}
	}
	if len(seen) != workers*each {
		t.Fatalf("%d distinct requests recorded, want %d (report %+v)", len(seen), workers*each, rep)
	}
}

func TestRecordContextCanceled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	l, err := New([]Sink{openFile(t, path, 0)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// A context already done is refused before anything is queued.
	e := sampleEntry(0)
	e.RequestID = "canceled-marker"
	if err := l.Record(ctx, e); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled Record: %v, want context.Canceled", err)
	}
	if err := l.Record(context.Background(), nil); err == nil {
		t.Fatal("nil entry accepted")
	}
	if err := l.Record(context.Background(), &Entry{Time: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); bytes.Contains(data, []byte("canceled-marker")) || !bytes.Contains(data, []byte(`"time":"1970-01-01T00:00:00Z"`)) {
		t.Fatalf("log holds the canceled entry or lacks the good one:\n%s", data)
	}
}
