package provenance

import (
	"crypto/ed25519"
	"testing"
)

// FuzzVerify: Verify never panics on a payload and signature from an
// untrusted server, and accepts only what the key signed.
func FuzzVerify(f *testing.F) {
	seed := make([]byte, ed25519.SeedSize)
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	s, err := Sign(priv, testRecord())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(s.Payload, s.Signature)
	f.Add([]byte(`{"version":1}`), make([]byte, ed25519.SignatureSize))
	f.Add([]byte(`null`), []byte{})
	f.Fuzz(func(t *testing.T, payload, sig []byte) {
		r, err := Verify(pub, &Signed{Payload: payload, Signature: sig, KeyID: KeyID(pub)})
		if err == nil && (r == nil || !ed25519.Verify(pub, message(payload), sig)) {
			t.Fatal("accepted a record the key did not sign")
		}
	})
}
