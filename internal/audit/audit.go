// Package audit is the tamper-evident audit log: every API request is one
// JSON line in a SHA-256 hash chain, written by group commit to one or more
// sinks, each batch closed by an Ed25519-signed checkpoint. It fails closed:
// Record returns ErrUnavailable when no sink could make the line durable,
// and the caller must then refuse the request (as Vault's audit devices do).
//
// What verification proves, honestly: editing, deleting, inserting or
// reordering any line breaks the chain at that line; a copy cut anywhere but
// exactly after a checkpoint does not end with a checkpoint and fails. Every
// line must be covered by a checkpoint signed by a key the verifier trusts
// (given to Verify, or announced in a start line such a checkpoint covers):
// a forger who recomputes the chain cannot sign, so what he rewrote is
// reported unverified. A cut exactly at a batch boundary, or a rewrite of
// the tail, is detected only against an external anchor (VerifyOptions
// MinSeq and MinHash, from Log.Head on the live server or a value an
// operator kept). Keys read from the log's own start lines are a
// convenience, not a trust anchor, and are reported as such. Lines written
// while sealed are chained and closed by unsigned checkpoints; the next
// signed checkpoint covers them, since it signs the running hash, and a log
// that ends sealed has an unverified tail.
package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"

	"github.com/moonvault/moonvault/internal/secret"
)

var (
	// ErrUnavailable means no sink recorded the entry; the HTTP layer answers
	// 503 audit_unavailable and must not report the operation as done.
	ErrUnavailable = errkind.New(errkind.Unavailable, "audit_unavailable", "the request could not be audited and was refused")
	// ErrClosed is returned (wrapped with ErrUnavailable) after Close.
	ErrClosed = errkind.New(errkind.Unavailable, "audit_unavailable", "audit log closed")
)

// hmacUnavailable stands in for an HMAC while the vault is sealed.
const hmacUnavailable = "hmac-sha256:unavailable"

// maxBacklog bounds what a failing sink keeps to replay when it heals.
const maxBacklog = 64 << 20

// Options tune group commit.
type Options struct {
	// BatchMax is the most request lines in one batch (default 256).
	BatchMax int
	// FlushInterval spaces commits under concurrency: when the previous
	// batch held more than one line, the next is committed no sooner than
	// FlushInterval after the previous one started. Larger batches share
	// one checkpoint signature and one durable write; 0 commits as soon as
	// the writer is free.
	FlushInterval time.Duration
	// CountCallers says the callers announce themselves: each calls Enter
	// when it starts (the server: a request) and Leave when it is done
	// (its response written). A batch waiting out FlushInterval is then
	// committed at once when it holds a line of every caller in flight:
	// no one else can join it, and waiting on would only idle the CPU (a
	// lone request never waits). Under load the callers whose lines were
	// just committed are still writing their responses, so batches keep
	// growing until the interval ends: measured on 2 cores at 64
	// connections, counting callers out only when their line was committed
	// made batches of 5 lines instead of 25, and cost 40% more CPU per
	// request.
	CountCallers bool
	// Logger receives sink failures; never entry content. Default: discard.
	Logger *slog.Logger
}

// Stats are counters for metrics.
type Stats struct {
	Lines, Batches, SinkFailures uint64
}

type pending struct {
	typ    string
	body   []byte
	pooled *[]byte    // body's pool buffer, returned once copied
	done   chan error // nil for internal lines that nobody waits on
}

type sinkState struct {
	sink    Sink
	backlog []byte // batches written elsewhere but not yet to this sink
	failing bool
	err     error
}

type keys struct {
	hmacKey secret.Bytes
	signer  ed25519.PrivateKey
	pub     ed25519.PublicKey
	id      string
}

// Log is the audit log. Its methods are safe for concurrent use.
type Log struct {
	opts   Options
	log    *slog.Logger
	sinks  []*sinkState
	queue  chan pending
	quit   chan struct{}
	done   chan struct{} // closed when the writer has exited
	closeO sync.Once

	keyMu sync.RWMutex
	keys  *keys

	// Chain state, owned by the writer goroutine (and New before it starts).
	seq  uint64
	prev [sha256.Size]byte
	buf  []byte

	lines, batches, sinkFailures atomic.Uint64
	// callers counts the callers in flight (Enter, Leave).
	callers atomic.Int64
	head    atomic.Pointer[Head]
}

// Head is the last durable line of the chain: an anchor for VerifyOptions.
type Head struct {
	Seq  uint64
	Hash string // hex SHA-256 of the line
}

// New opens the log on the given sinks. File sinks continue the chain from
// their tail; a torn tail left by a crash is cut back to the last checkpoint
// and the cut is recorded as a "recovery" line. The log then writes a
// "start" line and a checkpoint; if no sink accepts them, New fails with an
// error wrapping ErrUnavailable. The log owns the sinks from then on: Close
// (or a failed New) closes those that implement io.Closer.
func New(sinks []Sink, opts Options) (*Log, error) {
	if len(sinks) == 0 {
		return nil, fmt.Errorf("audit: at least one sink is required")
	}
	if opts.BatchMax <= 0 {
		opts.BatchMax = 256
	}
	if opts.FlushInterval < 0 {
		opts.FlushInterval = 0
	}
	l := &Log{
		opts:  opts,
		log:   opts.Logger,
		queue: make(chan pending, 4*opts.BatchMax),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	if l.log == nil {
		l.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	first, err := l.recover(sinks)
	if err != nil {
		closeSinks(sinks)
		return nil, err
	}
	start, _ := json.Marshal(startBody{Time: time.Now().UTC(), Event: "open", Version: formatVersion})
	first = append(first, pending{typ: typeStart, body: start})
	if err := l.commit(first); err != nil {
		closeSinks(sinks)
		return nil, err
	}
	go l.writer()
	return l, nil
}

// recover reads the tail of every file sink and sets the chain state to the
// most advanced one. It returns the recovery lines to write first.
func (l *Log) recover(sinks []Sink) ([]pending, error) {
	var lines []pending
	states := make([]tailState, len(sinks))
	for i, s := range sinks {
		l.sinks = append(l.sinks, &sinkState{sink: s})
		t, ok := s.(interface{ recoverTail() (tailState, error) })
		if !ok {
			continue
		}
		st, err := t.recoverTail()
		if err != nil {
			return nil, err
		}
		states[i] = st
		if st.found && st.seq > l.seq {
			l.seq, l.prev = st.seq, st.hash
		}
	}
	for i, st := range states {
		if st.found && (st.seq != l.seq || st.hash != l.prev) {
			l.log.Warn("audit sink is behind the others; its copy of the chain has a gap",
				"sink", sinks[i].Name(), "sink_seq", st.seq, "seq", l.seq)
		}
		if st.truncated > 0 {
			l.log.Warn("audit sink had a torn tail; cut back to the last checkpoint",
				"sink", sinks[i].Name(), "bytes", st.truncated, "kept_in", st.tornFile)
			body, _ := json.Marshal(recoveryBody{Time: time.Now().UTC(), Sink: sinks[i].Name(),
				ResumedSeq: st.seq, TruncatedBytes: st.truncated, TornFile: st.tornFile})
			lines = append(lines, pending{typ: typeRecovery, body: body})
		}
	}
	return lines, nil
}

// Record appends e and returns once the line (and the checkpoint closing its
// batch) is durable on at least one sink. If none succeeded it returns an
// error wrapping ErrUnavailable. A context already done is refused before
// anything is queued; if ctx ends while waiting, Record returns ctx's error
// and the line may still be recorded (over-recording is the safe side).
func (l *Log) Record(ctx context.Context, e *Entry) error {
	if e == nil {
		return fmt.Errorf("audit: nil entry")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	ec := *e
	if ec.Time.IsZero() {
		ec.Time = time.Now()
	}
	ec.Time = ec.Time.UTC()
	bp := bodyPool.Get().(*[]byte)
	*bp = appendEntry((*bp)[:0], &ec)
	done := donePool.Get().(chan error)
	p := pending{typ: typeRequest, body: *bp, pooled: bp, done: done}
	select {
	case l.queue <- p:
	case <-l.quit:
		bodyPool.Put(bp)
		donePool.Put(done)
		return fmt.Errorf("%w: %w", ErrUnavailable, ErrClosed)
	case <-ctx.Done():
		bodyPool.Put(bp)
		donePool.Put(done)
		return fmt.Errorf("audit: %w", ctx.Err())
	}
	select {
	case err := <-done:
		donePool.Put(done) // drained: safe to reuse
		return err
	case <-l.done:
		select {
		case err := <-done:
			donePool.Put(done)
			return err
		default:
			return fmt.Errorf("%w: %w", ErrUnavailable, ErrClosed)
		}
	case <-ctx.Done():
		return fmt.Errorf("audit: %w", ctx.Err())
	}
}

// Enter counts a caller in flight (Options.CountCallers); it must Leave.
func (l *Log) Enter() { l.callers.Add(1) }

// Leave uncounts a caller that Entered, once it records nothing more.
func (l *Log) Leave() { l.callers.Add(-1) }

// Pools keep Record allocation-light: the encoded body goes back once the
// writer has copied it into its batch, the done channel once drained.
var (
	bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}
	donePool = sync.Pool{New: func() any { return make(chan error, 1) }}
)

// SetKeys installs the HMAC key and checkpoint signing key after unseal.
// The log keeps its own copies; ClearKeys zeroizes them. A "start" line
// announces the public key. When a different signing key is already
// installed, the announcement is committed under the old key's signature
// first, so that a verifier who trusts the old key comes to trust the new
// one (a key announced under its own signature only vouches for itself).
func (l *Log) SetKeys(hmacKey secret.Bytes, signer ed25519.PrivateKey, keyID string) {
	k := &keys{hmacKey: hmacKey.Clone(), id: keyID}
	if len(signer) == ed25519.PrivateKeySize {
		k.signer = ed25519.PrivateKey(secret.Bytes(signer).Clone())
		k.pub = k.signer.Public().(ed25519.PublicKey)
	} else {
		k.id = ""
	}
	body, _ := json.Marshal(startBody{Time: time.Now().UTC(), Event: "keys", Version: formatVersion,
		KeyID: k.id, Pub: base64.StdEncoding.EncodeToString(k.pub)})
	l.keyMu.RLock()
	rotating := l.keys != nil && l.keys.signer != nil && k.pub != nil && !l.keys.pub.Equal(k.pub)
	l.keyMu.RUnlock()
	announced := rotating && l.commitInternal(pending{typ: typeStart, body: body}) == nil
	l.keyMu.Lock()
	old := l.keys
	l.keys = k
	l.keyMu.Unlock()
	old.destroy()
	if !announced {
		l.enqueueInternal(pending{typ: typeStart, body: body})
	}
}

// ClearKeys zeroizes the keys (on seal). A "keys_cleared" line is first
// committed under the key being cleared, so the log up to the seal is
// signed; afterwards the log keeps recording with unsigned checkpoints and
// HMAC values of "hmac-sha256:unavailable".
func (l *Log) ClearKeys() {
	l.keyMu.RLock()
	had := l.keys != nil
	l.keyMu.RUnlock()
	if !had {
		return
	}
	body, _ := json.Marshal(startBody{Time: time.Now().UTC(), Event: "keys_cleared", Version: formatVersion})
	if err := l.commitInternal(pending{typ: typeStart, body: body}); err != nil && !errors.Is(err, ErrClosed) {
		l.log.Warn("audit: could not record the key removal before clearing the keys", "err", err)
	}
	l.keyMu.Lock()
	old := l.keys
	l.keys = nil
	l.keyMu.Unlock()
	old.destroy()
}

// commitInternal queues an internal line and waits until it is durable.
func (l *Log) commitInternal(p pending) error {
	p.done = make(chan error, 1)
	select {
	case l.queue <- p:
	case <-l.quit:
		return ErrClosed
	}
	select {
	case err := <-p.done:
		return err
	case <-l.done:
		select {
		case err := <-p.done:
			return err
		default:
			return ErrClosed
		}
	}
}

func (k *keys) destroy() {
	if k == nil {
		return
	}
	k.hmacKey.Destroy()
	secret.Wipe(k.signer)
}

func (l *Log) enqueueInternal(p pending) {
	select {
	case l.queue <- p:
	case <-l.quit:
	}
}

// HMAC returns "hmac-sha256:" + hex(HMAC-SHA256(auditKey, value)) (RFC
// 2104), so an operator can find a secret's records by hashing it the same
// way; "hmac-sha256:unavailable" while sealed.
func (l *Log) HMAC(value string) string {
	l.keyMu.RLock()
	defer l.keyMu.RUnlock()
	if l.keys == nil || len(l.keys.hmacKey) == 0 {
		return hmacUnavailable
	}
	m := hmac.New(sha256.New, l.keys.hmacKey)
	m.Write([]byte(value))
	var sum [sha256.Size]byte
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(sum[:0]))
}

// PublicKey returns the checkpoint key id and public key, or "" and nil
// while no key is set.
func (l *Log) PublicKey() (string, ed25519.PublicKey) {
	l.keyMu.RLock()
	defer l.keyMu.RUnlock()
	if l.keys == nil || l.keys.pub == nil {
		return "", nil
	}
	return l.keys.id, append(ed25519.PublicKey(nil), l.keys.pub...)
}

// Head returns the newest durable position of the chain. An operator (or
// the CLI through the server) keeps it to detect a truncation at a batch
// boundary with VerifyOptions.MinSeq.
func (l *Log) Head() Head {
	if h := l.head.Load(); h != nil {
		return *h
	}
	return Head{}
}

// Stats returns counters since New.
func (l *Log) Stats() Stats {
	return Stats{Lines: l.lines.Load(), Batches: l.batches.Load(), SinkFailures: l.sinkFailures.Load()}
}

// Close flushes queued entries, writes a final checkpoint, and closes the
// sinks that can be closed. Record fails with ErrUnavailable afterwards.
func (l *Log) Close() error {
	var err error
	l.closeO.Do(func() {
		close(l.quit)
		<-l.done
		err = l.commit(nil)
		var sinks []Sink
		for _, s := range l.sinks {
			sinks = append(sinks, s.sink)
		}
		if cerr := closeSinks(sinks); err == nil {
			err = cerr
		}
	})
	return err
}

func closeSinks(sinks []Sink) error {
	var errs []error
	for _, s := range sinks {
		if c, ok := s.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}
