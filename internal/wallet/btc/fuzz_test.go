package btc

import (
	"bufio"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/wire"

	"github.com/moonvault/moonvault/internal/errkind"
)

// FuzzParsePSBT feeds raw bytes (base64-encoded for Parse) to the parser
// and the checks. Whatever it accepts must sign, and the signed PSBT must
// parse again.
func FuzzParsePSBT(f *testing.F) {
	me := newSigner(f, "fuzz", Regtest, P2WPKH)
	tr := newSigner(f, "fuzz-tr", Regtest, P2TR)
	fund := prevTx(pay(me.acct.Script, 50_000), pay(tr.acct.Script, 50_000))
	seed := buildPSBT(f, []coin{{prev: fund, idx: 0, nonWitness: true}, {prev: fund, idx: 1, witness: true}}, []*wire.TxOut{pay(me.acct.Script, 90_000)})
	for _, p := range []*psbt.Packet{seed} {
		s := encode(f, p)
		raw, _ := base64.StdEncoding.DecodeString(s)
		f.Add(raw)
	}
	if fl, err := os.Open("testdata/fail_bip174_invalid.txt"); err == nil {
		sc := bufio.NewScanner(fl)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if _, b64, ok := strings.Cut(sc.Text(), "\t"); ok {
				if raw, err := base64.StdEncoding.DecodeString(b64); err == nil {
					f.Add(raw)
				}
			}
		}
		fl.Close()
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		enc := base64.StdEncoding.EncodeToString(raw)
		for _, s := range []*signer{me, tr} {
			r, err := Parse(enc, s.acct, true, Options{AllowExoticSighash: true})
			if err != nil {
				if k := errkind.Of(err); k != errkind.Invalid && k != errkind.TooLarge {
					t.Fatalf("error of kind %v: %v", k, err)
				}
				var fe *errkind.Field
				if !errors.As(err, &fe) && !errors.Is(err, ErrNothingToSign) {
					t.Fatalf("error names no field: %v", err)
				}
				continue
			}
			_ = r.Intent()
			res, err := r.SignPSBT(s.key)
			if err != nil {
				// Finalizing can fail on inputs btcd cannot finalize;
				// signing must not panic, and must not report success.
				continue
			}
			if len(res.SignedInputs) == 0 {
				t.Fatal("signed nothing without an error")
			}
			if _, err := decodePSBT(res.PSBT); err != nil {
				t.Fatalf("the signed PSBT does not parse: %v", err)
			}
		}
	})
}
