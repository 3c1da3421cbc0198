package sealtest

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" // #nosec G505 -- the attack tool must make SHA-1 OAEP, which SoftHSM2 2.6 uses; never in the server
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"

	"github.com/moonvault/moonvault/internal/fips"
	"github.com/moonvault/moonvault/internal/seal"
)

// Forger is what a storage-only attacker (threat model T4: it writes the
// bbolt file or the PostgreSQL rows, it cannot reach the HSM) can make of
// an rsa_oaep seal with nothing but the public key of its key pair: seal
// ciphertexts of plaintexts of its choosing, in the layout of package
// seal (internal/seal/format.go), with RSA-OAEP done in Go. It is a
// seal.Seal, so it can wrap a root key, a seal-wrapped keyring
// (sealwrap.New(forger) as the barrier's wrapper) or any CSP envelope.
//
// Unsigned forges the layout rsa_oaep had before its ciphertexts were
// signed; otherwise the forger makes the signed layout with a signature
// it cannot compute (random bytes), naming SignLabel.
type Forger struct {
	Pub       *rsa.PublicKey
	KeyLabel  string
	SignLabel string
	SHA1      bool // OAEP with SHA-1 (SoftHSM2 2.6), else SHA-256
	Unsigned  bool
}

var _ seal.Seal = (*Forger)(nil)

// Mechanism bytes and names of package seal's format.
const (
	forgeVersion   = 0x02
	forgeSHA256    = 3
	forgeSHA1      = 4
	forgeSHA256PSS = 5
	forgeSHA1PSS   = 6
)

func (f *Forger) id() (byte, string) {
	switch {
	case f.Unsigned && f.SHA1:
		return forgeSHA1, "rsa_oaep_sha1"
	case f.Unsigned:
		return forgeSHA256, "rsa_oaep_sha256"
	case f.SHA1:
		return forgeSHA1PSS, "rsa_oaep_sha1_pss"
	}
	return forgeSHA256PSS, "rsa_oaep_sha256_pss"
}

// Type is "pkcs11", as the seal it imitates.
func (f *Forger) Type() string { return "pkcs11" }

// KeyID is the key id the real seal would record.
func (f *Forger) KeyID() string {
	_, name := f.id()
	id := "pkcs11:" + name + ":" + f.KeyLabel
	if !f.Unsigned {
		id += ":" + f.SignLabel
	}
	return id
}

// EnsureKey does nothing: the attacker has no HSM.
func (f *Forger) EnsureKey(context.Context) (bool, error) { return false, nil }

// Decrypt is beyond the attacker: it holds no private key.
func (f *Forger) Decrypt(context.Context, []byte, []byte) ([]byte, error) {
	return nil, errors.New("sealtest: the forger cannot decrypt")
}

// Encrypt makes a ciphertext the HSM's private key decrypts.
func (f *Forger) Encrypt(_ context.Context, plaintext, aad []byte) ([]byte, error) {
	id, _ := f.id()
	sign := ""
	if !f.Unsigned {
		sign = f.SignLabel
	}
	if len(f.KeyLabel) > 255 || len(sign) > 255 {
		return nil, errors.New("sealtest: a label is longer than 255 bytes")
	}
	h := []byte{forgeVersion, id, byte(len(f.KeyLabel))} // #nosec G115 -- checked above
	h = append(h, f.KeyLabel...)
	h = append(h, byte(len(sign))) // #nosec G115 -- checked above
	h = append(h, sign...)

	dek := make([]byte, 32)
	_, _ = rand.Read(dek)
	var w []byte
	var err error
	if f.SHA1 {
		// SHA-1 is outside Go's FIPS 140-3 boundary (the suite also runs
		// under fips140=only); only this test-side computation uses it.
		fips.Outside(func() { w, err = rsa.EncryptOAEP(sha1.New(), rand.Reader, f.Pub, dek, nil) }) // #nosec G401 -- OAEP-SHA-1 as SoftHSM2 2.6 does it, in the attack tool only
	} else {
		w, err = rsa.EncryptOAEP(oaepHash(), rand.Reader, f.Pub, dek, nil)
	}
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(dek)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCMWithRandomNonce(b)
	if err != nil {
		return nil, err
	}
	body := binary.BigEndian.AppendUint16(nil, uint16(len(w))) // #nosec G115 -- an RSA ciphertext is at most 512 bytes
	body = append(body, w...)
	body = g.Seal(body, nil, plaintext, append(append([]byte{}, h...), aad...)) // #nosec G407 -- NewGCMWithRandomNonce draws the nonce
	out := append([]byte{}, h...)
	if !f.Unsigned {
		sig := make([]byte, f.Pub.Size()) // the attacker cannot sign: a made-up signature
		_, _ = rand.Read(sig)
		out = binary.BigEndian.AppendUint16(out, uint16(len(sig))) // #nosec G115 -- at most 512 bytes
		out = append(out, sig...)
	}
	return append(out, body...), nil
}

func oaepHash() hash.Hash { return sha256.New() }
