package btc

import (
	"encoding/hex"
	"encoding/json"
	"math/big"
	"testing"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/wallet/chain"
)

// signAll has each signer sign (and finalize) in turn, then extracts the
// transaction and runs the script engine on every input.
func signAll(t *testing.T, p *psbt.Packet, coins []coin, opt Options, signers ...*signer) {
	t.Helper()
	enc := encode(t, p)
	for _, s := range signers {
		r, err := Parse(enc, s.acct, true, opt)
		if err != nil {
			t.Fatalf("%s: %v", s.acct.Address, err)
		}
		res, err := r.SignPSBT(s.key)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.SignedInputs) == 0 {
			t.Fatal("nothing signed")
		}
		enc = res.PSBT
	}
	out := decode(t, enc)
	if !out.IsComplete() {
		t.Fatal("the PSBT is not complete")
	}
	tx, err := psbt.Extract(out)
	if err != nil {
		t.Fatal(err)
	}
	verifyTx(t, tx, coins)
}

func TestEndToEnd(t *testing.T) {
	for _, net := range []Network{Mainnet, Testnet, Signet, Regtest} {
		t.Run(string(net), func(t *testing.T) {
			wpkh := newSigner(t, "alice", net, P2WPKH)
			tr := newSigner(t, "bob", net, P2TR)
			other := newSigner(t, "carol", net, P2WPKH)
			dest := newSigner(t, "dave", net, P2TR).acct.Script
			// One funding transaction with outputs to all three.
			fund := prevTx(pay(wpkh.acct.Script, 50_000), pay(tr.acct.Script, 70_000), pay(other.acct.Script, 30_000), pay(wpkh.acct.Script, 20_000))
			fund2 := prevTx(pay(tr.acct.Script, 11_000))
			coins := []coin{
				{prev: fund, idx: 0, nonWitness: true},                // alice, previous tx only
				{prev: fund, idx: 1, witness: true},                   // bob (Taproot needs only witness_utxo)
				{prev: fund, idx: 2, witness: true, nonWitness: true}, // carol
				{prev: fund, idx: 3, witness: true, nonWitness: true}, // alice, both
				{prev: fund2, idx: 0, witness: true},                  // bob
			}
			outs := []*wire.TxOut{pay(dest, 100_000), pay(wpkh.acct.Script, 40_000), pay(tr.acct.Script, 35_000)}
			p := buildPSBT(t, coins, outs)
			signAll(t, p, coins, Options{}, wpkh, tr, other)
		})
	}
}

func TestEndToEndExoticSighash(t *testing.T) {
	wpkh := newSigner(t, "alice", Regtest, P2WPKH)
	tr := newSigner(t, "bob", Regtest, P2TR)
	fund := prevTx(pay(wpkh.acct.Script, 50_000), pay(tr.acct.Script, 50_000), pay(wpkh.acct.Script, 50_000), pay(tr.acct.Script, 50_000))
	coins := []coin{
		{prev: fund, idx: 0, nonWitness: true},
		{prev: fund, idx: 1, witness: true},
		{prev: fund, idx: 2, nonWitness: true},
		{prev: fund, idx: 3, witness: true},
	}
	p := buildPSBT(t, coins, []*wire.TxOut{pay(wpkh.acct.Script, 90_000), pay(tr.acct.Script, 90_000)})
	p.Inputs[0].SighashType = txscript.SigHashSingle | txscript.SigHashAnyOneCanPay
	p.Inputs[1].SighashType = txscript.SigHashNone
	p.Inputs[2].SighashType = txscript.SigHashAll | txscript.SigHashAnyOneCanPay
	p.Inputs[3].SighashType = txscript.SigHashAll // explicit ALL: a 65-byte Schnorr signature
	if _, err := Parse(encode(t, p), wpkh.acct, false, Options{}); err == nil {
		t.Fatal("exotic sighash accepted by default")
	}
	signAll(t, p, coins, Options{AllowExoticSighash: true}, wpkh, tr)
}

// TestSignWithoutFinalize: partial signatures are left for a finalizer;
// btcd finalizes and the engine accepts them.
func TestSignWithoutFinalize(t *testing.T) {
	a := newSigner(t, "alice", Testnet, P2WPKH)
	b := newSigner(t, "bob", Testnet, P2TR)
	fund := prevTx(pay(a.acct.Script, 10_000), pay(b.acct.Script, 10_000))
	coins := []coin{{prev: fund, idx: 0, nonWitness: true}, {prev: fund, idx: 1, witness: true}}
	enc := encode(t, buildPSBT(t, coins, []*wire.TxOut{pay(a.acct.Script, 19_000)}))
	for _, s := range []*signer{a, b} {
		r, err := Parse(enc, s.acct, false, Options{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := r.SignPSBT(s.key)
		if err != nil {
			t.Fatal(err)
		}
		enc = res.PSBT
	}
	p := decode(t, enc)
	if len(p.Inputs[0].PartialSigs) != 1 || len(p.Inputs[1].TaprootKeySpendSig) != 64 || p.IsComplete() {
		t.Fatal("expected one partial signature and one key-spend signature, not finalized")
	}
	// Signing again replaces this key's partial signature, never duplicates it.
	r, err := Parse(enc, a.acct, false, Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.SignPSBT(a.key)
	if err != nil {
		t.Fatal(err)
	}
	p = decode(t, res.PSBT)
	if len(p.Inputs[0].PartialSigs) != 1 {
		t.Fatalf("%d partial signatures after signing twice", len(p.Inputs[0].PartialSigs))
	}
	if err := psbt.MaybeFinalizeAll(p); err != nil {
		t.Fatal(err)
	}
	tx, err := psbt.Extract(p)
	if err != nil {
		t.Fatal(err)
	}
	verifyTx(t, tx, coins)
	if _, err := r.SignPSBT(a.key); err == nil {
		t.Fatal("a request signed twice")
	}
}

func TestIntent(t *testing.T) {
	me := newSigner(t, "me", Mainnet, P2WPKH)
	other := newSigner(t, "other", Mainnet, P2TR)
	dest := newSigner(t, "dest", Mainnet, P2TR)
	opReturn := []byte{txscript.OP_RETURN, 0x04, 'm', 'o', 'o', 'n'}
	fund := prevTx(pay(me.acct.Script, 60_000), pay(me.acct.Script, 40_000), pay(other.acct.Script, 500_000))
	for _, tc := range []struct {
		name    string
		coins   []coin
		outs    []*wire.TxOut
		value   int64
		to      string
		outputs int
	}{
		{
			name:  "payment with change: value is payment plus fee",
			coins: []coin{{prev: fund, idx: 0, nonWitness: true}, {prev: fund, idx: 1, nonWitness: true}},
			outs:  []*wire.TxOut{pay(me.acct.Script, 25_000), pay(dest.acct.Script, 70_000)},
			value: 75_000, to: dest.acct.Address, outputs: 1,
		},
		{
			name:  "OP_RETURN first: to is the first output with an address",
			coins: []coin{{prev: fund, idx: 0, nonWitness: true}},
			outs:  []*wire.TxOut{pay(opReturn, 0), pay(dest.acct.Script, 50_000), pay(me.acct.Script, 9_000)},
			value: 51_000, to: dest.acct.Address, outputs: 2,
		},
		{
			name:  "consolidation: only the fee leaves",
			coins: []coin{{prev: fund, idx: 0, nonWitness: true}, {prev: fund, idx: 1, nonWitness: true}},
			outs:  []*wire.TxOut{pay(me.acct.Script, 99_000)},
			value: 1_000, to: "", outputs: 0,
		},
		{
			name:  "payjoin: another party's input pays the recipient; this account nets in",
			coins: []coin{{prev: fund, idx: 0, nonWitness: true}, {prev: fund, idx: 2, witness: true}},
			outs:  []*wire.TxOut{pay(me.acct.Script, 100_000), pay(dest.acct.Script, 459_000)},
			value: 0, to: dest.acct.Address, outputs: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Parse(encode(t, buildPSBT(t, tc.coins, tc.outs)), me.acct, false, Options{})
			if err != nil {
				t.Fatal(err)
			}
			in := r.Intent()
			if in.Chain != intent.ChainBitcoin || in.Network != "mainnet" || in.Kind != intent.KindPSBT {
				t.Fatalf("intent header %+v", in)
			}
			if in.Value.Cmp(big.NewInt(tc.value)) != 0 || in.To != tc.to || len(in.Outputs) != tc.outputs {
				t.Fatalf("value %s to %q outputs %d; want %d %q %d", in.Value, in.To, len(in.Outputs), tc.value, tc.to, tc.outputs)
			}
			for _, o := range in.Outputs {
				if o.Script == hex.EncodeToString(me.acct.Script) {
					t.Fatal("change listed as an output")
				}
			}
			// The intent is a copy: changing it changes nothing.
			in.Value.SetInt64(-1)
			if r.Intent().Value.Sign() < 0 {
				t.Fatal("Intent returns shared state")
			}
		})
	}
}

// TestChainInterface drives the package through chain.Chain, as the sign
// pipeline will.
func TestChainInterface(t *testing.T) {
	var c chain.Chain = Chain{}
	s := newSigner(t, "chain", Signet, P2TR)
	acct := chain.Account{Options: chain.Options{Network: "signet", AddressType: "p2tr"}, Address: s.acct.Address, PublicKey: s.acct.PublicKey}
	key, err := c.NewKey(s.raw, acct)
	if err != nil {
		t.Fatal(err)
	}
	defer key.Destroy()
	fund := prevTx(pay(s.acct.Script, 10_000))
	coins := []coin{{prev: fund, idx: 0, witness: true}}
	p := buildPSBT(t, coins, []*wire.TxOut{pay(s.acct.Script, 9_000)})
	req, err := c.Parse(chain.Input{Op: chain.OpSignPSBT, Encoded: encode(t, p), Finalize: true}, acct)
	if err != nil {
		t.Fatal(err)
	}
	if in := req.Intent(); in.Value.Int64() != 1_000 {
		t.Fatalf("value %s", in.Value)
	}
	ans, err := req.Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ans)
	var body struct {
		PSBT         string `json:"psbt"`
		SignedInputs []int  `json:"signed_inputs"`
	}
	if err := json.Unmarshal(b, &body); err != nil || len(body.SignedInputs) != 1 {
		t.Fatalf("answer %s", b)
	}
	tx, err := psbt.Extract(decode(t, body.PSBT))
	if err != nil {
		t.Fatal(err)
	}
	verifyTx(t, tx, coins)
	if _, err := c.Parse(chain.Input{Op: chain.OpSignMessage, Message: []byte("hi")}, acct); err == nil {
		t.Fatal("sign-message accepted for Bitcoin")
	}
	wrong := acct
	wrong.Address = newSigner(t, "x", Signet, P2TR).acct.Address
	if _, err := c.Parse(chain.Input{Op: chain.OpSignPSBT, Encoded: encode(t, p)}, wrong); err == nil {
		t.Fatal("an account whose address does not match its key was accepted")
	}
}
