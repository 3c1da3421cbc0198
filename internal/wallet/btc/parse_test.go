package btc

import (
	"bufio"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/moonvault/moonvault/internal/errkind"
)

// TestParseFail: each case spoils a good PSBT and names the field the
// error must name.
func TestParseFail(t *testing.T) {
	me := newSigner(t, "me", Mainnet, P2WPKH)
	tr := newSigner(t, "tr", Mainnet, P2TR)
	other := newSigner(t, "other", Mainnet, P2WPKH)
	fund := prevTx(pay(me.acct.Script, 50_000), pay(other.acct.Script, 50_000), pay(tr.acct.Script, 50_000))
	good := func() (*psbt.Packet, []coin) {
		coins := []coin{{prev: fund, idx: 0, nonWitness: true, witness: true}, {prev: fund, idx: 1, witness: true}, {prev: fund, idx: 2, witness: true}}
		return buildPSBT(t, coins, []*wire.TxOut{pay(other.acct.Script, 60_000), pay(me.acct.Script, 39_000)}), coins
	}
	for _, tc := range []struct {
		name   string
		signer *signer
		opt    Options
		spoil  func(p *psbt.Packet)
		field  string // the *errkind.Field name; "" for ErrNothingToSign
		msg    string
	}{
		{"missing utxo data", me, Options{}, func(p *psbt.Packet) { p.Inputs[1].WitnessUtxo = nil }, "inputs[1].witness_utxo", "missing"},
		{"P2WPKH without its previous transaction (BIP-143 fee attack)", me, Options{}, func(p *psbt.Packet) { p.Inputs[0].NonWitnessUtxo = nil }, "inputs[0].non_witness_utxo", "CVE-2020-14199"},
		{"witness amount differs from previous transaction", me, Options{}, func(p *psbt.Packet) { p.Inputs[0].WitnessUtxo.Value = 1 }, "inputs[0].witness_utxo", "amount 1 differs"},
		{"witness script differs from previous transaction", me, Options{}, func(p *psbt.Packet) { p.Inputs[0].WitnessUtxo.PkScript = other.acct.Script }, "inputs[0].witness_utxo", "script differs"},
		{"previous transaction is another one", me, Options{}, func(p *psbt.Packet) { p.Inputs[0].NonWitnessUtxo = prevTx(pay(me.acct.Script, 50_000)) }, "inputs[0].non_witness_utxo", "txid differs"},
		{"previous transaction lacks the output", me, Options{}, func(p *psbt.Packet) { p.UnsignedTx.TxIn[0].PreviousOutPoint.Index = 7 }, "inputs[0].non_witness_utxo", "has no output 7"},
		{"negative input amount", me, Options{}, func(p *psbt.Packet) { p.Inputs[1].WitnessUtxo.Value = -5 }, "inputs[1].witness_utxo", "out of range"},
		{"input amount above 21M BTC", me, Options{}, func(p *psbt.Packet) { p.Inputs[2].WitnessUtxo.Value = 21_000_000*100_000_000 + 1 }, "inputs[2].witness_utxo", "out of range"},
		{"non-standard input script", me, Options{}, func(p *psbt.Packet) { p.Inputs[1].WitnessUtxo.PkScript = []byte{txscript.OP_TRUE} }, "inputs[1].witness_utxo", "non-standard"},
		{"non-standard output script", me, Options{}, func(p *psbt.Packet) { p.UnsignedTx.TxOut[0].PkScript = []byte{txscript.OP_TRUE} }, "outputs[0].script", "non-standard"},
		{"negative output", me, Options{}, func(p *psbt.Packet) { p.UnsignedTx.TxOut[0].Value = -1 }, "outputs[0].amount", "out of range"},
		{"outputs exceed inputs", me, Options{}, func(p *psbt.Packet) { p.UnsignedTx.TxOut[0].Value = 200_000 }, "outputs", "inputs hold 150000"},
		{"duplicate input", me, Options{}, func(p *psbt.Packet) {
			p.UnsignedTx.TxIn[2].PreviousOutPoint = p.UnsignedTx.TxIn[1].PreviousOutPoint
		}, "inputs[2]", "same output as inputs[1]"},
		{"SIGHASH_NONE refused", me, Options{}, func(p *psbt.Packet) { p.Inputs[0].SighashType = txscript.SigHashNone }, "inputs[0].sighash_type", "SIGHASH_NONE is refused"},
		{"ANYONECANPAY refused", tr, Options{}, func(p *psbt.Packet) { p.Inputs[2].SighashType = txscript.SigHashAll | txscript.SigHashAnyOneCanPay }, "inputs[2].sighash_type", "SIGHASH_ALL|ANYONECANPAY is refused"},
		{"invalid sighash value", me, Options{AllowExoticSighash: true}, func(p *psbt.Packet) { p.Inputs[0].SighashType = 0x04 }, "inputs[0].sighash_type", "not a valid sighash type"},
		{"SINGLE without an output", tr, Options{AllowExoticSighash: true}, func(p *psbt.Packet) { p.Inputs[2].SighashType = txscript.SigHashSingle }, "inputs[2].sighash_type", "without a matching output"},
		{"P2WPKH input with a witness script", me, Options{}, func(p *psbt.Packet) { p.Inputs[0].WitnessScript = []byte{txscript.OP_TRUE} }, "inputs[0]", "witness script"},
		{"Taproot input with a script tree", tr, Options{}, func(p *psbt.Packet) { p.Inputs[2].TaprootMerkleRoot = make([]byte, 32) }, "inputs[2].taproot_merkle_root", "no script tree"},
		{"Taproot input with another internal key", tr, Options{}, func(p *psbt.Packet) { p.Inputs[2].TaprootInternalKey = newSigner(t, "x", Mainnet, P2TR).acct.xonly }, "inputs[2].taproot_internal_key", "not the account's key"},
		{"no input pays the account", newSigner(t, "stranger", Mainnet, P2WPKH), Options{}, func(*psbt.Packet) {}, "", ""},
		{"the account's input is already final", tr, Options{}, func(p *psbt.Packet) { p.Inputs[2].FinalScriptWitness = []byte{0x01, 0x00} }, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := good()
			tc.spoil(p)
			_, err := Parse(encode(t, p), tc.signer.acct, true, tc.opt)
			if err == nil {
				t.Fatal("accepted")
			}
			if errkind.Of(err) != errkind.Invalid {
				t.Fatalf("kind %v: %v", errkind.Of(err), err)
			}
			if tc.field == "" {
				if !errors.Is(err, ErrNothingToSign) {
					t.Fatalf("error %v, want ErrNothingToSign", err)
				}
				return
			}
			var fe *errkind.Field
			if !errors.As(err, &fe) || fe.Name != tc.field || !strings.Contains(fe.Msg, tc.msg) {
				t.Fatalf("error %v, want field %s saying %q", err, tc.field, tc.msg)
			}
		})
	}
	// The good PSBT itself is accepted by both accounts.
	p, _ := good()
	for _, s := range []*signer{me, tr} {
		if _, err := Parse(encode(t, p), s.acct, true, Options{}); err != nil {
			t.Fatalf("the good PSBT: %v", err)
		}
	}
}

// TestParseEncodingFail: malformed text and the BIP-174 invalid vectors
// are refused with a psbt field error, and never panic.
func TestParseEncodingFail(t *testing.T) {
	me := newSigner(t, "me", Mainnet, P2WPKH)
	fund := prevTx(pay(me.acct.Script, 50_000))
	good := encode(t, buildPSBT(t, []coin{{prev: fund, nonWitness: true}}, []*wire.TxOut{pay(me.acct.Script, 40_000)}))
	raw, _ := base64.StdEncoding.DecodeString(good)
	cases := map[string]string{
		"empty":              "",
		"not base64":         "cHNidP8!!!",
		"url alphabet":       strings.NewReplacer("+", "-", "/", "_").Replace(good) + "-_",
		"unpadded":           strings.TrimRight(good, "="),
		"line break":         good[:20] + "\n" + good[20:],
		"leading space":      " " + good,
		"trailing bytes":     base64.StdEncoding.EncodeToString(append(append([]byte(nil), raw...), 0x00)),
		"truncated":          base64.StdEncoding.EncodeToString(raw[:len(raw)-3]),
		"magic only":         base64.StdEncoding.EncodeToString([]byte("psbt\xff")),
		"wrong magic":        base64.StdEncoding.EncodeToString(append([]byte("psbu\xff"), raw[5:]...)),
		"a raw transaction":  base64.StdEncoding.EncodeToString(raw[8:]),
		"oversized psbt":     strings.Repeat("A", base64.StdEncoding.EncodedLen(MaxPSBTSize)+4),
		"hex instead of b64": "70736274ff",
	}
	f, err := os.Open("testdata/fail_bip174_invalid.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if name, b64, ok := strings.Cut(sc.Text(), "\t"); ok && !strings.HasPrefix(name, "#") {
			cases["BIP-174: "+name] = b64
		}
	}
	if len(cases) < 30 {
		t.Fatalf("%d cases", len(cases))
	}
	for name, enc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(enc, me.acct, false, Options{})
			var fe *errkind.Field
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a field error", err)
			}
			if !strings.HasPrefix(fe.Name, "psbt") && !strings.HasPrefix(fe.Name, "inputs") && !strings.HasPrefix(fe.Name, "outputs") {
				t.Fatalf("error names %q", fe.Name)
			}
			if k := errkind.Of(err); k != errkind.Invalid && k != errkind.TooLarge {
				t.Fatalf("kind %v", k)
			}
		})
	}
	if _, err := Parse(good, me.acct, false, Options{}); err != nil {
		t.Fatalf("the good PSBT: %v", err)
	}
}
