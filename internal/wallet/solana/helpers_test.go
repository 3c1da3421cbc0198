package solana

import (
	"crypto/ed25519"
	"crypto/sha256"
	"testing"

	sol "github.com/gagliardetto/solana-go"

	"github.com/moonvault/moonvault/internal/secret"
)

type signer struct {
	raw  secret.Bytes
	pub  sol.PublicKey
	key  *Key
	priv sol.PrivateKey // solana-go's form, for independent signing
}

func newSigner(t testing.TB, seed string) *signer {
	t.Helper()
	h := sha256.Sum256([]byte(seed))
	priv := ed25519.NewKeyFromSeed(h[:])
	pub := priv.Public().(ed25519.PublicKey)
	k, err := NewKey(secret.Bytes(h[:]).Clone(), pub)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{raw: secret.Bytes(h[:]).Clone(), pub: sol.PublicKeyFromBytes(pub), key: k, priv: sol.PrivateKey(priv)}
}

func blockhash(s string) sol.Hash { return sol.Hash(sha256.Sum256([]byte(s))) }

func buildTx(t testing.TB, payer sol.PublicKey, ins []sol.Instruction, opts ...sol.TransactionOption) *sol.Transaction {
	t.Helper()
	tx, err := sol.NewTransaction(ins, blockhash("recent"), append([]sol.TransactionOption{sol.TransactionPayer(payer)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

func b64(t testing.TB, tx *sol.Transaction) string {
	t.Helper()
	s, err := tx.ToBase64()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tokenIx builds an SPL Token instruction from its data and accounts.
func tokenIx(program sol.PublicKey, data []byte, metas ...*sol.AccountMeta) sol.Instruction {
	return sol.NewInstruction(program, sol.AccountMetaSlice(metas), data)
}
