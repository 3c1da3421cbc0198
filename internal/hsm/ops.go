package hsm

import (
	"context"
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
	// CBCIVLen is the IV EncryptCBC puts before its ciphertext.
	CBCIVLen = 16
	// HMACLen is the size of a CKM_SHA256_HMAC tag.
	HMACLen = 32
)

// OAEPHash selects the hash (and MGF1 hash) of CKM_RSA_PKCS_OAEP.
type OAEPHash int

const (
	// OAEPSHA256 is SHA-256 with MGF1-SHA-256, the default.
	OAEPSHA256 OAEPHash = iota
	// OAEPSHA1 is SHA-1 with MGF1-SHA-1, for tokens that offer nothing
	// else (SoftHSM2 2.6 answers CKR_ARGUMENTS_BAD to any other hash).
	OAEPSHA1
)

func (h OAEPHash) params() *pkcs11.OAEPParams {
	if h == OAEPSHA1 {
		return pkcs11.NewOAEPParams(pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1, pkcs11.CKZ_DATA_SPECIFIED, nil)
	}
	return pkcs11.NewOAEPParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, pkcs11.CKZ_DATA_SPECIFIED, nil)
}

// GenerateRandom returns n bytes from the token's generator (C_GenerateRandom).
func (m *Module) GenerateRandom(ctx context.Context, n int) ([]byte, error) {
	if n <= 0 {
		return nil, fmt.Errorf("hsm: generate random: length %d must be positive", n)
	}
	var out []byte
	err := m.withSession(ctx, func(s pkcs11.SessionHandle) error {
		b, err := m.api.GenerateRandom(s, n)
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

// Mechanisms lists the mechanisms the token offers (C_GetMechanismList).
func (m *Module) Mechanisms(ctx context.Context) ([]uint, error) {
	var out []uint
	err := m.withSession(ctx, func(pkcs11.SessionHandle) error {
		ms, err := m.api.GetMechanismList(m.slot)
		if err != nil {
			return wrapRV("get mechanism list", err)
		}
		for _, mc := range ms {
			out = append(out, mc.Mechanism)
		}
		return nil
	})
	return out, err
}

// EncryptGCM encrypts with CKM_AES_GCM inside the token under the AES key
// label. The 96-bit IV comes from the token's C_GenerateRandom; SoftHSM2
// 2.6 uses the IV given in CK_GCM_PARAMS (and silently accepts an empty
// one, so we always pass one), while some HSMs write their own: we read it
// back from the params. Random IVs bound a key to 2^32 encryptions (SP
// 800-38D §8.3), far above the number of seal operations.
func (m *Module) EncryptGCM(ctx context.Context, label string, plaintext, aad []byte) ([]byte, error) {
	var out []byte
	err := m.withKey(ctx, keyRef{label, pkcs11.CKO_SECRET_KEY}, KeyAES, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		iv, err := m.api.GenerateRandom(s, gcmIVLen)
		if err != nil {
			return wrapRV("generate random", err)
		}
		p := pkcs11.NewGCMParams(iv, gcmAAD(aad), gcmTagBits)
		defer p.Free()
		if err := m.api.EncryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, p)}, h); err != nil {
			return wrapRV("encrypt init", err)
		}
		ct, err := m.api.Encrypt(s, plaintext)
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
	err := m.withKey(ctx, keyRef{label, pkcs11.CKO_SECRET_KEY}, KeyAES, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		p := pkcs11.NewGCMParams(iv, gcmAAD(aad), gcmTagBits)
		defer p.Free()
		if err := m.api.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, p)}, h); err != nil {
			return wrapRV("decrypt init", err)
		}
		pt, err := m.api.Decrypt(s, body)
		if err != nil {
			return decryptError(err)
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

// EncryptCBC encrypts with CKM_AES_CBC_PAD (PKCS#7 padding) under the AES
// key label and returns iv || ciphertext, the 16-byte IV drawn from the
// token's generator. CBC alone does not authenticate: the caller MACs the
// result (encrypt-then-MAC), as the seal's aes_cbc_pad_hmac mechanism does.
func (m *Module) EncryptCBC(ctx context.Context, label string, plaintext []byte) ([]byte, error) {
	var out []byte
	err := m.withKey(ctx, keyRef{label, pkcs11.CKO_SECRET_KEY}, KeyAES, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		iv, err := m.api.GenerateRandom(s, CBCIVLen)
		if err != nil {
			return wrapRV("generate random", err)
		}
		if len(iv) != CBCIVLen {
			return fmt.Errorf("hsm: generate random: got %d bytes, want %d", len(iv), CBCIVLen)
		}
		if err := m.api.EncryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_CBC_PAD, iv)}, h); err != nil {
			return wrapRV("encrypt init", err)
		}
		ct, err := m.api.Encrypt(s, plaintext)
		if err != nil {
			return wrapRV("encrypt", err)
		}
		if len(ct) != (len(plaintext)/16+1)*16 { // PKCS#7 always pads
			return fmt.Errorf("hsm: encrypt: unexpected ciphertext length %d", len(ct))
		}
		out = append(iv, ct...)
		return nil
	})
	return out, err
}

// DecryptCBC reverses EncryptCBC. Bad padding or length wraps ErrDecrypt;
// run it only on a ciphertext whose MAC was verified first.
func (m *Module) DecryptCBC(ctx context.Context, label string, ivct []byte) ([]byte, error) {
	if len(ivct) < CBCIVLen+16 || len(ivct)%16 != 0 {
		return nil, fmt.Errorf("%w: CBC ciphertext of %d bytes", ErrDecrypt, len(ivct))
	}
	var out []byte
	err := m.withKey(ctx, keyRef{label, pkcs11.CKO_SECRET_KEY}, KeyAES, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		if err := m.api.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_CBC_PAD, ivct[:CBCIVLen])}, h); err != nil {
			return wrapRV("decrypt init", err)
		}
		pt, err := m.api.Decrypt(s, ivct[CBCIVLen:])
		if err != nil {
			return decryptError(err)
		}
		out = pt
		return nil
	})
	return out, err
}

// SignHMAC computes CKM_SHA256_HMAC over data with the HMAC key label.
func (m *Module) SignHMAC(ctx context.Context, label string, data []byte) ([]byte, error) {
	var out []byte
	err := m.withKey(ctx, keyRef{label, pkcs11.CKO_SECRET_KEY}, KeyHMAC, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		if err := m.api.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_HMAC, nil)}, h); err != nil {
			return wrapRV("sign init", err)
		}
		mac, err := m.api.Sign(s, data)
		if err != nil {
			return wrapRV("sign", err)
		}
		if len(mac) != HMACLen {
			return fmt.Errorf("hsm: sign: HMAC of %d bytes, want %d", len(mac), HMACLen)
		}
		out = mac
		return nil
	})
	return out, err
}

// VerifyHMAC checks a CKM_SHA256_HMAC tag inside the token (C_Verify, so
// the comparison is the token's). A wrong tag wraps ErrDecrypt.
func (m *Module) VerifyHMAC(ctx context.Context, label string, data, mac []byte) error {
	if len(mac) != HMACLen {
		return fmt.Errorf("%w: HMAC of %d bytes", ErrDecrypt, len(mac))
	}
	return m.withKey(ctx, keyRef{label, pkcs11.CKO_SECRET_KEY}, KeyHMAC, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		if err := m.api.VerifyInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_HMAC, nil)}, h); err != nil {
			return wrapRV("verify init", err)
		}
		err := m.api.Verify(s, data, mac)
		if rv, ok := rvOf(err); ok && (rv == pkcs11.CKR_SIGNATURE_INVALID || rv == pkcs11.CKR_SIGNATURE_LEN_RANGE) {
			return fmt.Errorf("%w: %w", ErrDecrypt, wrapRV("verify", err))
		}
		return wrapRV("verify", err)
	})
}

// PSS parameters of CKM_SHA256_RSA_PKCS_PSS: SHA-256, MGF1-SHA-256 and a
// salt as long as the hash (RFC 8017 §9.1; FIPS 186-5 §5.4).
const pssSaltLen = 32

// maxSignatureLen bounds a signature handed to C_Verify (RSA-4096).
const maxSignatureLen = 512

func pssMechanism() []*pkcs11.Mechanism {
	return []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS_PSS,
		pkcs11.NewPSSParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, pssSaltLen))}
}

// SignPSS signs data with CKM_SHA256_RSA_PKCS_PSS (the token hashes it)
// under the private half of the signing key pair label.
func (m *Module) SignPSS(ctx context.Context, label string, data []byte) ([]byte, error) {
	var out []byte
	err := m.withKey(ctx, keyRef{label, pkcs11.CKO_PRIVATE_KEY}, KeyRSASign, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		if err := m.api.SignInit(s, pssMechanism(), h); err != nil {
			return wrapRV("sign init", err)
		}
		sig, err := m.api.Sign(s, data)
		if err != nil {
			return wrapRV("sign", err)
		}
		if len(sig) == 0 || len(sig) > maxSignatureLen {
			return fmt.Errorf("hsm: sign: signature of %d bytes", len(sig))
		}
		out = sig
		return nil
	})
	return out, err
}

// VerifyPSS checks a CKM_SHA256_RSA_PKCS_PSS signature inside the token
// (C_Verify with the public half of the signing key pair label). A
// signature that does not verify wraps ErrDecrypt.
func (m *Module) VerifyPSS(ctx context.Context, label string, data, sig []byte) error {
	if len(sig) == 0 || len(sig) > maxSignatureLen {
		return fmt.Errorf("%w: signature of %d bytes", ErrDecrypt, len(sig))
	}
	return m.withKey(ctx, keyRef{label, pkcs11.CKO_PUBLIC_KEY}, KeyRSASign, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		if err := m.api.VerifyInit(s, pssMechanism(), h); err != nil {
			return wrapRV("verify init", err)
		}
		return verifyError(m.api.Verify(s, data, sig))
	})
}

// verifyError wraps a C_Verify failure (after a successful C_VerifyInit):
// ErrDecrypt when the return code means "this signature does not verify"
// (a made-up signature may also be out of range for the modulus, which
// tokens report as a data error), else a token failure.
func verifyError(err error) error {
	if err == nil {
		return nil
	}
	if rv, ok := rvOf(err); ok && (rv == pkcs11.CKR_SIGNATURE_INVALID || rv == pkcs11.CKR_SIGNATURE_LEN_RANGE || isDataError(rv)) {
		return fmt.Errorf("%w: %w", ErrDecrypt, wrapRV("verify", err))
	}
	return wrapRV("verify", err)
}

// EncryptOAEP encrypts a short plaintext (a data key) with
// CKM_RSA_PKCS_OAEP under the public key label.
func (m *Module) EncryptOAEP(ctx context.Context, label string, hash OAEPHash, plaintext []byte) ([]byte, error) {
	var out []byte
	err := m.withKey(ctx, keyRef{label, pkcs11.CKO_PUBLIC_KEY}, KeyRSA, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		if err := m.api.EncryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, hash.params())}, h); err != nil {
			return wrapRV("encrypt init", err)
		}
		ct, err := m.api.Encrypt(s, plaintext)
		if err != nil {
			return wrapRV("encrypt", err)
		}
		out = ct
		return nil
	})
	return out, err
}

// DecryptOAEP reverses EncryptOAEP with the private key label. A
// ciphertext that does not decode wraps ErrDecrypt.
func (m *Module) DecryptOAEP(ctx context.Context, label string, hash OAEPHash, ciphertext []byte) ([]byte, error) {
	var out []byte
	err := m.withKey(ctx, keyRef{label, pkcs11.CKO_PRIVATE_KEY}, KeyRSA, func(s pkcs11.SessionHandle, h pkcs11.ObjectHandle) error {
		if err := m.api.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, hash.params())}, h); err != nil {
			return wrapRV("decrypt init", err)
		}
		pt, err := m.api.Decrypt(s, ciphertext)
		if err != nil {
			return decryptError(err)
		}
		out = pt
		return nil
	})
	return out, err
}

// decryptError wraps a C_Decrypt failure: ErrDecrypt when the return code
// means "this ciphertext does not decrypt" rather than "the token is
// unwell".
func decryptError(err error) error {
	if rv, ok := rvOf(err); ok && isDataError(rv) {
		return fmt.Errorf("%w: %w", ErrDecrypt, wrapRV("decrypt", err))
	}
	return wrapRV("decrypt", err)
}

// isDataError reports return codes of C_Decrypt (after a successful
// C_DecryptInit) that mean "this ciphertext does not authenticate" rather
// than "the token is unwell". SoftHSM2 2.6 reports a GCM tag mismatch as
// CKR_GENERAL_ERROR, others (and opencryptoki for a bad OAEP encoding) as
// CKR_ENCRYPTED_DATA_INVALID or CKR_FUNCTION_FAILED; a real device fault
// reported as CKR_GENERAL_ERROR is then also treated as a bad ciphertext,
// which still fails closed.
func isDataError(rv pkcs11.Error) bool {
	switch rv {
	case pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE,
		pkcs11.CKR_DATA_INVALID, pkcs11.CKR_DATA_LEN_RANGE, pkcs11.CKR_FUNCTION_FAILED,
		pkcs11.CKR_GENERAL_ERROR:
		return true
	}
	return false
}
