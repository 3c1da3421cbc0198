package snapshot

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
)

// memView is a storage.View over a map.
type memView struct{ m map[string][]byte }

func (v memView) Count() int64 { return int64(len(v.m)) }
func (v memView) Close() error { return nil }
func (v memView) Each(_ context.Context, fn func(string, []byte) error) error {
	keys := make([]string, 0, len(v.m))
	for k := range v.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn(k, v.m[k]); err != nil {
			return err
		}
	}
	return nil
}

// testKey is fixed so that the testdata vectors are reproducible.
var testKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x42}, ed25519.SeedSize))

func sample() map[string][]byte {
	return map[string][]byte{
		"core/seal-config":         []byte(`{"type":"shamir","secret_shares":1,"secret_threshold":1}`),
		"core/keyring":             bytes.Repeat([]byte{0xa5}, 90),
		"wallet/accounts/alice/a1": {1, 2, 3, 0, 0xff},
		"wallet/keys/alice/a1":     {},
		"auth/users/alice":         []byte("ciphertext"),
	}
}

func write(t testing.TB, m map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	hdr := Header{Storage: "bolt", Term: 3, Seal: "shamir", CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	if _, err := Write(context.Background(), &buf, hdr, memView{m}, testKey); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

func read(data []byte) (map[string][]byte, *Header, error) {
	got := map[string][]byte{}
	hdr, err := Read(context.Background(), bytes.NewReader(data), Handler{Record: func(k string, v []byte) error {
		got[k] = bytes.Clone(v)
		return nil
	}})
	return got, hdr, err
}

func TestRoundTrip(t *testing.T) {
	m := sample()
	got, hdr, err := read(write(t, m))
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if hdr.Records != int64(len(m)) || hdr.Storage != "bolt" || hdr.Term != 3 || hdr.Seal != "shamir" ||
		!bytes.Equal(hdr.PublicKey, testKey.Public().(ed25519.PublicKey)) {
		t.Fatalf("header = %+v", hdr)
	}
	if fmt.Sprint(got) != fmt.Sprint(m) {
		t.Fatalf("records differ:\n got %v\nwant %v", got, m)
	}
}

func TestEmpty(t *testing.T) {
	if _, hdr, err := read(write(t, nil)); err != nil || hdr.Records != 0 {
		t.Fatalf("empty snapshot: %+v, %v", hdr, err)
	}
}

// TestEveryTruncationRefused: a file cut at any byte is refused.
func TestEveryTruncationRefused(t *testing.T) {
	data := write(t, sample())
	for n := 0; n < len(data); n++ {
		if _, _, err := read(data[:n]); !errors.Is(err, ErrInvalid) {
			t.Fatalf("cut at %d of %d bytes: err = %v, want ErrInvalid", n, len(data), err)
		}
	}
}

// TestEveryByteFlipRefused: flipping any bit of any byte is refused.
func TestEveryByteFlipRefused(t *testing.T) {
	data := write(t, sample())
	for i := range data {
		for _, bit := range []byte{0x01, 0x80} {
			c := bytes.Clone(data)
			c[i] ^= bit
			if _, _, err := read(c); err == nil {
				t.Fatalf("flipping bit %#x of byte %d was not detected", bit, i)
			}
		}
	}
}

func TestTrailingDataRefused(t *testing.T) {
	data := append(write(t, sample()), 0)
	if _, _, err := read(data); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "after the trailer") {
		t.Fatalf("err = %v", err)
	}
}

// TestResignedWithOtherKey: a file rewritten and re-signed by someone else
// verifies on its own, but names another public key, which the restore
// path compares with the vault's (ErrForeign) and, on a new vault, with
// the key restored inside the barrier.
func TestResignedWithOtherKey(t *testing.T) {
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	var buf bytes.Buffer
	if _, err := Write(context.Background(), &buf, Header{Storage: "bolt"}, memView{sample()}, other); err != nil {
		t.Fatal(err)
	}
	_, hdr, err := read(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(hdr.PublicKey, testKey.Public().(ed25519.PublicKey)) {
		t.Fatal("public key not taken from the signer")
	}
}

func TestHandlerErrorsStopTheRead(t *testing.T) {
	stop := errors.New("stop")
	_, err := Read(context.Background(), bytes.NewReader(write(t, sample())), Handler{Header: func(*Header) error { return stop }})
	if !errors.Is(err, stop) {
		t.Fatalf("err = %v", err)
	}
	n := 0
	_, err = Read(context.Background(), bytes.NewReader(write(t, sample())), Handler{Record: func(string, []byte) error {
		n++
		return stop
	}})
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("err = %v after %d records", err, n)
	}
}

func TestErrorsHaveKinds(t *testing.T) {
	_, _, err := read([]byte("garbage"))
	if errkind.Of(err) != errkind.Invalid || errkind.CodeOf(err) != "invalid_snapshot" {
		t.Fatalf("kind %v code %q", errkind.Of(err), errkind.CodeOf(err))
	}
	if errkind.Of(ErrForeign) != errkind.Conflict {
		t.Fatal("ErrForeign is not a conflict")
	}
}

// TestVectors runs every file in testdata: good_* must verify with the
// given number of records, fail_* must be refused with the message noted
// in the table.
func TestVectors(t *testing.T) {
	want := map[string]string{
		"fail_truncated.snap":      "truncated",
		"fail_flipped_byte.snap":   "SHA-256 mismatch",
		"fail_wrong_version.snap":  "format version 2",
		"fail_bad_magic.snap":      "not a Moon Vault snapshot",
		"fail_bad_signature.snap":  "signature does not verify",
		"fail_count_mismatch.snap": "header announces 6 records but the file holds 5",
		"fail_unordered.snap":      "does not sort after",
	}
	files, err := filepath.Glob("testdata/*.snap")
	if err != nil || len(files) == 0 {
		t.Fatalf("no vectors: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, hdr, err := read(data)
			switch {
			case strings.HasPrefix(name, "good_"):
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if hdr.Records != int64(len(sample())) {
					t.Fatalf("records = %d", hdr.Records)
				}
			case strings.HasPrefix(name, "fail_"):
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				if w, ok := want[name]; !ok || !strings.Contains(err.Error(), w) {
					t.Fatalf("err = %q, want it to say %q", err, w)
				}
			default:
				t.Fatal("vector names start with good_ or fail_")
			}
		})
	}
}

// TestWriteVectors regenerates testdata with MOONVAULT_UPDATE_TESTDATA=1.
func TestWriteVectors(t *testing.T) {
	if os.Getenv("MOONVAULT_UPDATE_TESTDATA") != "1" {
		return
	}
	good := write(t, sample())
	vec := map[string][]byte{"good_small.snap": good, "fail_truncated.snap": good[:len(good)-40]}
	flipped := bytes.Clone(good)
	flipped[bytes.Index(good, []byte("ciphertext"))] ^= 1
	vec["fail_flipped_byte.snap"] = flipped
	wrongVer := bytes.Clone(good)
	wrongVer[len(magic)] = 2
	vec["fail_wrong_version.snap"] = wrongVer
	vec["fail_bad_magic.snap"] = append([]byte("MVSNAQ\x00"), good[len(magic):]...)
	badSig := bytes.Clone(good)
	badSig[len(badSig)-5] ^= 1 // inside the base64 signature
	vec["fail_bad_signature.snap"] = badSig
	// A header announcing one record more, digest and signature recomputed.
	vec["fail_count_mismatch.snap"] = forge(t, good, func(h *Header) { h.Records++ }, nil)
	vec["fail_unordered.snap"] = forge(t, good, nil, func(keys []string) { keys[0], keys[1] = keys[1], keys[0] })
	for name, data := range vec {
		if err := os.WriteFile(filepath.Join("testdata", name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// forge rewrites a snapshot with a changed header or record order, signed
// correctly, to test the checks behind the signature.
func forge(t *testing.T, good []byte, hdrFn func(*Header), orderFn func([]string)) []byte {
	t.Helper()
	m, hdr, err := read(good)
	if err != nil {
		t.Fatal(err)
	}
	if hdrFn != nil {
		hdrFn(hdr)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if orderFn != nil {
		orderFn(keys)
	}
	var buf bytes.Buffer
	h := sha256New()
	o := &hashWriter{w: &buf, h: h}
	hj := mustJSON(t, hdr)
	o.write([]byte(magic))
	o.write([]byte{Version})
	o.writeLen(len(hj))
	o.write(hj)
	for _, k := range keys {
		o.write([]byte{tagRecord})
		o.uvarint(uint64(len(k)))
		o.write([]byte(k))
		o.uvarint(uint64(len(m[k])))
		o.write(m[k])
	}
	o.write([]byte{tagEnd})
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	tj := mustJSON(t, sign(sum, testKey))
	o.h = nil
	o.writeLen(len(tj))
	o.write(tj)
	return buf.Bytes()
}

// TestReadReportsSourceErrors: a failure of the reader itself (an upload
// over its limit, a deadline) is returned as such, not as a damaged file.
func TestReadReportsSourceErrors(t *testing.T) {
	boom := errors.New("upload over its limit")
	r := io.MultiReader(bytes.NewReader([]byte(magic+"\x01")), iotest.ErrReader(boom))
	_, err := Read(context.Background(), r, Handler{})
	if !errors.Is(err, boom) || errors.Is(err, ErrInvalid) {
		t.Fatalf("Read = %v; want the source's error, not ErrInvalid", err)
	}
}
