package hsm

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"math/big"

	"github.com/miekg/pkcs11"
)

// KeyType is what a seal key is and what it may do. Keys are created with
// only the usage attributes their job needs: no CKA_WRAP/CKA_UNWRAP, since
// the seal encrypts data with C_Encrypt and never wraps token keys.
type KeyType int

const (
	// KeyAES is an AES-256 secret key for C_Encrypt/C_Decrypt
	// (CKM_AES_GCM, CKM_AES_CBC_PAD).
	KeyAES KeyType = iota
	// KeyHMAC is a 256-bit generic secret for C_Sign/C_Verify
	// (CKM_SHA256_HMAC).
	KeyHMAC
	// KeyRSA is an RSA-3072 key pair: the public key encrypts, the private
	// key decrypts (CKM_RSA_PKCS_OAEP). 3072 bits gives 128-bit security
	// (NIST SP 800-57 Part 1 Rev. 5, Table 2).
	KeyRSA
	// KeyRSASign is an RSA-3072 key pair that only signs and verifies
	// (CKM_SHA256_RSA_PKCS_PSS): the private key signs, the public key
	// verifies. It is a separate key from KeyRSA's, since one key should
	// serve one purpose (NIST SP 800-57 Part 1 Rev. 5, §5.2).
	KeyRSASign
)

func (t KeyType) String() string {
	switch t {
	case KeyAES:
		return "AES-256"
	case KeyHMAC:
		return "HMAC (generic secret, 256 bits)"
	case KeyRSA:
		return "RSA-3072"
	case KeyRSASign:
		return "RSA-3072 (signing)"
	}
	return fmt.Sprintf("KeyType(%d)", int(t))
}

const (
	aesKeyLen   = 32
	hmacKeyLen  = 32
	rsaBits     = 3072
	rsaMinBytes = 2048 / 8
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
	Encrypt, Decrypt bool
	Sign, Verify     bool
	Wrap, Unwrap     bool
	KeyType          uint
	ValueLen         int // bytes (secret keys)
}

// keyRef names one object: its label and class.
type keyRef struct {
	label string
	class uint
}

// HasKey reports whether a secret key with label exists on the token.
func (m *Module) HasKey(ctx context.Context, label string) (bool, error) {
	_, err := m.find(ctx, keyRef{label, pkcs11.CKO_SECRET_KEY})
	if errors.Is(err, ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// EnsureAESKey is EnsureKey(ctx, label, KeyAES).
func (m *Module) EnsureAESKey(ctx context.Context, label string) (bool, error) {
	return m.EnsureKey(ctx, label, KeyAES)
}

// EnsureKey creates the key label of type t unless it exists, and returns
// whether it created it. Keys are token objects, private, sensitive and
// not extractable, so their value can be neither read nor wrapped out
// (PKCS#11 v2.40 §4.9). An existing key is adopted only if it is
// sensitive, not extractable and of type t (else ErrKeyUnsafe). Another
// process that creates the same label at the same moment is not excluded:
// run key creation from one node (vault initialisation).
func (m *Module) EnsureKey(ctx context.Context, label string, t KeyType) (bool, error) {
	if label == "" {
		return false, errors.New("hsm: key label is empty")
	}
	m.genMu.Lock()
	defer m.genMu.Unlock()
	refs := t.refs(label)
	missing := 0
	for _, r := range refs {
		if _, err := m.key(ctx, r, t); errors.Is(err, ErrKeyNotFound) {
			missing++
		} else if err != nil {
			return false, err
		}
	}
	switch {
	case missing == 0:
		return false, nil
	case missing < len(refs):
		return false, fmt.Errorf("%w: %q: only one half of the RSA key pair exists", ErrKeyUnsafe, label)
	}
	var handles []pkcs11.ObjectHandle
	err := m.withSession(ctx, func(s pkcs11.SessionHandle) error {
		var err error
		handles, err = m.generate(s, label, t)
		return err
	})
	if err != nil {
		return false, err
	}
	m.keysMu.Lock()
	for i, r := range refs {
		m.keys[r] = handles[i]
	}
	m.keysMu.Unlock()
	m.log.Info("hsm key created", "label", label, "type", t.String())
	return true, nil
}

// refs are the objects a key of type t consists of; for RSA the public key
// first, then the private key.
func (t KeyType) refs(label string) []keyRef {
	if t == KeyRSA || t == KeyRSASign {
		return []keyRef{{label, pkcs11.CKO_PUBLIC_KEY}, {label, pkcs11.CKO_PRIVATE_KEY}}
	}
	return []keyRef{{label, pkcs11.CKO_SECRET_KEY}}
}

func (m *Module) generate(s pkcs11.SessionHandle, label string, t KeyType) ([]pkcs11.ObjectHandle, error) {
	common := func(class, keyType uint) []*pkcs11.Attribute {
		return []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(label)),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		}
	}
	secret := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
	}
	switch t {
	case KeyAES:
		tmpl := append(common(pkcs11.CKO_SECRET_KEY, pkcs11.CKK_AES), secret...)
		tmpl = append(tmpl,
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, aesKeyLen),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false))
		h, err := m.api.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, tmpl)
		return []pkcs11.ObjectHandle{h}, wrapRV("generate key", err)
	case KeyHMAC:
		tmpl := append(common(pkcs11.CKO_SECRET_KEY, pkcs11.CKK_GENERIC_SECRET), secret...)
		tmpl = append(tmpl,
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, hmacKeyLen),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false))
		h, err := m.api.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_GENERIC_SECRET_KEY_GEN, nil)}, tmpl)
		return []pkcs11.ObjectHandle{h}, wrapRV("generate key", err)
	case KeyRSA:
		pub := append(common(pkcs11.CKO_PUBLIC_KEY, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, rsaBits),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}))
		priv := append(common(pkcs11.CKO_PRIVATE_KEY, pkcs11.CKK_RSA), secret...)
		priv = append(priv,
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, false))
		hPub, hPriv, err := m.api.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}, pub, priv)
		return []pkcs11.ObjectHandle{hPub, hPriv}, wrapRV("generate key pair", err)
	case KeyRSASign:
		pub := append(common(pkcs11.CKO_PUBLIC_KEY, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, rsaBits),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}))
		priv := append(common(pkcs11.CKO_PRIVATE_KEY, pkcs11.CKK_RSA), secret...)
		priv = append(priv,
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false))
		hPub, hPriv, err := m.api.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}, pub, priv)
		return []pkcs11.ObjectHandle{hPub, hPriv}, wrapRV("generate key pair", err)
	}
	return nil, fmt.Errorf("hsm: unknown key type %v", t)
}

// KeyAttributes reads back the security attributes of the secret key
// label (AES or HMAC).
func (m *Module) KeyAttributes(ctx context.Context, label string) (KeyAttributes, error) {
	return m.attributes(ctx, keyRef{label, pkcs11.CKO_SECRET_KEY})
}

// PrivateKeyAttributes reads back the security attributes of the private
// half of the RSA key pair label.
func (m *Module) PrivateKeyAttributes(ctx context.Context, label string) (KeyAttributes, error) {
	return m.attributes(ctx, keyRef{label, pkcs11.CKO_PRIVATE_KEY})
}

func (m *Module) attributes(ctx context.Context, r keyRef) (KeyAttributes, error) {
	h, err := m.find(ctx, r)
	if err != nil {
		return KeyAttributes{}, err
	}
	var ka KeyAttributes
	err = m.withSession(ctx, func(s pkcs11.SessionHandle) error {
		ka, err = m.readAttributes(s, h, r.class)
		return err
	})
	return ka, err
}

func (m *Module) readAttributes(s pkcs11.SessionHandle, h pkcs11.ObjectHandle, class uint) (KeyAttributes, error) {
	var ka KeyAttributes
	// Only attributes the class has: asking for another fails the call
	// with CKR_ATTRIBUTE_TYPE_INVALID.
	want := []uint{pkcs11.CKA_KEY_TYPE, pkcs11.CKA_TOKEN, pkcs11.CKA_PRIVATE}
	public := []uint{pkcs11.CKA_ENCRYPT, pkcs11.CKA_VERIFY, pkcs11.CKA_WRAP}
	private := []uint{pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE, pkcs11.CKA_ALWAYS_SENSITIVE,
		pkcs11.CKA_NEVER_EXTRACTABLE, pkcs11.CKA_DECRYPT, pkcs11.CKA_SIGN, pkcs11.CKA_UNWRAP}
	switch class {
	case pkcs11.CKO_SECRET_KEY:
		want = append(append(append(want, public...), private...), pkcs11.CKA_VALUE_LEN)
	case pkcs11.CKO_PRIVATE_KEY:
		want = append(want, private...)
	default:
		want = append(append(want, public...), pkcs11.CKA_MODULUS)
	}
	tmpl := make([]*pkcs11.Attribute, len(want))
	for i, a := range want {
		tmpl[i] = pkcs11.NewAttribute(a, nil)
	}
	attrs, err := m.api.GetAttributeValue(s, h, tmpl)
	if err != nil {
		return ka, wrapRV("get attribute value", err)
	}
	for _, a := range attrs {
		b := len(a.Value) > 0 && a.Value[0] != 0
		switch a.Type {
		case pkcs11.CKA_KEY_TYPE:
			ka.KeyType = uint(ulong(a.Value)) // #nosec G115 -- a CK_ULONG fits uint on supported platforms
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
		case pkcs11.CKA_ENCRYPT:
			ka.Encrypt = b
		case pkcs11.CKA_DECRYPT:
			ka.Decrypt = b
		case pkcs11.CKA_SIGN:
			ka.Sign = b
		case pkcs11.CKA_VERIFY:
			ka.Verify = b
		case pkcs11.CKA_WRAP:
			ka.Wrap = b
		case pkcs11.CKA_UNWRAP:
			ka.Unwrap = b
		case pkcs11.CKA_VALUE_LEN:
			ka.ValueLen = int(ulong(a.Value)) // #nosec G115 -- CKA_VALUE_LEN of a seal key is small
		case pkcs11.CKA_MODULUS:
			ka.ValueLen = len(a.Value)
		}
	}
	return ka, nil
}

// check refuses a key the seal must not use: an extractable or
// non-sensitive secret or private key (its value could leave the token),
// or a key of another type or a weaker size than t.
func (ka KeyAttributes) check(label string, class uint, t KeyType) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %q: %s", ErrKeyUnsafe, label, fmt.Sprintf(format, args...))
	}
	if class != pkcs11.CKO_PUBLIC_KEY {
		if !ka.Sensitive {
			return bad("CKA_SENSITIVE is false; the seal only uses keys whose value cannot be read")
		}
		if ka.Extractable {
			return bad("CKA_EXTRACTABLE is true; the seal only uses keys that cannot be wrapped out of the token")
		}
	}
	switch t {
	case KeyAES:
		if ka.KeyType != pkcs11.CKK_AES {
			return bad("key type 0x%X, want CKK_AES", ka.KeyType)
		}
		if ka.ValueLen != aesKeyLen {
			return bad("AES key of %d bytes, want %d", ka.ValueLen, aesKeyLen)
		}
	case KeyHMAC:
		if ka.KeyType != pkcs11.CKK_GENERIC_SECRET && ka.KeyType != pkcs11.CKK_SHA256_HMAC {
			return bad("key type 0x%X, want CKK_GENERIC_SECRET or CKK_SHA256_HMAC", ka.KeyType)
		}
		if ka.ValueLen < hmacKeyLen {
			return bad("HMAC key of %d bytes, want at least %d", ka.ValueLen, hmacKeyLen)
		}
	case KeyRSA, KeyRSASign:
		if ka.KeyType != pkcs11.CKK_RSA {
			return bad("key type 0x%X, want CKK_RSA", ka.KeyType)
		}
		if class == pkcs11.CKO_PUBLIC_KEY && ka.ValueLen < rsaMinBytes {
			return bad("RSA modulus of %d bits, want at least 2048", 8*ka.ValueLen)
		}
	}
	return nil
}

// RSAPublicKey reads the public half of the RSA key pair label (modulus
// and exponent). Public keys are public: anyone who can list the token's
// objects can read them, which is why the seal never trusts a ciphertext
// only because it decrypts under the private key.
func (m *Module) RSAPublicKey(ctx context.Context, label string) (*rsa.PublicKey, error) {
	h, err := m.find(ctx, keyRef{label, pkcs11.CKO_PUBLIC_KEY})
	if err != nil {
		return nil, err
	}
	var pub *rsa.PublicKey
	err = m.withSession(ctx, func(s pkcs11.SessionHandle) error {
		attrs, err := m.api.GetAttributeValue(s, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil),
		})
		if err != nil {
			return wrapRV("get attribute value", err)
		}
		var n, e *big.Int
		for _, a := range attrs {
			switch a.Type {
			case pkcs11.CKA_MODULUS:
				n = new(big.Int).SetBytes(a.Value)
			case pkcs11.CKA_PUBLIC_EXPONENT:
				e = new(big.Int).SetBytes(a.Value)
			}
		}
		if n == nil || e == nil || n.Sign() == 0 || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
			return fmt.Errorf("hsm: %q: not an RSA public key", label)
		}
		pub = &rsa.PublicKey{N: n, E: int(e.Int64())}
		return nil
	})
	return pub, err
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

// DestroyKey deletes every key object labelled label (secret, public and
// private). It is for tests and for retiring a key the vault no longer
// references; it reports ErrKeyNotFound when there is none.
func (m *Module) DestroyKey(ctx context.Context, label string) error {
	n := 0
	for _, class := range []uint{pkcs11.CKO_SECRET_KEY, pkcs11.CKO_PUBLIC_KEY, pkcs11.CKO_PRIVATE_KEY} {
		r := keyRef{label, class}
		h, err := m.find(ctx, r)
		if errors.Is(err, ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if err := m.withSession(ctx, func(s pkcs11.SessionHandle) error {
			return wrapRV("destroy object", m.api.DestroyObject(s, h))
		}); err != nil {
			return err
		}
		m.keysMu.Lock()
		delete(m.keys, r)
		m.keysMu.Unlock()
		n++
	}
	if n == 0 {
		return fmt.Errorf("%w: label %q", ErrKeyNotFound, label)
	}
	return nil
}

// key returns the handle of a seal key of type t, checked (check) the
// first time it is found and then cached: object handles stay valid
// across sessions of one application.
func (m *Module) key(ctx context.Context, r keyRef, t KeyType) (pkcs11.ObjectHandle, error) {
	m.keysMu.RLock()
	h, ok := m.keys[r]
	m.keysMu.RUnlock()
	if ok {
		return h, nil
	}
	h, err := m.find(ctx, r)
	if err != nil {
		return 0, err
	}
	var ka KeyAttributes
	if err := m.withSession(ctx, func(s pkcs11.SessionHandle) error {
		var err error
		ka, err = m.readAttributes(s, h, r.class)
		return err
	}); err != nil {
		return 0, err
	}
	if err := ka.check(r.label, r.class, t); err != nil {
		return 0, err
	}
	m.keysMu.Lock()
	m.keys[r] = h
	m.keysMu.Unlock()
	return h, nil
}

// find looks an object up by label and class, without checks or cache.
func (m *Module) find(ctx context.Context, r keyRef) (pkcs11.ObjectHandle, error) {
	var h pkcs11.ObjectHandle
	err := m.withSession(ctx, func(s pkcs11.SessionHandle) error {
		if err := m.api.FindObjectsInit(s, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, r.class),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, r.label),
		}); err != nil {
			return wrapRV("find objects init", err)
		}
		found, _, err := m.api.FindObjects(s, 2)
		if ferr := m.api.FindObjectsFinal(s); err == nil && ferr != nil {
			err = ferr
		}
		if err != nil {
			return wrapRV("find objects", err)
		}
		switch len(found) {
		case 0:
			return fmt.Errorf("%w: label %q", ErrKeyNotFound, r.label)
		case 1:
			h = found[0]
			return nil
		default:
			return fmt.Errorf("%w: more than one key object with label %q", ErrKeyUnsafe, r.label)
		}
	})
	return h, err
}

// withKey runs fn with the handle of the key r of type t; a stale cached
// handle (CKR_OBJECT_HANDLE_INVALID, e.g. the key was deleted and
// re-created) is dropped and looked up once more.
func (m *Module) withKey(ctx context.Context, r keyRef, t KeyType, fn func(pkcs11.SessionHandle, pkcs11.ObjectHandle) error) error {
	for attempt := 0; ; attempt++ {
		h, err := m.key(ctx, r, t)
		if err != nil {
			return err
		}
		err = m.withSession(ctx, func(s pkcs11.SessionHandle) error { return fn(s, h) })
		rv, ok := rvOf(err)
		if attempt == 0 && ok && (rv == pkcs11.CKR_OBJECT_HANDLE_INVALID || rv == pkcs11.CKR_KEY_HANDLE_INVALID) {
			m.keysMu.Lock()
			delete(m.keys, r)
			m.keysMu.Unlock()
			continue
		}
		return err
	}
}
