package seal

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/secret"
)

// A seal ciphertext records how it was made:
//
//	0x02 | mechanism (1) | len (1) | key label | len (1) | auth key label | body
//
// The auth key is the HMAC key of aes_cbc_pad_hmac and the RSA signing key
// pair of rsa_oaep; aes_gcm has none. The header is authenticated with the
// caller's associated data by every mechanism, so neither the mechanism
// nor a label can be swapped. Bodies:
//
//	aes_gcm           hsm.EncryptGCM: 0x01 | iv (12) | ciphertext | tag (16),
//	                  GCM AAD = 0x01 | header | aad
//	aes_cbc_pad_hmac  iv (16) | CBC-PAD ciphertext | HMAC-SHA-256 (32) over
//	                  macPrefix | u32 len(header) | header | u64 len(aad) | aad | iv | ciphertext
//	rsa_oaep_*_pss    u16 len(sig) | sig | rest, where
//	                  rest = u16 len(w) | w = OAEP(data key) | nonce (12) | ciphertext | tag (16):
//	                  AES-256-GCM under the data key, AAD = header | aad;
//	                  sig = RSASSA-PSS-SHA-256 by the signing key over
//	                  sigPrefix | u32 len(header) | header | u64 len(aad) | aad | rest
//
// RSA-OAEP encrypts with the public key, which is no secret: anyone can
// make a ciphertext the private key opens. The signature, which only the
// HSM can make, is what authenticates an rsa_oaep ciphertext; it is
// verified on the token before anything is decrypted. Ciphertexts of the
// earlier, unsigned rsa_oaep layout (mechanisms 3 and 4, no auth key) are
// refused: a storage attacker could have made them.
//
// A ciphertext that starts with 0x01 predates this format (aes_gcm under
// the configured key label, AAD = aad alone); it still decrypts, and
// operator rewrap moves it to this format.
const (
	blobVersion   = 0x02
	legacyVersion = 0x01 // hsm.EncryptGCM's own version byte
	maxLabel      = 128
	dataKeyLen    = 32
	macPrefix     = "moonvault seal cbc-hmac\x00"
	sigPrefix     = "moonvault seal rsa-oaep-pss\x00"
)

// mechID is the mechanism byte of the header.
type mechID byte

const (
	idAESGCM        mechID = 1
	idAESCBCPadHMAC mechID = 2
	// idUnsignedOAEPSHA256 and idUnsignedOAEPSHA1 are the unsigned rsa_oaep
	// layout: parsed only to be refused with a clear error.
	idUnsignedOAEPSHA256 mechID = 3
	idUnsignedOAEPSHA1   mechID = 4
	idRSAOAEPSHA256      mechID = 5 // OAEP-SHA-256 data key, PSS-SHA-256 signature
	idRSAOAEPSHA1        mechID = 6 // OAEP-SHA-1 data key, PSS-SHA-256 signature
)

func (id mechID) String() string {
	switch id {
	case idAESGCM:
		return "aes_gcm"
	case idAESCBCPadHMAC:
		return "aes_cbc_pad_hmac"
	case idUnsignedOAEPSHA256:
		return "rsa_oaep_sha256"
	case idUnsignedOAEPSHA1:
		return "rsa_oaep_sha1"
	case idRSAOAEPSHA256:
		return "rsa_oaep_sha256_pss"
	case idRSAOAEPSHA1:
		return "rsa_oaep_sha1_pss"
	}
	return fmt.Sprintf("mechanism(%d)", byte(id))
}

// hasAuthKey reports whether the mechanism has a second key that
// authenticates its ciphertexts (an HMAC or a signing key).
func (id mechID) hasAuthKey() bool {
	return id == idAESCBCPadHMAC || id == idRSAOAEPSHA256 || id == idRSAOAEPSHA1
}

// scheme is one mechanism with its key labels.
type scheme struct {
	id   mechID
	key  string // AES key, or RSA (OAEP) key pair
	auth string // HMAC key (aes_cbc_pad_hmac) or RSA signing key pair (rsa_oaep)
}

// keyID is "pkcs11:<mechanism>:<key label>[:<auth key label>]".
func (s scheme) keyID() string {
	id := "pkcs11:" + s.id.String() + ":" + s.key
	if s.auth != "" {
		id += ":" + s.auth
	}
	return id
}

func (s scheme) header() []byte {
	h := make([]byte, 0, 4+len(s.key)+len(s.auth))
	h = append(h, blobVersion, byte(s.id), byte(len(s.key))) // #nosec G115 -- labels are at most maxLabel bytes (Config.validate)
	h = append(h, s.key...)
	h = append(h, byte(len(s.auth))) // #nosec G115 -- labels are at most maxLabel bytes (Config.validate)
	return append(h, s.auth...)
}

func (s scheme) oaepHash() hsm.OAEPHash {
	if s.id == idRSAOAEPSHA1 {
		return hsm.OAEPSHA1
	}
	return hsm.OAEPSHA256
}

// parseBlob splits a v2 ciphertext into its scheme, header and body.
func parseBlob(b []byte) (scheme, []byte, []byte, error) {
	bad := func(why string) (scheme, []byte, []byte, error) {
		return scheme{}, nil, nil, fmt.Errorf("%w: malformed ciphertext: %s", ErrDecrypt, why)
	}
	if len(b) < 4 || b[0] != blobVersion {
		return bad("unknown version")
	}
	s := scheme{id: mechID(b[1])}
	switch s.id {
	case idAESGCM, idAESCBCPadHMAC, idRSAOAEPSHA256, idRSAOAEPSHA1:
	case idUnsignedOAEPSHA256, idUnsignedOAEPSHA1:
		return scheme{}, nil, nil, fmt.Errorf("%w: an %s ciphertext without a signature (the layout before rsa_oaep was signed): "+
			"refused, since anyone with the public key can make one (docs/threat-model.md)", ErrDecrypt, s.id)
	default:
		return bad(fmt.Sprintf("unknown mechanism %d", b[1]))
	}
	n := int(b[2])
	if len(b) < 4+n {
		return bad("truncated key label")
	}
	s.key = string(b[3 : 3+n])
	m := int(b[3+n])
	end := 4 + n + m
	if len(b) < end {
		return bad("truncated auth key label")
	}
	s.auth = string(b[4+n : end])
	if s.key == "" || (s.auth != "") != s.id.hasAuthKey() {
		return bad("labels do not fit the mechanism")
	}
	return s, b[:end], b[end:], nil
}

func joinAAD(header, aad []byte) []byte {
	out := make([]byte, 0, len(header)+len(aad))
	return append(append(out, header...), aad...)
}

// authInput is what a MAC or signature covers: prefix (one per
// mechanism) | u32 len(header) | header | u64 len(aad) | aad | body.
func authInput(prefix string, header, aad, body []byte) []byte {
	out := make([]byte, 0, len(prefix)+4+len(header)+8+len(aad)+len(body))
	out = append(out, prefix...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(header))) // #nosec G115 -- a header is at most 2*maxLabel+4 bytes
	out = append(out, header...)
	out = binary.BigEndian.AppendUint64(out, uint64(len(aad)))
	out = append(out, aad...)
	return append(out, body...)
}

// encrypt makes a v2 ciphertext with scheme s on module m.
func (s scheme) encrypt(ctx context.Context, m *hsm.Module, rnd io.Reader, plaintext, aad []byte) ([]byte, error) {
	h := s.header()
	switch s.id {
	case idAESGCM:
		body, err := m.EncryptGCM(ctx, s.key, plaintext, joinAAD(h, aad))
		if err != nil {
			return nil, err
		}
		return append(h, body...), nil
	case idAESCBCPadHMAC:
		ivct, err := m.EncryptCBC(ctx, s.key, plaintext)
		if err != nil {
			return nil, err
		}
		tag, err := m.SignHMAC(ctx, s.auth, authInput(macPrefix, h, aad, ivct))
		if err != nil {
			return nil, err
		}
		out := make([]byte, 0, len(h)+len(ivct)+len(tag))
		return append(append(append(out, h...), ivct...), tag...), nil
	default: // RSA-OAEP, signed
		rest, err := s.encryptOAEP(ctx, m, rnd, h, plaintext, aad)
		if err != nil {
			return nil, err
		}
		sig, err := m.SignPSS(ctx, s.auth, authInput(sigPrefix, h, aad, rest))
		if err != nil {
			return nil, err
		}
		out := make([]byte, 0, len(h)+2+len(sig)+len(rest))
		out = append(out, h...)
		out = binary.BigEndian.AppendUint16(out, uint16(len(sig))) // #nosec G115 -- hsm.SignPSS returns at most 512 bytes
		out = append(out, sig...)
		return append(out, rest...), nil
	}
}

// encryptOAEP makes rsa_oaep's rest: u16 len(w) | w | AES-256-GCM of
// plaintext under the data key that w wraps.
func (s scheme) encryptOAEP(ctx context.Context, m *hsm.Module, rnd io.Reader, h, plaintext, aad []byte) ([]byte, error) {
	dek := make(secret.Bytes, dataKeyLen)
	defer dek.Destroy()
	// The data key is a CSP: it comes from the vault's entropy source
	// (the OS mixed with the HSM, under health tests; PKCS11.SetRand),
	// and a failed draw fails the encryption.
	if _, err := io.ReadFull(rnd, dek); err != nil {
		return nil, fmt.Errorf("seal: draw the data key: %w", err)
	}
	w, err := m.EncryptOAEP(ctx, s.key, s.oaepHash(), dek)
	if err != nil {
		return nil, err
	}
	if len(w) > 0xFFFF {
		return nil, fmt.Errorf("seal: OAEP ciphertext of %d bytes", len(w))
	}
	g, err := dataKeyAEAD(dek)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 2+len(w)+g.Overhead()+len(plaintext))
	out = binary.BigEndian.AppendUint16(out, uint16(len(w))) // #nosec G115 -- checked above
	out = append(out, w...)
	return g.Seal(out, nil, plaintext, joinAAD(h, aad)), nil // #nosec G407 -- NewGCMWithRandomNonce draws the nonce; it must be nil
}

// decrypt reverses encrypt; header and body come from parseBlob.
func (s scheme) decrypt(ctx context.Context, m *hsm.Module, header, body, aad []byte) ([]byte, error) {
	switch s.id {
	case idAESGCM:
		return m.DecryptGCM(ctx, s.key, body, joinAAD(header, aad))
	case idAESCBCPadHMAC:
		if len(body) < hsm.CBCIVLen+16+hsm.HMACLen {
			return nil, fmt.Errorf("%w: CBC-HMAC body of %d bytes", ErrDecrypt, len(body))
		}
		ivct, tag := body[:len(body)-hsm.HMACLen], body[len(body)-hsm.HMACLen:]
		// Encrypt-then-MAC: nothing is decrypted before the MAC verified.
		if err := m.VerifyHMAC(ctx, s.auth, authInput(macPrefix, header, aad, ivct), tag); err != nil {
			return nil, err
		}
		return m.DecryptCBC(ctx, s.key, ivct)
	default: // RSA-OAEP, signed
		if len(body) < 2 {
			return nil, fmt.Errorf("%w: rsa_oaep body of %d bytes", ErrDecrypt, len(body))
		}
		n := int(binary.BigEndian.Uint16(body))
		if len(body) < 2+n {
			return nil, fmt.Errorf("%w: truncated rsa_oaep signature", ErrDecrypt)
		}
		sig, rest := body[2:2+n], body[2+n:]
		// Only the HSM can sign: nothing is decrypted before the signature
		// verified, so a ciphertext made with the public key is refused.
		if err := m.VerifyPSS(ctx, s.auth, authInput(sigPrefix, header, aad, rest), sig); err != nil {
			if errors.Is(err, hsm.ErrDecrypt) {
				return nil, fmt.Errorf("%w: the signature by %q does not verify (not made by this HSM, or altered)", err, s.auth)
			}
			return nil, err
		}
		return s.decryptOAEP(ctx, m, header, rest, aad)
	}
}

// decryptOAEP reverses encryptOAEP; rest is authenticated already.
func (s scheme) decryptOAEP(ctx context.Context, m *hsm.Module, header, rest, aad []byte) ([]byte, error) {
	if len(rest) < 2 {
		return nil, fmt.Errorf("%w: OAEP body of %d bytes", ErrDecrypt, len(rest))
	}
	n := int(binary.BigEndian.Uint16(rest))
	if len(rest) < 2+n {
		return nil, fmt.Errorf("%w: truncated OAEP data key", ErrDecrypt)
	}
	raw, err := m.DecryptOAEP(ctx, s.key, s.oaepHash(), rest[2:2+n])
	if err != nil {
		return nil, err
	}
	dek := secret.Bytes(raw)
	defer dek.Destroy()
	if len(dek) != dataKeyLen {
		return nil, fmt.Errorf("%w: data key of %d bytes", ErrDecrypt, len(dek))
	}
	g, err := dataKeyAEAD(dek)
	if err != nil {
		return nil, err
	}
	pt, err := g.Open(nil, nil, rest[2+n:], joinAAD(header, aad))
	if err != nil {
		return nil, fmt.Errorf("%w: data key ciphertext does not authenticate", ErrDecrypt)
	}
	return pt, nil
}

// dataKeyAEAD is AES-256-GCM with a random 96-bit nonce drawn by the
// cipher itself, which is how Go's FIPS 140-3 module approves GCM (SP
// 800-38D §8.2.2); it emits nonce || ciphertext || tag.
func dataKeyAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return cipher.NewGCMWithRandomNonce(b)
}
