package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// rechain rewrites every line's prev from line `from` (0-based) on so that
// the hash chain is intact again, and replaces each checkpoint from there on
// with an unsigned one: what an insider without the signing key can do.
func rechain(t testing.TB, lines [][]byte, from int) [][]byte {
	t.Helper()
	out := make([][]byte, len(lines))
	var prev [sha256.Size]byte
	for i, l := range lines {
		l = bytes.TrimSuffix(bytes.Clone(l), []byte("\n"))
		if i >= from {
			var h lineHead
			if err := json.Unmarshal(l, &h); err != nil {
				t.Fatal(err)
			}
			if h.Type == typeCheckpoint {
				l = appendCheckpoint(nil, *h.Seq, &prev, "", nil)
			} else if i > 0 {
				old := []byte(`"prev":"` + h.Prev + `"`)
				l = bytes.Replace(l, old, []byte(`"prev":"`+hex.EncodeToString(prev[:])+`"`), 1)
			}
		}
		prev = sha256.Sum256(l)
		out[i] = append(l, '\n')
	}
	return out
}

// forgedLog writes a genuine log and returns its lines, a forged copy (a
// request line edited, the chain recomputed, every later checkpoint made
// unsigned) and the head (seq and hash) a verifier would have kept.
func forgedLog(t testing.TB) (genuine, forged []byte, head Head) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	writeLog(t, path, 12, 0)
	lines := readLines(t, path)
	k := -1
	for i := len(lines) / 2; i < len(lines); i++ {
		if lineType(t, lines[i]) == typeRequest {
			k = i
			break
		}
	}
	if k < 0 {
		t.Fatal("no request line")
	}
	edited := make([][]byte, len(lines))
	copy(edited, lines)
	edited[k] = bytes.Replace(lines[k], []byte(`"subject":"alice"`), []byte(`"subject":"mallory"`), 1)
	if bytes.Equal(edited[k], lines[k]) {
		t.Fatal("edit did not apply")
	}
	f := rechain(t, edited, k)
	last := bytes.TrimSuffix(lines[len(lines)-1], []byte("\n"))
	sum := sha256.Sum256(last)
	genuine = bytes.Join(lines, nil)
	return genuine, bytes.Join(f, nil), Head{Seq: uint64(len(lines)), Hash: hex.EncodeToString(sum[:])}
}

// TestVerifyRejectsForgedLog is the attack of issue 13 item 1: an edited
// request line, the chain recomputed and the later checkpoints replaced by
// unsigned ones must not verify against the vault's key and head.
func TestVerifyRejectsForgedLog(t *testing.T) {
	genuine, forged, head := forgedLog(t)
	_, _, keys := testKeys()
	if _, err := verifyBytes(genuine, keys, VerifyOptions{MinSeq: head.Seq, MinHash: head.Hash}); err != nil {
		t.Fatalf("genuine log: %v", err)
	}
	rep, err := verifyBytes(forged, keys, VerifyOptions{MinSeq: head.Seq})
	if err == nil {
		t.Fatalf("forged log verified: %+v", rep)
	}
	if !errors.Is(err, ErrUnverified) {
		t.Fatalf("forged log: %v, want ErrUnverified", err)
	}
	if rep == nil || len(rep.Unverified) == 0 || !strings.Contains(err.Error(), "no checkpoint signed by a trusted key") {
		t.Fatalf("report must say what is unverified: %v, %+v", err, rep)
	}
	// The head hash anchors the content as well as the length.
	_, err = verifyBytes(forged, keys, VerifyOptions{MinSeq: head.Seq, MinHash: head.Hash})
	var ve *VerifyError
	if !errors.As(err, &ve) || !strings.Contains(ve.Reason, "anchor") {
		t.Fatalf("forged log against the head hash: %v", err)
	}
	// Without a trusted key the log's own keys prove nothing: reported.
	rep, err = verifyBytes(genuine, nil)
	if !errors.Is(err, ErrUnverified) || rep == nil || !rep.KeysFromLog {
		t.Fatalf("keys from the log: %v %+v", err, rep)
	}
}

// TestVerifyStrippedSignatures: with a public key given, a log whose every
// signature (and key announcement) was stripped fails.
func TestVerifyStrippedSignatures(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	writeLog(t, path, 5, 0)
	lines := readLines(t, path)
	var kept [][]byte
	for _, l := range lines {
		if lineType(t, l) == typeStart && bytes.Contains(l, []byte(`"event":"keys"`)) {
			continue
		}
		kept = append(kept, l)
	}
	// Renumber after the dropped line, then rechain from the start.
	for i := range kept {
		var h lineHead
		if err := json.Unmarshal(bytes.TrimSpace(kept[i]), &h); err != nil {
			t.Fatal(err)
		}
		kept[i] = bytes.Replace(kept[i], []byte(`{"seq":`+itoa(*h.Seq)+`,`), []byte(`{"seq":`+itoa(uint64(i+1))+`,`), 1)
	}
	stripped := bytes.Join(rechain(t, kept, 1), nil)
	_, _, keys := testKeys()
	rep, err := verifyBytes(stripped, keys)
	if !errors.Is(err, ErrUnverified) || rep.SignedCheckpoints != 0 {
		t.Fatalf("stripped log: %v %+v", err, rep)
	}
}

// TestVerifyKeyRotation: a key announced in a start line that a trusted key
// signed is trusted from then on; one announced only under its own
// signature is not.
func TestVerifyKeyRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := New([]Sink{openFile(t, path, 0)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	hk, priv, keys := testKeys()
	l.SetKeys(hk, priv, "k1")
	record(t, l, 0)
	priv2 := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	l.SetKeys(hk, priv2, "k2") // announced under k1's signature
	record(t, l, 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	rep, err := verifyBytes(data, keys)
	if err != nil {
		t.Fatalf("rotated key: %v %+v", err, rep)
	}
	// Only k2 trusted: the k1-signed part is not vouched for by any
	// trusted key, but the k2-signed end covers the whole chain.
	only2 := map[string]ed25519.PublicKey{"k2": priv2.Public().(ed25519.PublicKey)}
	if _, err := verifyBytes(data, only2); err != nil {
		t.Fatalf("k2 only: %v", err)
	}
	// A key that appears after a seal (no k1 to vouch for it) is not trusted.
	path2 := filepath.Join(t.TempDir(), "audit.log")
	l, err = New([]Sink{openFile(t, path2, 0)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l.SetKeys(hk, priv, "k1")
	record(t, l, 0)
	l.ClearKeys()
	l.SetKeys(hk, priv2, "k2")
	record(t, l, 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path2)
	rep, err = verifyBytes(data, keys)
	if !errors.Is(err, ErrUnverified) {
		t.Fatalf("self-announced key accepted: %v %+v", err, rep)
	}
	// The seal's "keys_cleared" line was committed under k1 before the key
	// went: everything up to it stays verified.
	lines := readLines(t, path2)
	if rep.CoveredSeq < 2 || !bytes.Contains(lines[rep.CoveredSeq-2], []byte(`"event":"keys_cleared"`)) {
		t.Fatalf("k1 does not cover the seal: covered through seq %d", rep.CoveredSeq)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func record(t testing.TB, l *Log, i int) {
	t.Helper()
	if err := l.Record(context.Background(), sampleEntry(i)); err != nil {
		t.Fatal(err)
	}
}
