package btc

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/moonvault/moonvault/internal/secret"
)

// signer is a test account with its key.
type signer struct {
	raw  secret.Bytes
	acct *Account
	key  *Key
}

func newSigner(t testing.TB, seed string, n Network, typ AddressType) *signer {
	t.Helper()
	h := sha256.Sum256([]byte(seed))
	return signerFromKey(t, h[:], n, typ)
}

func signerFromKey(t testing.TB, raw []byte, n Network, typ AddressType) *signer {
	t.Helper()
	_, pub := btcec.PrivKeyFromBytes(raw)
	a, err := NewAccount(pub.SerializeCompressed(), n, typ)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewKey(secret.Bytes(raw).Clone(), a)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{raw: secret.Bytes(raw).Clone(), acct: a, key: k}
}

var prevCounter uint32

// prevTx is a transaction with the given outputs (its single input spends
// a made-up outpoint, so every call gives a new txid).
func prevTx(outs ...*wire.TxOut) *wire.MsgTx {
	prevCounter++
	tx := wire.NewMsgTx(2)
	var h chainhash.Hash
	h[0], h[1] = byte(prevCounter), byte(prevCounter>>8)
	tx.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&h, prevCounter), nil, nil))
	for _, o := range outs {
		tx.AddTxOut(o)
	}
	return tx
}

// coin is an output being spent.
type coin struct {
	prev *wire.MsgTx
	idx  uint32
	// what the PSBT input carries
	witness, nonWitness bool
}

func (c coin) out() *wire.TxOut { return c.prev.TxOut[c.idx] }

func buildPSBT(t testing.TB, coins []coin, outs []*wire.TxOut) *psbt.Packet {
	t.Helper()
	tx := wire.NewMsgTx(2)
	for _, c := range coins {
		h := c.prev.TxHash()
		tx.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&h, c.idx), nil, nil))
	}
	for _, o := range outs {
		tx.AddTxOut(o)
	}
	p, err := psbt.NewFromUnsignedTx(tx)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range coins {
		if c.nonWitness {
			p.Inputs[i].NonWitnessUtxo = c.prev
		}
		if c.witness {
			o := *c.out()
			p.Inputs[i].WitnessUtxo = &o
		}
	}
	return p
}

func encode(t testing.TB, p *psbt.Packet) string {
	t.Helper()
	s, err := p.B64Encode()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func decode(t testing.TB, s string) *psbt.Packet {
	t.Helper()
	p, err := psbt.NewFromRawBytes(bytes.NewReader([]byte(s)), true)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// verifyTx runs btcd's script engine on every input of tx.
func verifyTx(t testing.TB, tx *wire.MsgTx, coins []coin) {
	t.Helper()
	prev := map[wire.OutPoint]*wire.TxOut{}
	for i, c := range coins {
		prev[tx.TxIn[i].PreviousOutPoint] = c.out()
	}
	fetcher := txscript.NewMultiPrevOutFetcher(prev)
	hashes := txscript.NewTxSigHashes(tx, fetcher)
	for i, c := range coins {
		vm, err := txscript.NewEngine(c.out().PkScript, tx, i, txscript.StandardVerifyFlags, nil, hashes, c.out().Value, fetcher)
		if err != nil {
			t.Fatalf("input %d: engine: %v", i, err)
		}
		if err := vm.Execute(); err != nil {
			t.Fatalf("input %d: script fails: %v", i, err)
		}
	}
}

func pay(script []byte, v int64) *wire.TxOut { return wire.NewTxOut(v, script) }
