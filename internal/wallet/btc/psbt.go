package btc

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/moonvault/moonvault/internal/errkind"
)

// Limits on an untrusted PSBT.
const (
	// MaxPSBTSize bounds the decoded PSBT. Full previous transactions
	// (non_witness_utxo) make PSBTs large; 4 MB is a block's weight limit.
	MaxPSBTSize = 4 << 20
	// MaxInputs bounds the inputs (and outputs). A standard transaction
	// (100 kvB) has fewer than 2,500 inputs; the bound also keeps every sum
	// of amounts (each at most 21e14 sat) inside an int64.
	MaxInputs = 4000
)

// Errors of Parse and Sign that are not about one field.
var (
	// ErrNothingToSign: no input pays this account (or all of them are
	// already finalized).
	ErrNothingToSign = errkind.New(errkind.Invalid, "nothing_to_sign", "no input of this PSBT pays this account")
	// ErrSigned: a Request signs once; parse again to sign again.
	ErrSigned = errkind.New(errkind.Conflict, "", "btc: request already signed")
)

// Options change what Parse accepts.
type Options struct {
	// AllowExoticSighash lets inputs ask for SIGHASH_NONE, SIGHASH_SINGLE
	// or ANYONECANPAY. Off, only ALL (and DEFAULT for Taproot) is signed:
	// the others let a co-signer or relayer change outputs or inputs after
	// the vault signed.
	AllowExoticSighash bool
}

// input is what Parse learned about one input.
type input struct {
	utxo     *wire.TxOut
	mine     bool
	sign     bool // mine and not yet finalized
	sighash  txscript.SigHashType
	fromNWit bool // utxo came from non_witness_utxo only
}

func fieldErr(name, msg string) error { return errkind.FieldErr(name, msg) }

// decodePSBT decodes base64 text strictly (standard alphabet, padded, no
// white space, no trailing data) and parses it with btcd.
func decodePSBT(encoded string) (p *psbt.Packet, err error) {
	if encoded == "" {
		return nil, fieldErr("psbt", "required")
	}
	if len(encoded) > base64.StdEncoding.EncodedLen(MaxPSBTSize) {
		return nil, &errkind.Field{Name: "psbt", Msg: fmt.Sprintf("larger than %d bytes", MaxPSBTSize), K: errkind.TooLarge, Code: "payload_too_large"}
	}
	// encoding/base64 skips \r and \n; a strict parser does not.
	if strings.ContainsAny(encoded, "\r\n") {
		return nil, fieldErr("psbt", "not base64: line breaks are not allowed")
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(encoded)
	if err != nil {
		return nil, fieldErr("psbt", "not base64 (standard alphabet, padded)")
	}
	return parsePSBT(raw)
}

func parsePSBT(raw []byte) (p *psbt.Packet, err error) {
	// The parser is btcd's; a panic on input it did not foresee must not
	// take the server down.
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fieldErr("psbt", "malformed PSBT")
		}
	}()
	r := bytes.NewReader(raw)
	p, err = psbt.NewFromRawBytes(r, false)
	if err != nil {
		return nil, fieldErr("psbt", "malformed PSBT: "+psbtErrText(err))
	}
	if r.Len() != 0 {
		return nil, fieldErr("psbt", fmt.Sprintf("%d bytes after the end of the PSBT", r.Len()))
	}
	return p, nil
}

// psbtErrText keeps btcd's message short and free of echoed data.
func psbtErrText(err error) string {
	s := err.Error()
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

// analyse checks the packet against the account and the rules of this
// signer, and says which inputs to sign and which outputs are change.
func analyse(p *psbt.Packet, a *Account, opt Options) ([]input, []bool, error) {
	tx := p.UnsignedTx
	if len(tx.TxIn) == 0 {
		return nil, nil, fieldErr("psbt", "the transaction has no inputs")
	}
	if len(tx.TxOut) == 0 {
		return nil, nil, fieldErr("psbt", "the transaction has no outputs")
	}
	if len(tx.TxIn) > MaxInputs || len(tx.TxOut) > MaxInputs {
		return nil, nil, fieldErr("psbt", fmt.Sprintf("more than %d inputs or outputs", MaxInputs))
	}
	ins := make([]input, len(tx.TxIn))
	seen := make(map[wire.OutPoint]int, len(tx.TxIn))
	var inSum int64
	for i := range tx.TxIn {
		name := fmt.Sprintf("inputs[%d]", i)
		op := tx.TxIn[i].PreviousOutPoint
		if j, dup := seen[op]; dup {
			return nil, nil, fieldErr(name, fmt.Sprintf("spends the same output as inputs[%d]", j))
		}
		seen[op] = i
		in, err := checkInput(p, i, a, opt)
		if err != nil {
			return nil, nil, err
		}
		ins[i] = in
		inSum += in.utxo.Value
	}
	change := make([]bool, len(tx.TxOut))
	var outSum int64
	for j, out := range tx.TxOut {
		name := fmt.Sprintf("outputs[%d]", j)
		if out.Value < 0 || out.Value > btcutil.MaxSatoshi {
			return nil, nil, fieldErr(name+".amount", "out of range")
		}
		if txscript.GetScriptClass(out.PkScript) == txscript.NonStandardTy {
			return nil, nil, fieldErr(name+".script", "non-standard output script")
		}
		change[j] = bytes.Equal(out.PkScript, a.Script)
		outSum += out.Value
	}
	if outSum > inSum {
		return nil, nil, fieldErr("outputs", fmt.Sprintf("pay %d sat but the inputs hold %d sat", outSum, inSum))
	}
	signable := false
	for _, in := range ins {
		signable = signable || in.sign
	}
	if !signable {
		return nil, nil, ErrNothingToSign
	}
	return ins, change, nil
}

// checkInput finds input i's previous output and checks what this signer
// needs of it.
func checkInput(p *psbt.Packet, i int, a *Account, opt Options) (input, error) {
	name := fmt.Sprintf("inputs[%d]", i)
	pin := &p.Inputs[i]
	op := p.UnsignedTx.TxIn[i].PreviousOutPoint
	var in input
	if pin.NonWitnessUtxo != nil {
		// The full previous transaction proves the amount: its hash must
		// be the outpoint's txid.
		if pin.NonWitnessUtxo.TxHash() != op.Hash {
			return in, fieldErr(name+".non_witness_utxo", "is not the transaction the input spends (txid differs)")
		}
		if int64(op.Index) >= int64(len(pin.NonWitnessUtxo.TxOut)) {
			return in, fieldErr(name+".non_witness_utxo", fmt.Sprintf("has no output %d", op.Index))
		}
		prev := pin.NonWitnessUtxo.TxOut[op.Index]
		if w := pin.WitnessUtxo; w != nil {
			if w.Value != prev.Value {
				return in, fieldErr(name+".witness_utxo", fmt.Sprintf("amount %d differs from non_witness_utxo's %d", w.Value, prev.Value))
			}
			if !bytes.Equal(w.PkScript, prev.PkScript) {
				return in, fieldErr(name+".witness_utxo", "script differs from non_witness_utxo's")
			}
		}
		in.utxo, in.fromNWit = prev, pin.WitnessUtxo == nil
	}
	if pin.WitnessUtxo != nil {
		in.utxo = pin.WitnessUtxo
	}
	if in.utxo == nil {
		return in, fieldErr(name+".witness_utxo", "missing: every input needs its previous output (witness_utxo or non_witness_utxo)")
	}
	if in.utxo.Value < 0 || in.utxo.Value > btcutil.MaxSatoshi {
		return in, fieldErr(name+".witness_utxo", "amount out of range")
	}
	class := txscript.GetScriptClass(in.utxo.PkScript)
	if class == txscript.NonStandardTy {
		return in, fieldErr(name+".witness_utxo", "non-standard script")
	}
	in.mine = bytes.Equal(in.utxo.PkScript, a.Script)
	finalized := pin.FinalScriptSig != nil || pin.FinalScriptWitness != nil
	if !in.mine || finalized {
		return in, nil
	}
	in.sign = true
	var err error
	switch a.Type {
	case P2WPKH:
		err = checkP2WPKH(pin, name)
	case P2TR:
		err = checkP2TR(pin, name, a)
	}
	if err != nil {
		return in, err
	}
	if in.sighash, err = checkSighash(pin.SighashType, a.Type, name, i, len(p.UnsignedTx.TxOut), opt); err != nil {
		return in, err
	}
	return in, nil
}

// checkP2WPKH refuses to sign a P2WPKH input without its full previous
// transaction. BIP-143 commits to the amount of the input being signed
// only, so a caller could get two signatures over understated amounts in
// two requests and combine them into a transaction whose fee is the
// difference (the "SegWit fee attack", CVE-2020-14199). With
// non_witness_utxo, whose hash Parse checks against the outpoint, the
// amount is proven. (Taproot is immune: BIP-341 signs every input's amount
// and script, so it needs only witness_utxo.)
func checkP2WPKH(pin *psbt.PInput, name string) error {
	if pin.NonWitnessUtxo == nil {
		return fieldErr(name+".non_witness_utxo", "required to sign a P2WPKH input: BIP-143 signatures commit only to this input's amount, which the full previous transaction proves (CVE-2020-14199)")
	}
	if pin.RedeemScript != nil || pin.WitnessScript != nil {
		return fieldErr(name, "carries a redeem or witness script, but the account's output is P2WPKH")
	}
	if pin.TaprootKeySpendSig != nil || len(pin.TaprootScriptSpendSig) > 0 || len(pin.TaprootLeafScript) > 0 {
		return fieldErr(name, "carries Taproot fields, but the account's output is P2WPKH")
	}
	return nil
}

// checkP2TR refuses Taproot fields that contradict a BIP-86 key (no script
// tree) owned by this account.
func checkP2TR(pin *psbt.PInput, name string, a *Account) error {
	if len(pin.TaprootMerkleRoot) > 0 {
		return fieldErr(name+".taproot_merkle_root", "set, but the account's key has no script tree (BIP-86)")
	}
	if len(pin.TaprootInternalKey) > 0 && !bytes.Equal(pin.TaprootInternalKey, a.xonly) {
		return fieldErr(name+".taproot_internal_key", "is not the account's key")
	}
	if pin.RedeemScript != nil || pin.WitnessScript != nil || len(pin.PartialSigs) > 0 {
		return fieldErr(name, "carries SegWit v0 fields, but the account's output is Taproot")
	}
	return nil
}

// checkSighash decides the sighash type of an input the account signs.
// Unset means ALL (SegWit v0) or DEFAULT (Taproot, BIP-341).
func checkSighash(t txscript.SigHashType, at AddressType, name string, i, nOut int, opt Options) (txscript.SigHashType, error) {
	field := name + ".sighash_type"
	valid := map[txscript.SigHashType]bool{
		txscript.SigHashAll: true, txscript.SigHashNone: true, txscript.SigHashSingle: true,
		txscript.SigHashAll | txscript.SigHashAnyOneCanPay:    true,
		txscript.SigHashNone | txscript.SigHashAnyOneCanPay:   true,
		txscript.SigHashSingle | txscript.SigHashAnyOneCanPay: true,
	}
	switch {
	case t == 0 && at == P2TR:
		return txscript.SigHashDefault, nil
	case t == 0:
		return txscript.SigHashAll, nil
	case !valid[t]:
		return 0, fieldErr(field, fmt.Sprintf("%#x is not a valid sighash type", uint32(t)))
	case t == txscript.SigHashAll:
		return t, nil
	case !opt.AllowExoticSighash:
		return 0, fieldErr(field, fmt.Sprintf("%s is refused: only ALL (or DEFAULT for Taproot) is signed unless exotic sighash types are allowed", sighashName(t)))
	case t&^txscript.SigHashAnyOneCanPay == txscript.SigHashSingle && i >= nOut:
		// BIP-341 forbids it; under BIP-143 it signs no output at all.
		return 0, fieldErr(field, "SIGHASH_SINGLE without a matching output")
	}
	return t, nil
}

func sighashName(t txscript.SigHashType) string {
	base := map[txscript.SigHashType]string{txscript.SigHashAll: "SIGHASH_ALL", txscript.SigHashNone: "SIGHASH_NONE", txscript.SigHashSingle: "SIGHASH_SINGLE"}[t&^txscript.SigHashAnyOneCanPay]
	if t&txscript.SigHashAnyOneCanPay != 0 {
		return base + "|ANYONECANPAY"
	}
	return base
}
