package barrier

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

// The keyring as stored: its record format, encryption under the root key
// (and seal wrap), and the key terms it holds.

// The keyring record at core/keyring is
//
//	ringVersion || nonce(12) || AES-256-GCM_root(mode || payload)
//
// with AAD = ringVersion || "core/keyring". mode is modePlain (payload is
// the keyring JSON) or modeWrapped (payload is Wrapper.Wrap(JSON)).
//
// Seal wrap goes inside the root-key layer (wrap, then root-encrypt):
// storage alone reveals nothing; storage + root key reveals only the HSM
// envelope; and a wrong root key is rejected by GCM before the HSM is
// asked anything. Because the mode byte is under the root-key GCM tag, it
// cannot be flipped to strip the wrap without the root key, and even with
// the root key a plain keyring is refused while a Wrapper is configured.
const (
	ringVersion byte = 1
	modePlain   byte = 0
	modeWrapped byte = 1
)

// newTerm draws a fresh key from the CSP source, failing closed.
func (b *Barrier) newTerm(n uint32) (*term, error) {
	if b.rand == nil {
		return nil, errors.New("barrier: Options.Rand is nil")
	}
	key := make(secret.Bytes, keyLen)
	if _, err := io.ReadFull(b.rand, key); err != nil {
		key.Destroy()
		return nil, fmt.Errorf("barrier: generating key for term %d: %w", n, err)
	}
	return buildTerm(n, key, time.Now().UTC().Round(0))
}

func buildTerm(n uint32, key secret.Bytes, installed time.Time) (*term, error) {
	aead, err := newGCM(key)
	if err != nil {
		key.Destroy()
		return nil, err
	}
	return &term{term: n, key: key, installed: installed, aead: aead, use: &usage{}}, nil
}

// newGCM is AES-256-GCM with a random 96-bit nonce that the cipher draws
// itself and puts first (nonce || ciphertext || tag, the layout records
// already had). Caller-chosen nonces through cipher.NewGCM are not
// approved by Go's FIPS 140-3 module and fail under GODEBUG=fips140=only
// (NIST SP 800-38D §8.2.2; FIPS 140-3 IG C.H).
func newGCM(key []byte) (cipher.AEAD, error) {
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("barrier: %w", err)
	}
	return cipher.NewGCMWithRandomNonce(blk)
}

func (kr *keyring) destroy() {
	for _, t := range kr.terms {
		t.key.Destroy()
	}
}

// encodeKeyring encrypts kr under root (wrapped by w if set).
func encodeKeyring(ctx context.Context, root secret.Bytes, w Wrapper, kr *keyring) ([]byte, error) {
	js := kr.marshal()
	defer secret.Wipe(js)
	var payload []byte
	if w != nil {
		env, err := w.Wrap(ctx, keyringPath, js)
		if err != nil {
			return nil, fmt.Errorf("barrier: seal-wrapping keyring: %w", err)
		}
		payload = append([]byte{modeWrapped}, env...)
	} else {
		payload = make([]byte, 1+len(js))
		payload[0] = modePlain
		copy(payload[1:], js)
	}
	defer secret.Wipe(payload)
	aead, err := newGCM(root)
	if err != nil {
		return nil, err
	}
	blob := make([]byte, 1, 1+nonceLen+len(payload)+tagLen)
	blob[0] = ringVersion
	return aead.Seal(blob, nil, payload, ringAAD), nil // #nosec G407 -- NewGCMWithRandomNonce draws the nonce (ringVersion || nonce || ct || tag)
}

var ringAAD = []byte{ringVersion, 'c', 'o', 'r', 'e', '/', 'k', 'e', 'y', 'r', 'i', 'n', 'g'}

// readKeyring fetches and decrypts the keyring; raw is the stored record.
func (b *Barrier) readKeyring(ctx context.Context, root secret.Bytes, w Wrapper) ([]byte, *keyring, error) {
	blob, err := b.backend.Get(ctx, keyringPath)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil, ErrNotInitialized
	}
	if err != nil {
		return nil, nil, fmt.Errorf("barrier: reading keyring: %w", err)
	}
	kr, err := openKeyring(ctx, root, w, blob)
	return blob, kr, err
}

func openKeyring(ctx context.Context, root secret.Bytes, w Wrapper, blob []byte) (*keyring, error) {
	if len(blob) < 1+nonceLen+tagLen+1 || blob[0] != ringVersion {
		return nil, fmt.Errorf("%w: %q: malformed keyring record", ErrIntegrity, keyringPath)
	}
	aead, err := newGCM(root)
	if err != nil {
		return nil, err
	}
	payload, err := aead.Open(nil, nil, blob[1:], ringAAD)
	if err != nil {
		return nil, fmt.Errorf("%w (or the keyring record was altered)", ErrWrongRootKey)
	}
	defer secret.Wipe(payload)
	switch {
	case len(payload) < 1:
		return nil, fmt.Errorf("%w: %q: empty keyring", ErrIntegrity, keyringPath)
	case payload[0] == modePlain && w == nil:
		return unmarshalKeyring(payload[1:])
	case payload[0] == modeWrapped && w != nil:
		js, err := w.Unwrap(ctx, keyringPath, payload[1:])
		if err != nil {
			return nil, fmt.Errorf("barrier: unwrapping keyring: %w", err)
		}
		defer js.Destroy()
		return unmarshalKeyring(js)
	case payload[0] == modePlain:
		return nil, fmt.Errorf("%w: the keyring is not seal-wrapped but a wrapper was given", ErrWrapperMismatch)
	case payload[0] == modeWrapped:
		return nil, fmt.Errorf("%w: the keyring is seal-wrapped but no wrapper was given", ErrWrapperMismatch)
	default:
		return nil, fmt.Errorf("%w: %q: unknown keyring mode %d", ErrIntegrity, keyringPath, payload[0])
	}
}

// marshal writes the keyring JSON by hand into one buffer sized up front,
// so no key material is left behind in encoding/json's pooled buffers or in
// abandoned slices from append growth; the caller wipes the result.
//
//	{"active_term":N,"terms":[{"term":N,"key":"base64","install_time":"RFC3339"}],"meta":"base64"}
//
// meta is opaque to the barrier (the core's seal configuration).
func (kr *keyring) marshal() []byte {
	b := make([]byte, 0, 64+len(kr.terms)*192)
	b = append(b, `{"active_term":`...)
	b = strconv.AppendUint(b, uint64(kr.active), 10)
	b = append(b, `,"terms":[`...)
	first := true
	for _, n := range sortedTerms(kr) {
		t := kr.terms[n]
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"term":`...)
		b = strconv.AppendUint(b, uint64(t.term), 10)
		b = append(b, `,"key":"`...)
		b = base64.StdEncoding.AppendEncode(b, t.key)
		b = append(b, `","install_time":"`...)
		b = t.installed.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, `"}`...)
	}
	b = append(b, ']')
	if kr.meta != nil {
		b = append(b, `,"meta":"`...)
		b = base64.StdEncoding.AppendEncode(b, kr.meta)
		b = append(b, '"')
	}
	return append(b, '}')
}

func sortedTerms(kr *keyring) []uint32 {
	ns := make([]uint32, 0, len(kr.terms))
	for n := range kr.terms {
		ns = append(ns, n)
	}
	for i := 1; i < len(ns); i++ { // tiny: insertion sort
		for j := i; j > 0 && ns[j] < ns[j-1]; j-- {
			ns[j], ns[j-1] = ns[j-1], ns[j]
		}
	}
	return ns
}

type keyringJSON struct {
	ActiveTerm uint32 `json:"active_term"`
	Terms      []struct {
		Term        uint32    `json:"term"`
		Key         []byte    `json:"key"`
		InstallTime time.Time `json:"install_time"`
	} `json:"terms"`
	Meta []byte `json:"meta"`
}

// unmarshalKeyring decodes and validates the keyring JSON. The decoded key
// slices become the terms' keys (no extra copies).
func unmarshalKeyring(js []byte) (*keyring, error) {
	var kj keyringJSON
	err := json.Unmarshal(js, &kj)
	wipe := func() {
		for _, t := range kj.Terms {
			secret.Wipe(t.Key)
		}
	}
	if err != nil {
		wipe()
		return nil, fmt.Errorf("%w: %q: keyring is not valid JSON", ErrIntegrity, keyringPath)
	}
	kr := &keyring{active: kj.ActiveTerm, terms: make(map[uint32]*term, len(kj.Terms)), meta: kj.Meta}
	for i, tj := range kj.Terms {
		var problem string
		switch {
		case tj.Term == 0:
			problem = "term 0"
		case len(tj.Key) != keyLen:
			problem = fmt.Sprintf("key of %d bytes", len(tj.Key))
		case kr.terms[tj.Term] != nil:
			problem = "duplicate term"
		}
		if problem != "" {
			wipe()
			return nil, fmt.Errorf("%w: %q: keyring terms[%d]: %s", ErrIntegrity, keyringPath, i, problem)
		}
		t, err := buildTerm(tj.Term, secret.Bytes(tj.Key), tj.InstallTime)
		if err != nil {
			wipe()
			return nil, err
		}
		kr.terms[tj.Term] = t
	}
	if kr.terms[kr.active] == nil {
		wipe()
		return nil, fmt.Errorf("%w: %q: keyring active_term %d has no key", ErrIntegrity, keyringPath, kr.active)
	}
	return kr, nil
}
