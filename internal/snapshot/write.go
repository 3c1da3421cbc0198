package snapshot

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/moonvault/moonvault/internal/storage"
)

// Write streams view as a snapshot to w, signed with key. It fills in
// hdr.Format, hdr.Records and hdr.PublicKey, and returns the header
// written. The view is read once, in key order; nothing is decrypted.
func Write(ctx context.Context, w io.Writer, hdr Header, view storage.View, key ed25519.PrivateKey) (Header, error) {
	if len(key) != ed25519.PrivateKeySize {
		return hdr, errors.New("snapshot: signing key missing")
	}
	hdr.Format = Version
	hdr.Records = view.Count()
	hdr.PublicKey = key.Public().(ed25519.PublicKey)
	hj, err := json.Marshal(hdr)
	if err != nil {
		return hdr, err
	}
	h := sha256.New()
	bw := bufio.NewWriterSize(w, 256<<10)
	out := &hashWriter{w: bw, h: h}
	out.write([]byte(magic))
	out.write([]byte{Version})
	out.writeLen(len(hj))
	out.write(hj)
	var n int64
	var prev string
	err = view.Each(ctx, func(k string, v []byte) error {
		if n > 0 && k <= prev {
			return fmt.Errorf("snapshot: storage returned keys out of order (%q after %q)", k, prev)
		}
		if len(v) > MaxValueLen {
			return fmt.Errorf("snapshot: value at %q is %d bytes, over the %d limit", k, len(v), MaxValueLen)
		}
		prev = k
		n++
		out.write([]byte{tagRecord})
		out.uvarint(uint64(len(k)))
		out.write([]byte(k))
		out.uvarint(uint64(len(v)))
		out.write(v)
		return out.err
	})
	if err != nil {
		return hdr, err
	}
	if n != hdr.Records {
		return hdr, fmt.Errorf("snapshot: the view counted %d records but held %d", hdr.Records, n)
	}
	out.write([]byte{tagEnd})
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	tj, err := json.Marshal(sign(sum, key))
	if err != nil {
		return hdr, err
	}
	out.h = nil // the trailer is not part of the digest
	out.writeLen(len(tj))
	out.write(tj)
	if out.err != nil {
		return hdr, out.err
	}
	return hdr, bw.Flush()
}

// hashWriter writes to w and h, keeping the first error.
type hashWriter struct {
	w   io.Writer
	h   hash.Hash
	err error
	buf [binary.MaxVarintLen64]byte
}

func (o *hashWriter) write(p []byte) {
	if o.err != nil {
		return
	}
	if o.h != nil {
		o.h.Write(p)
	}
	_, o.err = o.w.Write(p)
}

func (o *hashWriter) uvarint(x uint64) {
	n := binary.PutUvarint(o.buf[:], x)
	o.write(o.buf[:n])
}

func (o *hashWriter) writeLen(n int) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(n)) // #nosec G115 -- header and trailer are a few hundred bytes
	o.write(b[:])
}
