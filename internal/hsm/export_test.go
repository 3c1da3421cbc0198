package hsm

import (
	"context"

	"github.com/miekg/pkcs11"
)

// CreateSecretKeyForTest creates a secret key the way another tool might
// have, with the given attributes (for the adoption checks): keyType is
// CKK_AES or CKK_GENERIC_SECRET.
func (m *Module) CreateSecretKeyForTest(ctx context.Context, label string, keyType uint, valueLen int, sensitive, extractable bool) error {
	mech := uint(pkcs11.CKM_AES_KEY_GEN)
	if keyType != pkcs11.CKK_AES {
		mech = pkcs11.CKM_GENERIC_SECRET_KEY_GEN
	}
	use := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true)}
	if keyType == pkcs11.CKK_AES {
		use = []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true), pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, true), pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
		}
	}
	return m.withSession(ctx, func(s pkcs11.SessionHandle) error {
		_, err := m.api.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, append([]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, valueLen),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, sensitive),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, extractable),
		}, use...))
		return wrapRV("generate key", err)
	})
}
