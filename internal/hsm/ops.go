package hsm

import (
	"context"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// GCM envelope produced by EncryptGCM: version || iv || ciphertext || tag.
// The version byte is also authenticated (prefixed to the AAD).
const (
	gcmVersion = 0x01
	gcmIVLen   = 12 // 96-bit IV, NIST SP 800-38D §5.2.1.1
	gcmTagBits = 128
	gcmTagLen  = gcmTagBits / 8
	// GCMOverhead is the size EncryptGCM adds to a plaintext.
	GCMOverhead = 1 + gcmIVLen + gcmTagLen
)

// KeyAttributes are the security attributes of a key as the token reports
// them.
type KeyAttributes struct {
	Token            bool
	Private          bool
	Sensitive        bool
	Extractable      bool
	AlwaysSensitive  bool
	NeverExtractable bool
	ValueLen         int // bytes
}

// GenerateRandom returns n bytes from the token's generator (C_GenerateRandom).
func (m *Module) GenerateRandom(ctx context.Context, n int) ([]byte, error) {
	if n <= 0 {
		return nil, fmt.Errorf("hsm: generate random: length %d must be positive", n)
	}
	var out []byte
	err := m.withSession(ctx, func(s pkcs11.SessionHandle) error {
		b, err := m.lib.ctx.GenerateRandom(s, n)
		if err != nil {
			return wrapRV("generate random", err)
		}
		if len(b) != n {
			return fmt.Errorf("hsm: generate random: got %d bytes, want %d", len(b), n)
		}
		out = b
		return nil
	})
	return out, err
}

// HasKey reports whether a secret key with label exists on the token.
func (m *Module) HasKey(ctx context.Context, label string) (bool, error) {
	_, err := m.key(ctx, label)
	if errors.Is(err, ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// EnsureAESKey creates the AES-256 key label unless it exists. The key is a
// token object, private, sensitive and not extractable, so its value can be
// neither read nor wrapped out (PKCS#11 v2.40 §4.9). Another process that
// creates the same label at the same moment is not excluded: run key
// creation from one node (vault initialisation).
func (m *Module) EnsureAESKey(ctx context.Context, label string) (bool, error) {
	if label == "" {
		return false, errors.New("hsm: key label is empty")
	}
	m.genMu.Lock()
	defer m.genMu.Unlock()
	if _, err := m.key(ctx, label); err == nil {
		return false, nil
	} else if !errors.Is(err, ErrKeyNotFound) {
		return false, err
	}
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(label)),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
	}
	var h pkcs11.ObjectHandle
	err := m.withSession(ctx, func(s pkcs11.SessionHandle) error {
		var err error
		h, err = m.lib.ctx.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, tmpl)
		return wrapRV("generate key", err)
	})
	if err != nil {
		return false, err
	}
	m.keysMu.Lock()
	m.keys[label] = h
	m.keysMu.Unlock()
	m.log.Info("hsm key created", "label", label)
	return true, nil
}

// KeyAttributes reads back the key's security attributes.
func (m *Module) KeyAttributes(ctx context.Context, label string) (KeyAttributes, error) {
	var ka KeyAttributes
	h, err := m.key(ctx, label)
	if err != nil {
		return ka, err
	}
	err = m.withSession(ctx, func(s pkcs11.SessionHandle) error {
		attrs, err := m.lib.ctx.GetAttributeValue(s, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, nil),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_ALWAYS_SENSITIVE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_NEVER_EXTRACTABLE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, nil),
		})
		if err != nil {
			return wrapRV("get attribute value", err)
		}
		for _, a := range attrs {
			b := len(a.Value) > 0 && a.Value[0] != 0
			switch a.Type {
			case pkcs11.CKA_TOKEN:
				ka.Token = b
			case pkcs11.CKA_PRIVATE:
				ka.Private = b
			case pkcs11.CKA_SENSITIVE:
				ka.Sensitive = b
			case pkcs11.CKA_EXTRACTABLE:
				ka.Extractable = b
			case pkcs11.CKA_ALWAYS_SENSITIVE:
				ka.AlwaysSensitive = b
			case pkcs11.CKA_NEVER_EXTRACTABLE:
				ka.NeverExtractable = b
			case pkcs11.CKA_VALUE_LEN:
				ka.ValueLen = int(ulong(a.Value)) // #nosec G115 -- CKA_VALUE_LEN of an AES key is at most 32
			}
		}
		return nil
	})
	return ka, err
}

// ulong decodes a CK_ULONG in host (little-endian on supported platforms)
// byte order.
func ulong(b []byte) uint64 {
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// EncryptGCM encrypts with CKM_AES_GCM inside the token. The 96-bit IV comes
// from the token's C_GenerateRandom; SoftHSM2 2.6 uses the IV given in
// CK_GCM_PARAMS (and silently accepts an empty one, so we always pass one),
// while some HSMs write their own: we read it back from the params. Random
// IVs bound a key to 2^32 encryptions (SP 800-38D §8.3), far above the
// number of seal operations.
func (m *Module) EncryptGCM(ctx context.Context, label string, plaintext, aad []byte) ([]byte, error) {
	var out []byte
	err := m.withKey(ctx, label, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		iv, err := m.lib.ctx.GenerateRandom(s, gcmIVLen)
		if err != nil {
			return wrapRV("generate random", err)
		}
		p := pkcs11.NewGCMParams(iv, gcmAAD(aad), gcmTagBits)
		defer p.Free()
		if err := m.lib.ctx.EncryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, p)}, h); err != nil {
			return wrapRV("encrypt init", err)
		}
		ct, err := m.lib.ctx.Encrypt(s, plaintext)
		if err != nil {
			return wrapRV("encrypt", err)
		}
		if used := p.IV(); len(used) == gcmIVLen {
			iv = used
		}
		if len(ct) != len(plaintext)+gcmTagLen {
			return fmt.Errorf("hsm: encrypt: unexpected ciphertext length %d", len(ct))
		}
		out = make([]byte, 0, GCMOverhead+len(plaintext))
		out = append(out, gcmVersion)
		out = append(out, iv...)
		out = append(out, ct...)
		return nil
	})
	return out, err
}

// DecryptGCM reverses EncryptGCM. A wrong key, wrong AAD or tampered input
// returns an error wrapping ErrDecrypt.
func (m *Module) DecryptGCM(ctx context.Context, label string, ciphertext, aad []byte) ([]byte, error) {
	if len(ciphertext) < GCMOverhead {
		return nil, fmt.Errorf("%w: ciphertext too short (%d bytes)", ErrDecrypt, len(ciphertext))
	}
	if ciphertext[0] != gcmVersion {
		return nil, fmt.Errorf("%w: unknown ciphertext version %d", ErrDecrypt, ciphertext[0])
	}
	iv, body := ciphertext[1:1+gcmIVLen], ciphertext[1+gcmIVLen:]
	var out []byte
	err := m.withKey(ctx, label, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		p := pkcs11.NewGCMParams(iv, gcmAAD(aad), gcmTagBits)
		defer p.Free()
		if err := m.lib.ctx.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, p)}, h); err != nil {
			return wrapRV("decrypt init", err)
		}
		pt, err := m.lib.ctx.Decrypt(s, body)
		if err != nil {
			if rv, ok := rvOf(err); ok && isDataError(rv) {
				return fmt.Errorf("%w: %w", ErrDecrypt, wrapRV("decrypt", err))
			}
			return wrapRV("decrypt", err)
		}
		out = pt
		return nil
	})
	return out, err
}

func gcmAAD(aad []byte) []byte {
	b := make([]byte, 0, 1+len(aad))
	return append(append(b, gcmVersion), aad...)
}

// isDataError reports return codes of C_Decrypt (after a successful
// C_DecryptInit) that mean "this ciphertext does not authenticate" rather
// than "the token is unwell". SoftHSM2 2.6 reports a GCM tag mismatch as
// CKR_GENERAL_ERROR, others as CKR_ENCRYPTED_DATA_INVALID or
// CKR_FUNCTION_FAILED; a real device fault reported as CKR_GENERAL_ERROR is
// then also treated as a bad ciphertext, which still fails closed.
func isDataError(rv pkcs11.Error) bool {
	switch rv {
	case pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE,
		pkcs11.CKR_DATA_INVALID, pkcs11.CKR_DATA_LEN_RANGE, pkcs11.CKR_FUNCTION_FAILED,
		pkcs11.CKR_GENERAL_ERROR:
		return true
	}
	return false
}

// withKey runs fn with the key's handle; a stale cached handle
// (CKR_OBJECT_HANDLE_INVALID, e.g. the key was deleted and re-created) is
// dropped and looked up once more.
func (m *Module) withKey(ctx context.Context, label string, fn func(pkcs11.SessionHandle, pkcs11.ObjectHandle) error) error {
	for attempt := 0; ; attempt++ {
		h, err := m.key(ctx, label)
		if err != nil {
			return err
		}
		err = m.withSession(ctx, func(s pkcs11.SessionHandle) error { return fn(s, h) })
		rv, ok := rvOf(err)
		if attempt == 0 && ok && (rv == pkcs11.CKR_OBJECT_HANDLE_INVALID || rv == pkcs11.CKR_KEY_HANDLE_INVALID) {
			m.keysMu.Lock()
			delete(m.keys, label)
			m.keysMu.Unlock()
			continue
		}
		return err
	}
}

// key returns the handle of the secret key label, cached after the first
// lookup (object handles stay valid across sessions of one application).
func (m *Module) key(ctx context.Context, label string) (pkcs11.ObjectHandle, error) {
	m.keysMu.RLock()
	h, ok := m.keys[label]
	m.keysMu.RUnlock()
	if ok {
		return h, nil
	}
	err := m.withSession(ctx, func(s pkcs11.SessionHandle) error {
		if err := m.lib.ctx.FindObjectsInit(s, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		}); err != nil {
			return wrapRV("find objects init", err)
		}
		found, _, err := m.lib.ctx.FindObjects(s, 2)
		if ferr := m.lib.ctx.FindObjectsFinal(s); err == nil && ferr != nil {
			err = ferr
		}
		if err != nil {
			return wrapRV("find objects", err)
		}
		switch len(found) {
		case 0:
			return fmt.Errorf("%w: label %q", ErrKeyNotFound, label)
		case 1:
			h = found[0]
			return nil
		default:
			return fmt.Errorf("hsm: more than one key with label %q", label)
		}
	})
	if err != nil {
		return 0, err
	}
	m.keysMu.Lock()
	m.keys[label] = h
	m.keysMu.Unlock()
	return h, nil
}
