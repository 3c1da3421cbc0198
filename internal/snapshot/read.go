package snapshot

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Handler receives what Read parses. Both functions are optional.
type Handler struct {
	// Header is called once the header is read, before any record; an
	// error stops the read and is returned as is.
	Header func(h *Header) error
	// Record is called for each record in order; value is only valid
	// during the call. An error stops the read and is returned as is.
	Record func(key string, value []byte) error
}

// Read parses and verifies a snapshot. It returns the header only when the
// whole file is intact: the right version, every record well-formed and in
// order, the record count, the SHA-256 and the signature all as the file
// claims, and nothing after the trailer. Records are handed to h.Record as
// they stream past, so the caller must stage them and commit only when
// Read returns nil.
//
// When reading r itself fails (an upload over its size limit, a deadline,
// a reset connection), that error is returned, not a verdict on the file.
func Read(ctx context.Context, r io.Reader, h Handler) (*Header, error) {
	src := &sourceReader{r: r}
	in := &hashReader{br: bufio.NewReaderSize(src, 256<<10), h: sha256.New()}
	hdr, err := readAll(ctx, in, h)
	if err != nil && src.err != nil {
		return nil, fmt.Errorf("snapshot: reading it failed: %w", src.err)
	}
	return hdr, err
}

func readAll(ctx context.Context, in *hashReader, h Handler) (*Header, error) {
	hdr, err := readHeader(in)
	if err != nil {
		return nil, err
	}
	if h.Header != nil {
		if err := h.Header(hdr); err != nil {
			return nil, err
		}
	}
	if err := readRecords(ctx, in, hdr, h.Record); err != nil {
		return nil, err
	}
	var sum [sha256.Size]byte
	copy(sum[:], in.h.Sum(nil))
	in.h = nil
	if err := readTrailer(in, hdr, sum); err != nil {
		return nil, err
	}
	return hdr, nil
}

// sourceReader remembers the first error of r other than io.EOF.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && s.err == nil {
		s.err = err
	}
	return n, err
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

func readHeader(in *hashReader) (*Header, error) {
	var m [len(magic) + 1]byte
	if err := in.full(m[:]); err != nil {
		return nil, invalid("not a Moon Vault snapshot (the file is shorter than its magic number)")
	}
	if string(m[:len(magic)]) != magic {
		return nil, invalid("not a Moon Vault snapshot (wrong magic number)")
	}
	if v := m[len(magic)]; v != Version {
		return nil, invalid("snapshot format version %d; this build reads version %d", v, Version)
	}
	raw, err := in.block(maxHeader)
	if err != nil {
		return nil, invalid("header: %v", err)
	}
	var hdr Header
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&hdr); err != nil {
		return nil, invalid("header is not valid JSON of this version: %v", err)
	}
	switch {
	case hdr.Format != Version:
		return nil, invalid("header says format %d, the file's version byte says %d", hdr.Format, Version)
	case hdr.Records < 0:
		return nil, invalid("header announces a negative record count")
	case len(hdr.PublicKey) != ed25519.PublicKeySize:
		return nil, invalid("header has no valid signing public key")
	case hdr.Storage == "":
		return nil, invalid("header does not name the storage type")
	}
	return &hdr, nil
}

func readRecords(ctx context.Context, in *hashReader, hdr *Header, fn func(string, []byte) error) error {
	var n int64
	var prev, key []byte
	var val []byte
	for {
		tag, err := in.byte()
		if err != nil {
			return invalid("truncated: the file ends after %d of %d records", n, hdr.Records)
		}
		if tag == tagEnd {
			break
		}
		if tag != tagRecord {
			return invalid("record %d: unknown tag 0x%02x (damaged file)", n+1, tag)
		}
		if n == hdr.Records {
			return invalid("the file holds more records than the %d its header announces", hdr.Records)
		}
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if key, err = in.field(key, MaxKeyLen); err != nil {
			if errors.Is(err, errCut) {
				return invalid("truncated: the file ends inside record %d of %d", n+1, hdr.Records)
			}
			return invalid("record %d of %d: key: %v", n+1, hdr.Records, err)
		}
		if err := checkKey(key); err != nil {
			return invalid("record %d of %d: %v", n+1, hdr.Records, err)
		}
		if n > 0 && bytes.Compare(key, prev) <= 0 {
			return invalid("record %d of %d: key %q does not sort after %q (records out of order or duplicated)", n+1, hdr.Records, key, prev)
		}
		if val, err = in.field(val, MaxValueLen); err != nil {
			if errors.Is(err, errCut) {
				return invalid("truncated: the file ends inside record %d of %d (%q)", n+1, hdr.Records, key)
			}
			return invalid("record %d of %d (%q): value: %v", n+1, hdr.Records, key, err)
		}
		n++
		if fn != nil {
			if err := fn(string(key), val); err != nil {
				return err
			}
		}
		prev = append(prev[:0], key...)
	}
	if n != hdr.Records {
		return invalid("the header announces %d records but the file holds %d", hdr.Records, n)
	}
	return nil
}

func readTrailer(in *hashReader, hdr *Header, sum [sha256.Size]byte) error {
	raw, err := in.block(maxTrailer)
	if err != nil {
		return invalid("truncated: the trailer (digest and signature) is missing or cut: %v", err)
	}
	var tr Trailer
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&tr); err != nil {
		return invalid("trailer is not valid JSON: %v", err)
	}
	if _, err := in.br.ReadByte(); !errors.Is(err, io.EOF) {
		return invalid("unexpected data after the trailer")
	}
	if subtle.ConstantTimeCompare(tr.SHA256, sum[:]) != 1 {
		return invalid("SHA-256 mismatch: the content was altered or damaged")
	}
	if !ed25519.Verify(hdr.PublicKey, signedMessage(sum[:]), tr.Signature) {
		return invalid("the signature does not verify with the snapshot's public key: the file was altered")
	}
	return nil
}

func checkKey(k []byte) error {
	if len(k) == 0 {
		return errors.New("empty key")
	}
	for i, c := range k {
		if c < 0x20 || c > 0x7e {
			return fmt.Errorf("key has a non-printable byte 0x%02x at offset %d", c, i)
		}
	}
	return nil
}

// errCut is the end of the file inside a record.
var errCut = errors.New("the file ends inside a record")

// hashReader reads from br and hashes what it consumes (until h is nil).
type hashReader struct {
	br *bufio.Reader
	h  hash.Hash
}

func (in *hashReader) full(p []byte) error {
	if _, err := io.ReadFull(in.br, p); err != nil {
		return err
	}
	if in.h != nil {
		in.h.Write(p)
	}
	return nil
}

func (in *hashReader) byte() (byte, error) {
	c, err := in.br.ReadByte()
	if err == nil && in.h != nil {
		in.h.Write([]byte{c})
	}
	return c, err
}

func (in *hashReader) uvarint() (uint64, error) {
	var x uint64
	var s uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		c, err := in.byte()
		if err != nil {
			return 0, errCut
		}
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, errors.New("length overflows")
			}
			return x | uint64(c)<<s, nil
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, errors.New("length overflows")
}

// field reads a uvarint length (at most limit) and that many bytes into buf.
func (in *hashReader) field(buf []byte, limit uint64) ([]byte, error) {
	n, err := in.uvarint()
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("length %d is over the %d limit", n, limit)
	}
	size := int(n) // #nosec G115 -- n <= limit, at most MaxValueLen (64 MiB)
	if cap(buf) < size {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	if err := in.full(buf); err != nil {
		return nil, errCut
	}
	return buf, nil
}

// block reads a uint32 length (at most limit) and that many bytes.
func (in *hashReader) block(limit uint32) ([]byte, error) {
	var b [4]byte
	if err := in.full(b[:]); err != nil {
		return nil, errors.New("the file ends before it")
	}
	n := binary.BigEndian.Uint32(b[:])
	if n > limit {
		return nil, fmt.Errorf("length %d is over the %d limit", n, limit)
	}
	p := make([]byte, n)
	if err := in.full(p); err != nil {
		return nil, errors.New("the file ends inside it")
	}
	return p, nil
}
