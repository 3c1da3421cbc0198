package sealwrap

import (
	"errors"
	"fmt"
)

// Envelope layout (all values stored under a seal-wrapped path):
//
//	magic "MVSW" | version 0x01 | flags | key-id length (1 byte) | key id | payload
//
// flags bit 0 set: payload is the wrapper's ciphertext of the value, with
// AAD = aadPrefix || header || path. Clear: payload is the value itself
// and the envelope records that it is NOT wrapped (key id empty).
const (
	magic       = "MVSW"
	version     = 0x01
	flagWrapped = 0x01
	headerFixed = len(magic) + 3
	aadPrefix   = "moonvault seal wrap\x00"
)

type envelope struct {
	wrapped bool
	keyID   string
	header  []byte // magic .. key id, authenticated with the path
	payload []byte
}

func encodeHeader(wrapped bool, keyID string) ([]byte, error) {
	if len(keyID) > 255 {
		return nil, fmt.Errorf("sealwrap: key id longer than 255 bytes")
	}
	var flags byte
	if wrapped {
		flags = flagWrapped
	}
	h := make([]byte, 0, headerFixed+len(keyID))
	h = append(h, magic...)
	h = append(h, version, flags, byte(len(keyID))) // #nosec G115 -- len(keyID) <= 255, checked above
	return append(h, keyID...), nil
}

var errMalformed = errors.New("malformed envelope")

func parse(b []byte) (envelope, error) {
	if len(b) < headerFixed || string(b[:len(magic)]) != magic {
		return envelope{}, fmt.Errorf("%w: bad magic", errMalformed)
	}
	if b[4] != version {
		return envelope{}, fmt.Errorf("%w: unknown version %d", errMalformed, b[4])
	}
	flags := b[5]
	if flags&^flagWrapped != 0 {
		return envelope{}, fmt.Errorf("%w: unknown flags %#x", errMalformed, flags)
	}
	n := int(b[6])
	if len(b) < headerFixed+n {
		return envelope{}, fmt.Errorf("%w: truncated key id", errMalformed)
	}
	e := envelope{
		wrapped: flags&flagWrapped != 0,
		keyID:   string(b[headerFixed : headerFixed+n]),
		header:  b[:headerFixed+n],
		payload: b[headerFixed+n:],
	}
	if e.wrapped == (n == 0) {
		return envelope{}, fmt.Errorf("%w: key id must be set exactly when wrapped", errMalformed)
	}
	return e, nil
}

func aad(header []byte, path string) []byte {
	a := make([]byte, 0, len(aadPrefix)+len(header)+len(path))
	a = append(a, aadPrefix...)
	a = append(a, header...)
	return append(a, path...)
}

// Inspect reports whether envelope is seal-wrapped and under which key id.
func Inspect(envelope []byte) (wrapped bool, keyID string, err error) {
	e, err := parse(envelope)
	if err != nil {
		return false, "", fmt.Errorf("sealwrap: %w", err)
	}
	return e.wrapped, e.keyID, nil
}

// Describe says how envelope is protected: whether it is seal-wrapped,
// and the key id it was wrapped under, which names the mechanism and
// key(s) ("pkcs11:aes_gcm:<label>"; "" when plain). Provenance records
// state it as it was at creation.
func (s *Sealer) Describe(envelope []byte) (wrapped bool, mechanism string, err error) {
	wrapped, keyID, err := Inspect(envelope)
	if err != nil || !wrapped {
		return wrapped, "", err
	}
	return true, keyID, nil
}
