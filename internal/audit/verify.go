package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/moonvault/moonvault/internal/errkind"
)

// maxLineBytes bounds one line when verifying untrusted input.
const maxLineBytes = 1 << 20

// VerifyError names the first line that fails verification.
type VerifyError struct {
	File   string // set by VerifyFiles
	Line   int    // 1-based line number within the file
	Reason string
}

// Kind makes a verification failure an integrity error.
func (e *VerifyError) Kind() errkind.Kind { return errkind.Integrity }

func (e *VerifyError) Error() string {
	if e.File != "" {
		return fmt.Sprintf("audit verify: %s: line %d: %s", e.File, e.Line, e.Reason)
	}
	return fmt.Sprintf("audit verify: line %d: %s", e.Line, e.Reason)
}

// VerifyOptions add what the file alone cannot prove.
type VerifyOptions struct {
	// MinSeq and MinHash are an external anchor, the head the server
	// reported (GET /v1/sys/audit/public-key: head_seq, head_hash) or one
	// an operator kept: the log must reach seq MinSeq, and the line with
	// that seq must hash to MinHash (hex SHA-256). A copy cut exactly after
	// a checkpoint is otherwise indistinguishable from a log that ended
	// there, and a rewritten copy could end anywhere.
	MinSeq  uint64
	MinHash string
	// AllowMidChainStart accepts a first line that continues a chain
	// (prev not all zeros), for a rotated file whose predecessors were
	// removed. The report's FirstSeq and FirstPrev say where it starts.
	AllowMidChainStart bool
}

// ErrUnverified is wrapped by the error Verify returns when the log is
// intact as far as it can be checked but some of it is not vouched for by
// a trusted signature (see Report.Unverified).
var ErrUnverified = errkind.New(errkind.Integrity, "audit_unverified", "audit log not fully verified")

// UnverifiedError lists what a verification could not prove.
type UnverifiedError struct{ Unverified []string }

func (e *UnverifiedError) Error() string {
	return "audit verify: not verified: " + strings.Join(e.Unverified, "; ")
}

// Unwrap makes errors.Is(err, ErrUnverified) hold.
func (e *UnverifiedError) Unwrap() error { return ErrUnverified }

// Report summarises a verified log.
type Report struct {
	Files               int
	Lines               int
	Checkpoints         int
	SignedCheckpoints   int
	UnsignedCheckpoints int // chain links written while sealed
	// LinesAfterLastSigned counts lines after the last checkpoint signed by
	// a trusted key: covered only by the chain (written while sealed, or
	// forged).
	LinesAfterLastSigned int
	// CoveredSeq is the seq of the last checkpoint signed by a trusted key:
	// every line up to it is vouched for by that signature.
	CoveredSeq          uint64
	FirstSeq, LastSeq   uint64
	FirstPrev, LastHash string
	// KeysFromLog is true when no keys were given and the public keys
	// published in the log's own start lines were used. That proves
	// integrity only against an editor who lacks the signing key; an
	// attacker who rewrites the whole file can publish his own key.
	KeysFromLog bool
	// Anchored is true when MinSeq/MinHash were given and matched.
	Anchored bool
	// Unverified says, in words, what the verification could not prove.
	// Verify returns an *UnverifiedError exactly when it is not empty.
	Unverified []string `json:",omitempty"`
}

// Verify checks one log file: the chain of seq and prev, every checkpoint
// signature, that the file ends with a checkpoint, and the anchor. A
// tampered log fails with a *VerifyError naming the first bad line and a
// nil report.
//
// Trust: keys are the keys the verifier trusts; a key announced in a start
// line becomes trusted once a checkpoint signed by a trusted key covers
// that line (key rotation). When keys is empty the keys the log publishes
// itself are used, which the report says. Every line must be covered by a
// checkpoint signed by a trusted key. When the log is intact but some of it
// is not so covered (written while sealed, signatures stripped, keys only
// from the log), Verify returns the report and an *UnverifiedError that
// wraps ErrUnverified and says what is not verified.
func Verify(r io.Reader, keys map[string]ed25519.PublicKey, opts ...VerifyOptions) (*Report, error) {
	v := newVerifier(keys, opts)
	if err := v.file(r); err != nil {
		return nil, err
	}
	return v.finish()
}

// VerifyFiles checks a rotated set, oldest first (see RotatedFiles): each
// file must end with a checkpoint and each next file must continue the
// chain, so a missing, reordered or cut file is reported.
func VerifyFiles(paths []string, keys map[string]ed25519.PublicKey, opts ...VerifyOptions) (*Report, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("audit verify: no files")
	}
	v := newVerifier(keys, opts)
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("audit verify: %w", err)
		}
		err = v.file(f)
		f.Close()
		var ve *VerifyError
		if errors.As(err, &ve) {
			ve.File = p
		}
		if err != nil {
			return nil, err
		}
	}
	return v.finish()
}

type verifier struct {
	// trusted holds the keys given by the caller and the keys announced in
	// start lines that a trusted checkpoint has since covered.
	trusted map[string]ed25519.PublicKey
	logKeys map[string]ed25519.PublicKey // every key announced in the log
	// announced lists keys announced since the last trusted checkpoint.
	announced []string
	fromLog   bool
	opts      VerifyOptions
	rep       Report
	started   bool
	seq       uint64
	prev      [sha256.Size]byte
	line      int // within the current file
	anchorOK  bool
}

func newVerifier(keys map[string]ed25519.PublicKey, opts []VerifyOptions) *verifier {
	v := &verifier{trusted: map[string]ed25519.PublicKey{}, logKeys: map[string]ed25519.PublicKey{}}
	for id, k := range keys {
		v.trusted[id] = k
	}
	if len(opts) > 0 {
		v.opts = opts[0]
	}
	v.fromLog = len(keys) == 0
	v.rep.KeysFromLog = v.fromLog
	return v
}

func (v *verifier) fail(line int, format string, args ...any) error {
	return &VerifyError{Line: line, Reason: fmt.Sprintf(format, args...)}
}

// file verifies one file, continuing the chain from the previous one.
func (v *verifier) file(r io.Reader) error {
	v.rep.Files++
	v.line = 0
	lastCP := 0
	br := bufio.NewReaderSize(r, 64<<10)
	var acc []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(acc)+len(chunk) > maxLineBytes {
				return v.fail(v.line+1, "line longer than %d bytes", maxLineBytes)
			}
			acc = append(acc, chunk...)
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("audit verify: read: %w", err)
		}
		line := chunk
		if len(acc) > 0 {
			line = append(acc, chunk...)
			acc = acc[:0]
		}
		if len(line) > maxLineBytes {
			return v.fail(v.line+1, "line longer than %d bytes", maxLineBytes)
		}
		if errors.Is(err, io.EOF) {
			if len(line) > 0 { // unterminated: a torn write
				v.line++
			}
			break
		}
		v.line++
		isCP, lerr := v.check(line[:len(line)-1])
		if lerr != nil {
			return lerr
		}
		if isCP {
			lastCP = v.line
		}
	}
	if v.line == 0 {
		return v.fail(1, "empty log")
	}
	if lastCP != v.line {
		return v.fail(lastCP+1, "log does not end with a checkpoint: lines %d-%d are not covered (truncated copy or torn tail)", lastCP+1, v.line)
	}
	return nil
}

// check verifies one line (without its newline) against the chain.
func (v *verifier) check(line []byte) (bool, error) {
	n := v.line
	var h lineHead
	if err := json.Unmarshal(line, &h); err != nil {
		return false, v.fail(n, "not a JSON object")
	}
	if h.Seq == nil {
		return false, v.fail(n, "missing seq")
	}
	prev, err := hex.DecodeString(h.Prev)
	if err != nil || len(prev) != sha256.Size {
		return false, v.fail(n, "prev is not a hex SHA-256")
	}
	seq := *h.Seq
	if !v.started {
		v.started = true
		if !bytes.Equal(prev, genesisPrev[:]) {
			if !v.opts.AllowMidChainStart {
				return false, v.fail(n, "first line does not start a chain (prev is not zero): earlier lines or files are missing")
			}
		} else if seq != 1 {
			return false, v.fail(n, "first line has seq %d, expected 1", seq)
		}
		v.rep.FirstSeq, v.rep.FirstPrev = seq, h.Prev
		if v.opts.MinSeq > 0 && v.opts.MinSeq+1 == seq {
			if err := v.anchor(h.Prev); err != nil {
				return false, v.fail(n, "%s", err)
			}
		}
	} else {
		// Seq first, so a deleted or reordered line is named itself; then
		// the link, which names the altered line before it.
		if seq != v.seq+1 {
			return false, v.fail(n, "seq %d, expected %d: a line is missing or out of order", seq, v.seq+1)
		}
		if !bytes.Equal(prev, v.prev[:]) {
			if n == 1 {
				return false, v.fail(n, "does not continue the previous file's chain: a file is missing or altered")
			}
			return false, v.fail(n-1, "line was altered: its hash does not match the prev of line %d", n)
		}
	}
	isCP := false
	switch h.Type {
	case typeRequest, typeRecovery:
	case typeStart:
		if err := v.start(&h); err != nil {
			return false, v.fail(n, "%s", err)
		}
	case typeCheckpoint:
		if err := v.checkpoint(line, seq, &h); err != nil {
			return false, v.fail(n, "%s", err)
		}
		isCP = true
	default:
		return false, v.fail(n, "unknown type %q", h.Type)
	}
	v.seq, v.prev = seq, sha256.Sum256(line)
	if v.opts.MinSeq > 0 && seq == v.opts.MinSeq {
		if err := v.anchor(hex.EncodeToString(v.prev[:])); err != nil {
			return false, v.fail(n, "%s", err)
		}
	}
	v.rep.Lines++
	v.rep.LinesAfterLastSigned++
	v.rep.LastSeq = seq
	return isCP, nil
}

// anchor compares the hash of the line at MinSeq with MinHash.
func (v *verifier) anchor(hash string) error {
	if v.opts.MinHash != "" && !strings.EqualFold(hash, v.opts.MinHash) {
		return fmt.Errorf("line with seq %d does not match the anchor (hash %s, anchor %s): the log was rewritten", v.opts.MinSeq, hash, v.opts.MinHash)
	}
	v.anchorOK = true
	return nil
}

func (v *verifier) start(h *lineHead) error {
	if h.Pub == "" {
		return nil
	}
	pub, err := base64.StdEncoding.DecodeString(h.Pub)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("start line pub is not an Ed25519 public key")
	}
	if old, ok := v.logKeys[h.KeyID]; ok && !bytes.Equal(old, pub) {
		return fmt.Errorf("start line reuses key id %q for a different key", h.KeyID)
	}
	if old, ok := v.trusted[h.KeyID]; ok && !bytes.Equal(old, pub) {
		return fmt.Errorf("start line announces key id %q with a key other than the trusted one", h.KeyID)
	}
	v.logKeys[h.KeyID] = pub
	if v.fromLog {
		v.trusted[h.KeyID] = pub
	} else {
		v.announced = append(v.announced, h.KeyID)
	}
	return nil
}

// key returns the public key for a checkpoint's key id and whether it is
// trusted. A trusted key given without an id ("") stands for any id whose
// signature it verifies.
func (v *verifier) key(id string, msg, sig []byte) (ed25519.PublicKey, bool, error) {
	if pub, ok := v.trusted[id]; ok {
		return pub, true, nil
	}
	if pub, ok := v.trusted[""]; ok && ed25519.Verify(pub, msg, sig) {
		return pub, true, nil
	}
	if pub, ok := v.logKeys[id]; ok {
		return pub, false, nil
	}
	return nil, false, fmt.Errorf("checkpoint signed with unknown key id %q", id)
}

func (v *verifier) checkpoint(line []byte, seq uint64, h *lineHead) error {
	if h.Sig == nil {
		return fmt.Errorf("checkpoint without sig")
	}
	sig, err := base64.StdEncoding.DecodeString(*h.Sig)
	if err != nil {
		return fmt.Errorf("checkpoint sig is not base64")
	}
	// A checkpoint carries nothing else: insist on the exact bytes we
	// write, so that not even its formatting can be changed unnoticed.
	if !bytes.Equal(line, appendCheckpoint(nil, seq, &v.prev, h.KeyID, sig)) {
		return fmt.Errorf("checkpoint is not in canonical form")
	}
	v.rep.Checkpoints++
	if len(sig) == 0 && h.KeyID == "" {
		v.rep.UnsignedCheckpoints++
		return nil
	}
	msg := checkpointMessage(seq, &v.prev)
	pub, trusted, err := v.key(h.KeyID, msg, sig)
	if err != nil {
		return err
	}
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, msg, sig) {
		return fmt.Errorf("checkpoint signature does not verify with key %q", h.KeyID)
	}
	v.rep.SignedCheckpoints++
	if !trusted {
		// Signed by a key the log announced but no trusted key vouched
		// for: it covers nothing (a forger can announce his own key).
		return nil
	}
	// This signature covers every line before it, including the start
	// lines that announced keys since the last one: trust those keys.
	for _, id := range v.announced {
		if _, ok := v.trusted[id]; !ok {
			v.trusted[id] = v.logKeys[id]
		}
	}
	v.announced = v.announced[:0]
	v.rep.CoveredSeq = seq
	v.rep.LinesAfterLastSigned = -1 // the checkpoint line itself is counted next
	return nil
}

func (v *verifier) finish() (*Report, error) {
	if v.rep.LastSeq < v.opts.MinSeq {
		return nil, &VerifyError{Line: v.line + 1, Reason: fmt.Sprintf(
			"log ends at seq %d but the anchor says at least %d: truncated at a batch boundary", v.rep.LastSeq, v.opts.MinSeq)}
	}
	v.rep.LastHash = hex.EncodeToString(v.prev[:])
	rep := v.rep
	if v.opts.MinSeq > 0 {
		if v.anchorOK {
			rep.Anchored = v.opts.MinHash != ""
		} else {
			rep.Unverified = append(rep.Unverified, fmt.Sprintf(
				"the anchor (seq %d) lies before the first line given (seq %d): its hash could not be compared", v.opts.MinSeq, rep.FirstSeq))
		}
	}
	if rep.CoveredSeq < rep.LastSeq {
		first := max(rep.CoveredSeq+1, rep.FirstSeq)
		if rep.CoveredSeq == 0 {
			rep.Unverified = append(rep.Unverified, fmt.Sprintf(
				"no checkpoint signed by a trusted key: none of lines seq %d-%d is vouched for (signatures stripped, or written only while sealed)", first, rep.LastSeq))
		} else {
			rep.Unverified = append(rep.Unverified, fmt.Sprintf(
				"lines seq %d-%d are covered by no checkpoint signed by a trusted key (written while sealed, or forged)", first, rep.LastSeq))
		}
	}
	if rep.KeysFromLog {
		rep.Unverified = append(rep.Unverified,
			"no trusted key was given: signatures were checked against keys the log publishes itself, which a forger can replace (give the vault's audit public key)")
	}
	if len(rep.Unverified) > 0 {
		return &rep, &UnverifiedError{Unverified: rep.Unverified}
	}
	return &rep, nil
}
