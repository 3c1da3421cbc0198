package btc

import (
	"testing"

	"github.com/btcsuite/btcd/wire"
)

// BenchmarkSignPSBTP2WPKH is the library part of sign-psbt for a typical
// payment: parse a one-input P2WPKH PSBT (with its previous transaction),
// check it, describe it, sign, finalize and encode. Compare with
// wallet/evm's BenchmarkSignMessage.
func BenchmarkSignPSBTP2WPKH(b *testing.B) {
	benchSign(b, P2WPKH, coin{nonWitness: true})
}

func BenchmarkSignPSBTP2TR(b *testing.B) {
	benchSign(b, P2TR, coin{witness: true})
}

func benchSign(b *testing.B, typ AddressType, shape coin) {
	s := newSigner(b, "bench", Mainnet, typ)
	dest := newSigner(b, "dest", Mainnet, P2WPKH)
	shape.prev = prevTx(pay(s.acct.Script, 100_000))
	enc := encode(b, buildPSBT(b, []coin{shape}, []*wire.TxOut{pay(dest.acct.Script, 60_000), pay(s.acct.Script, 39_000)}))
	b.ReportAllocs()
	for b.Loop() {
		r, err := Parse(enc, s.acct, true, Options{})
		if err != nil {
			b.Fatal(err)
		}
		_ = r.Intent()
		if _, err := r.SignPSBT(s.key); err != nil {
			b.Fatal(err)
		}
	}
}
