package solana

import (
	"testing"

	sol "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/programs/system"
)

// BenchmarkSignTransfer is the library part of Solana sign-transaction:
// decode a base64 transfer, check it, describe it, sign, encode.
func BenchmarkSignTransfer(b *testing.B) {
	me, dest := newSigner(b, "me"), newSigner(b, "dest")
	enc := b64(b, buildTx(b, me.pub, []sol.Instruction{system.NewTransferInstruction(1, me.pub, dest.pub).Build()}))
	b.ReportAllocs()
	for b.Loop() {
		p, err := ParseTransaction(enc, me.pub[:])
		if err != nil {
			b.Fatal(err)
		}
		_ = p.Intent()
		if _, err := p.SignTransaction(me.key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignMessage(b *testing.B) {
	me := newSigner(b, "me")
	b.ReportAllocs()
	for b.Loop() {
		m, err := ParseMessage([]byte("hello"))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.SignMessage(me.key); err != nil {
			b.Fatal(err)
		}
	}
}
