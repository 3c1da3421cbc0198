// Package seal is the one layer between the vault and its HSM. A Seal
// encrypts with keys that never leave the HSM; the core uses it to wrap the
// root key (auto-unseal) and package sealwrap to seal-wrap every critical
// security parameter (CSP) and the barrier keyring. PKCS11 is the Seal
// over a PKCS#11 token: it opens the token on first use, reopens it after
// the token went away, stops calling it after a refused PIN, and offers
// the token's random generator to the entropy mixer.
//
// Every ciphertext records how it was made (mechanism and key labels), so
// a vault can move to another mechanism or key with operator rewrap: a
// Seal decrypts whatever its token holds the keys for, and encrypts with
// the configured mechanism and key.
package seal

import (
	"context"
	"errors"
	"fmt"

	"github.com/moonvault/moonvault/internal/errkind"
)

// Seal encrypts with a key the storage and the barrier never see.
type Seal interface {
	// Type is the seal type recorded in the seal configuration ("pkcs11").
	Type() string
	// KeyID names the mechanism and key(s) new ciphertexts are made with.
	// It starts with Type() and a colon; it is defined here, once.
	KeyID() string
	// EnsureKey creates the configured key(s) unless they exist.
	EnsureKey(ctx context.Context) (created bool, err error)
	// Encrypt binds plaintext to aad.
	Encrypt(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	// Decrypt reverses Encrypt of this or an earlier configuration whose
	// keys the HSM still holds; a ciphertext that does not authenticate
	// returns an error wrapping ErrDecrypt.
	Decrypt(ctx context.Context, ciphertext, aad []byte) ([]byte, error)
}

var (
	// ErrDecrypt means a ciphertext did not authenticate: wrong key, wrong
	// associated data, or tampered bytes. Other errors (HSM unavailable) do
	// not wrap it.
	ErrDecrypt = errkind.New(errkind.Integrity, "integrity_error", "seal: decryption failed")
	// ErrNoRetry marks failures that retrying cannot fix and may make worse:
	// the HSM refused the PIN (a real HSM locks after a few failures), no
	// PIN is configured, the library does not load, or the token lacks the
	// configured mechanism. The
	// seal stops calling the token until the process is restarted with a
	// fixed configuration.
	ErrNoRetry = errkind.New(errkind.Unavailable, "hsm_unavailable", "not retrying")
)

// Mechanism is how the seal encrypts (the hsm_mechanism setting).
type Mechanism string

const (
	// AESGCM is CKM_AES_GCM with an AES-256 key (the default).
	AESGCM Mechanism = "aes_gcm"
	// AESCBCPadHMAC is CKM_AES_CBC_PAD with an AES-256 key, then
	// CKM_SHA256_HMAC with a second key over the result (encrypt-then-MAC),
	// for tokens without AES-GCM.
	AESCBCPadHMAC Mechanism = "aes_cbc_pad_hmac"
	// RSAOAEP is CKM_RSA_PKCS_OAEP with an RSA-3072 key pair: it encrypts a
	// fresh AES-256 data key per value; the value itself is AES-256-GCM
	// encrypted under the data key by Go's FIPS 140-3 module. Since the
	// public key encrypts, a second RSA-3072 key pair signs every
	// ciphertext (CKM_SHA256_RSA_PKCS_PSS), and the signature is verified
	// on the token before anything is decrypted: only the HSM can make a
	// ciphertext the seal accepts, as with the other mechanisms.
	RSAOAEP Mechanism = "rsa_oaep"
)

// Mechanisms lists the valid mechanisms, the default first.
var Mechanisms = []Mechanism{AESGCM, AESCBCPadHMAC, RSAOAEP}

// ParseMechanism accepts a mechanism name; "" is the default, aes_gcm.
func ParseMechanism(s string) (Mechanism, error) {
	if s == "" {
		return AESGCM, nil
	}
	for _, m := range Mechanisms {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown mechanism %q: use aes_gcm, aes_cbc_pad_hmac or rsa_oaep", s)
}

// OAEP hash names (the hsm_rsa_oaep_hash setting).
const (
	OAEPSHA256 = "sha256"
	OAEPSHA1   = "sha1"
)

var errNoKeyLabel = errors.New("seal: key label is empty")
