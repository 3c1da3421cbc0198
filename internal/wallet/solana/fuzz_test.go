package solana

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"testing"

	sol "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/programs/system"

	"github.com/moonvault/moonvault/internal/errkind"
)

// FuzzParseTransaction feeds raw wire bytes to the parser. What it accepts
// must describe without panicking, sign, verify, and re-encode to the
// same message bytes.
func FuzzParseTransaction(f *testing.F) {
	me, cases := failCases(f)
	other := newSigner(f, "other")
	for _, c := range cases {
		if raw, err := base64.StdEncoding.DecodeString(c.enc); err == nil {
			f.Add(raw)
		}
	}
	for _, tx := range []*sol.Transaction{
		buildTx(f, me.pub, []sol.Instruction{system.NewTransferInstruction(5, me.pub, other.pub).Build()}),
		buildTx(f, other.pub, []sol.Instruction{system.NewTransferInstruction(5, me.pub, other.pub).Build()},
			sol.TransactionAddressTables(map[sol.PublicKey]sol.PublicKeySlice{newSigner(f, "t").pub: {newSigner(f, "d").pub}})),
		buildTx(f, me.pub, []sol.Instruction{tokenIx(sol.TokenProgramID, u64(tokTransferChecked, 1, 2), sol.Meta(other.pub).WRITE(), sol.Meta(newSigner(f, "mint").pub), sol.Meta(newSigner(f, "d").pub).WRITE(), sol.Meta(me.pub).SIGNER())}),
	} {
		raw, err := tx.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		enc := base64.StdEncoding.EncodeToString(raw)
		for _, s := range []*signer{me, other} {
			p, err := ParseTransaction(enc, s.pub[:])
			if err != nil {
				var fe *errkind.Field
				if !errors.As(err, &fe) && !errors.Is(err, ErrNotSigner) {
					t.Fatalf("unnamed error: %v", err)
				}
				continue
			}
			_ = p.Intent()
			res, err := p.SignTransaction(s.key)
			if err != nil {
				t.Fatal(err)
			}
			out, err := base64.StdEncoding.DecodeString(res.Transaction)
			if err != nil || len(out) != len(raw) {
				t.Fatalf("the signed transaction changed size: %v", err)
			}
			again, err := parseTx(out)
			if err != nil {
				t.Fatalf("the signed transaction does not parse: %v", err)
			}
			if !ed25519.Verify(s.pub[:], again.raw, again.sigs[p.slot][:]) {
				t.Fatal("the signature does not verify")
			}
			if string(again.raw) != string(p.tx.raw) {
				t.Fatal("the message changed")
			}
		}
		// sign-message's transaction guard never panics either.
		_ = looksLikeMessage(raw)
	})
}
