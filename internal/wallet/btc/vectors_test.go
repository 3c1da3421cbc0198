package btc

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/moonvault/moonvault/internal/secp"
	"github.com/moonvault/moonvault/internal/vectors"
)

func parseTx(t testing.TB, h string) *wire.MsgTx {
	t.Helper()
	tx := wire.NewMsgTx(2)
	if err := tx.Deserialize(bytes.NewReader(vectors.Hex(t, h))); err != nil {
		t.Fatal(err)
	}
	return tx
}

func witnessBytes(t testing.TB, items ...[]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := psbt.WriteTxWitness(&b, items); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestBIP143NativeP2WPKH signs the BIP-143 native P2WPKH example's second
// input with this package's signing path and expects the BIP's sighash and
// signature (RFC 6979 nonces make ECDSA deterministic).
func TestBIP143NativeP2WPKH(t *testing.T) {
	var v struct {
		UnsignedTx string `json:"unsigned_tx"`
		Utxos      []struct {
			Script string
			Amount int64
		}
		Input      int
		PrivateKey string `json:"private_key"`
		PublicKey  string `json:"public_key"`
		Sighash    string
		Signature  string
	}
	vectors.Read(t, "testdata/good_bip143_p2wpkh.json", &v)
	tx := parseTx(t, v.UnsignedTx)
	p, err := psbt.NewFromUnsignedTx(tx)
	if err != nil {
		t.Fatal(err)
	}
	ins := make([]input, len(v.Utxos))
	prev := map[wire.OutPoint]*wire.TxOut{}
	for i, u := range v.Utxos {
		o := wire.NewTxOut(u.Amount, vectors.Hex(t, u.Script))
		p.Inputs[i].WitnessUtxo = o
		ins[i] = input{utxo: o}
		prev[tx.TxIn[i].PreviousOutPoint] = o
	}
	s := signerFromKey(t, vectors.Hex(t, v.PrivateKey), Mainnet, P2WPKH)
	if hex.EncodeToString(s.acct.PublicKey) != v.PublicKey {
		t.Fatalf("public key %x", s.acct.PublicKey)
	}
	if !bytes.Equal(s.acct.Script, p.Inputs[v.Input].WitnessUtxo.PkScript) {
		t.Fatal("the vector's script is not the account's")
	}
	// The sighash, as this package computes it.
	fetcher := txscript.NewMultiPrevOutFetcher(prev)
	hash, err := txscript.CalcWitnessSigHash(s.acct.Script, txscript.NewTxSigHashes(tx, fetcher), txscript.SigHashAll, tx, v.Input, v.Utxos[v.Input].Amount)
	if err != nil || hex.EncodeToString(hash) != v.Sighash {
		t.Fatalf("sighash %x (%v), want %s", hash, err, v.Sighash)
	}
	// The BIP's example has no previous transactions (only their txids), so
	// the request is assembled here rather than by Parse, which requires
	// non_witness_utxo for P2WPKH.
	ins[v.Input].mine, ins[v.Input].sign, ins[v.Input].sighash = true, true, txscript.SigHashAll
	r := &Request{packet: p, acct: s.acct, ins: ins, change: make([]bool, len(tx.TxOut)), finalize: true}
	res, err := r.SignPSBT(s.key)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.SignedInputs) != 1 || res.SignedInputs[0] != v.Input {
		t.Fatalf("signed inputs %v", res.SignedInputs)
	}
	out := decode(t, res.PSBT)
	want := witnessBytes(t, vectors.Hex(t, v.Signature), s.acct.PublicKey)
	if !bytes.Equal(out.Inputs[v.Input].FinalScriptWitness, want) {
		t.Fatalf("witness %x\nwant    %x", out.Inputs[v.Input].FinalScriptWitness, want)
	}
}

// TestBIP341KeyPathVectors runs the BIP-341 keyPathSpending vectors: every
// input's sighash and tweaked key, every signature with zero auxiliary
// randomness, and input 0 (a BIP-86 key: no script tree; SIGHASH_SINGLE)
// end to end through Parse and SignPSBT.
func TestBIP341KeyPathVectors(t *testing.T) {
	var f struct {
		KeyPathSpending []struct {
			Given struct {
				RawUnsignedTx string
				UtxosSpent    []struct {
					ScriptPubKey string
					AmountSats   int64
				}
			}
			InputSpending []struct {
				Given struct {
					TxinIndex       int
					InternalPrivkey string
					MerkleRoot      *string
					HashType        uint32
				}
				Intermediary struct {
					InternalPubkey, TweakedPrivkey, SigHash string
				}
				Expected struct{ Witness []string }
			}
		}
	}
	vectors.Read(t, "testdata/good_bip341_keypath.json", &f)
	v := f.KeyPathSpending[0]
	tx := parseTx(t, v.Given.RawUnsignedTx)
	prev := map[wire.OutPoint]*wire.TxOut{}
	p, err := psbt.NewFromUnsignedTx(tx.Copy()) // the end-to-end copy
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range v.Given.UtxosSpent {
		o := wire.NewTxOut(u.AmountSats, vectors.Hex(t, u.ScriptPubKey))
		prev[tx.TxIn[i].PreviousOutPoint] = o
		p.Inputs[i].WitnessUtxo = o
	}
	fetcher := txscript.NewMultiPrevOutFetcher(prev)
	hashes := txscript.NewTxSigHashes(tx, fetcher)
	var zero [32]byte
	e2e := 0
	for _, in := range v.InputSpending {
		g := in.Given
		ht := txscript.SigHashType(g.HashType)
		hash, err := txscript.CalcTaprootSignatureHash(hashes, ht, tx, g.TxinIndex, fetcher)
		if err != nil || hex.EncodeToString(hash) != in.Intermediary.SigHash {
			t.Fatalf("input %d: sighash %x (%v)", g.TxinIndex, hash, err)
		}
		priv, pub := btcec.PrivKeyFromBytes(vectors.Hex(t, g.InternalPrivkey))
		if hex.EncodeToString(schnorr.SerializePubKey(pub)) != in.Intermediary.InternalPubkey {
			t.Fatalf("input %d: internal key", g.TxinIndex)
		}
		var root []byte
		if g.MerkleRoot != nil {
			root = vectors.Hex(t, *g.MerkleRoot)
		}
		tweaked := txscript.TweakTaprootPrivKey(*priv, root)
		if hex.EncodeToString(tweaked.Serialize()) != in.Intermediary.TweakedPrivkey {
			t.Fatalf("input %d: tweaked key", g.TxinIndex)
		}
		// The signer: internal/secp's constant-time BIP-341 tweak and
		// BIP-340 signature.
		internal, err := secp.NewSchnorrKey(vectors.Hex(t, g.InternalPrivkey))
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(internal.XOnly()) != in.Intermediary.InternalPubkey {
			t.Fatalf("input %d: internal key (secp)", g.TxinIndex)
		}
		signer, err := internal.TweakTaproot(root)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := signer.Sign(hash, &zero)
		if err != nil {
			t.Fatal(err)
		}
		if ht != txscript.SigHashDefault {
			sig = append(sig, byte(ht))
		}
		if hex.EncodeToString(sig) != in.Expected.Witness[0] {
			t.Fatalf("input %d: signature %x", g.TxinIndex, sig)
		}
		if g.MerkleRoot != nil {
			continue
		}
		// A BIP-86 key: the account signs it through the public API.
		e2e++
		s := signerFromKey(t, vectors.Hex(t, g.InternalPrivkey), Mainnet, P2TR)
		if !bytes.Equal(s.acct.Script, p.Inputs[g.TxinIndex].WitnessUtxo.PkScript) {
			t.Fatalf("input %d: the account's script differs from the UTXO's", g.TxinIndex)
		}
		p.Inputs[g.TxinIndex].SighashType = ht
		// The vector's second output is 32 bytes that are no standard script, which
		// Parse refuses as non-standard. Input 0 signs SIGHASH_SINGLE, which
		// commits to output 0 only, so making output 1 a P2WSH of those
		// bytes leaves its sighash and signature unchanged.
		if ht&^txscript.SigHashAnyOneCanPay != txscript.SigHashSingle || g.TxinIndex != 0 {
			t.Fatal("the vector changed: input 0 is no longer SIGHASH_SINGLE")
		}
		p.UnsignedTx.TxOut[1].PkScript = append([]byte{txscript.OP_0, txscript.OP_DATA_32}, p.UnsignedTx.TxOut[1].PkScript...)
		enc := encode(t, p)
		if _, err := Parse(enc, s.acct, true, Options{}); err == nil {
			t.Fatal("SIGHASH_SINGLE accepted without AllowExoticSighash")
		}
		r, err := Parse(enc, s.acct, true, Options{AllowExoticSighash: true})
		if err != nil {
			t.Fatal(err)
		}
		s.key.aux = &zero
		res, err := r.SignPSBT(s.key)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.SignedInputs) != 1 || res.SignedInputs[0] != g.TxinIndex {
			t.Fatalf("signed inputs %v", res.SignedInputs)
		}
		out := decode(t, res.PSBT)
		if got, want := out.Inputs[g.TxinIndex].FinalScriptWitness, witnessBytes(t, vectors.Hex(t, in.Expected.Witness[0])); !bytes.Equal(got, want) {
			t.Fatalf("input %d: witness %x, want %x", g.TxinIndex, got, want)
		}
	}
	if e2e != 1 {
		t.Fatalf("%d BIP-86 inputs in the vectors, want 1", e2e)
	}
}

// TestECDSAMatchesBtcec: the signatures made through go-ethereum's
// secp256k1 (libsecp256k1 under cgo) are btcec's RFC 6979 signatures, low S.
func TestECDSAMatchesBtcec(t *testing.T) {
	s := newSigner(t, "ecdsa", Mainnet, P2WPKH)
	priv, _ := btcec.PrivKeyFromBytes(s.raw)
	for i := range 64 {
		hash := bytes.Repeat([]byte{byte(i)}, 32)
		got, err := ecdsaSign(hash, s.key.ecdsa)
		if err != nil {
			t.Fatal(err)
		}
		want := signBtcec(priv, hash)
		if !bytes.Equal(got, want) {
			t.Fatalf("hash %d: %x\nbtcec:  %x", i, got, want)
		}
	}
}
