package btc

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/big"

	"github.com/btcsuite/btcd/btcec/v2"
	becdsa "github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/secp"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/wallet/chain"
)

// Key is an account's prepared signing key.
type Key struct {
	typ AddressType
	pub []byte
	// P2WPKH: go-ethereum's key form, whose crypto.Sign is libsecp256k1
	// (Bitcoin Core's library) under cgo and the same pure-Go code as
	// btcec without it. RFC 6979 nonces, low S.
	ecdsa *ecdsa.PrivateKey
	// P2TR: the BIP-86 tweaked key (tweaked once, not per signature),
	// signing in constant time (internal/secp: btcec's schnorr.Sign is
	// variable-time in the key and nonce).
	tweaked *secp.SchnorrKey
	// aux lets the known-answer tests fix the BIP-340 auxiliary
	// randomness; production signing uses RFC 6979 nonces, as btcec's
	// schnorr.Sign did.
	aux *[32]byte
}

// NewKey prepares raw (a 32-byte secp256k1 scalar) for account a. It
// fails if the key's public key is not a's.
func NewKey(raw secret.Bytes, a *Account) (*Key, error) {
	if len(raw) != 32 {
		return nil, fmt.Errorf("btc: private key must be 32 bytes")
	}
	pub, err := secp.PublicKey(raw)
	if err != nil || !bytes.Equal(pub, a.PublicKey) {
		return nil, fmt.Errorf("btc: %w", chain.ErrKeyMismatch)
	}
	k := &Key{typ: a.Type, pub: append([]byte(nil), a.PublicKey...)}
	switch a.Type {
	case P2WPKH:
		e, err := crypto.ToECDSA(raw)
		if err != nil {
			return nil, fmt.Errorf("btc: private key: %w", err)
		}
		k.ecdsa = e
	case P2TR:
		// BIP-341/86: d' = (has_even_y(P) ? d : n-d) + H_TapTweak(P) mod n.
		sk, err := secp.NewSchnorrKey(raw)
		if err != nil {
			return nil, fmt.Errorf("btc: %w", chain.ErrKeyMismatch)
		}
		k.tweaked, err = sk.TweakTaproot(nil)
		sk.Zero()
		if err != nil {
			return nil, fmt.Errorf("btc: private key: %w", err)
		}
		// The tweaked key must sign for the account's output key (its
		// script is OP_1 <32-byte key>): a fault in the tweak would
		// otherwise make signatures the chain refuses.
		if len(a.Script) != 34 || !bytes.Equal(k.tweaked.XOnly(), a.Script[2:]) {
			k.tweaked.Zero()
			return nil, fmt.Errorf("btc: %w", chain.ErrKeyMismatch)
		}
	default:
		return nil, fmt.Errorf("btc: unknown address type %q", a.Type)
	}
	return k, nil
}

// String, GoString and LogValue keep a key out of logs and error text.
func (*Key) String() string       { return "[redacted]" }
func (*Key) GoString() string     { return "[redacted]" }
func (*Key) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// Public returns the 33-byte compressed public key.
func (k *Key) Public() []byte { return k.pub }

// Destroy wipes the private key.
func (k *Key) Destroy() {
	if k == nil {
		return
	}
	//lint:ignore SA1019 go-ethereum's signer takes *ecdsa.PrivateKey; wiping its scalar needs D
	if k.ecdsa != nil && k.ecdsa.D != nil {
		clear(k.ecdsa.D.Bits()) //lint:ignore SA1019 as above
		k.ecdsa.D.SetInt64(0)   //lint:ignore SA1019 as above
	}
	if k.tweaked != nil {
		k.tweaked.Zero()
	}
}

// Request is a PSBT parsed and checked for one account.
type Request struct {
	packet   *psbt.Packet
	acct     *Account
	ins      []input
	change   []bool
	finalize bool
	intent   *intent.Intent
	signed   bool
}

// Result is the answer of sign-psbt.
type Result struct {
	PSBT         string `json:"psbt"`          // base64
	SignedInputs []int  `json:"signed_inputs"` // indexes of the inputs signed
}

// Parse decodes a base64 PSBT strictly and checks it for account a: every
// input's previous output is known and consistent; P2WPKH inputs the
// account signs carry their full previous transaction; scripts are
// standard; sighash types are ALL (or DEFAULT for Taproot) unless opt
// allows others; the outputs do not spend more than the inputs hold. At
// least one input must pay the account. Errors name the field
// ("inputs[2].witness_utxo").
func Parse(encoded string, a *Account, finalize bool, opt Options) (*Request, error) {
	p, err := decodePSBT(encoded)
	if err != nil {
		return nil, err
	}
	ins, change, err := analyse(p, a, opt)
	if err != nil {
		return nil, err
	}
	r := &Request{packet: p, acct: a, ins: ins, change: change, finalize: finalize}
	r.intent = r.describe()
	return r, nil
}

// Packet is the parsed PSBT (signed in place by SignPSBT).
func (r *Request) Packet() *psbt.Packet { return r.packet }

// Inputs lists the indexes of the inputs the account will sign.
func (r *Request) Inputs() []int {
	var out []int
	for i, in := range r.ins {
		if in.sign {
			out = append(out, i)
		}
	}
	return out
}

// describe builds the policy intent.
//
// Outputs are the outputs that do not pay the account (change excluded).
// Value is what leaves the account: the amounts of the inputs that pay the
// account minus the outputs that pay it back (floored at zero). When every
// input is the account's, that is the non-change outputs plus the fee; in a
// PSBT with other parties' inputs (a coinjoin, a payjoin) it is this
// account's net contribution. To is the address of the first non-change
// output that has one (an OP_RETURN output has none). MaxFee is the
// PSBT's fee (every input's amount less every output's, all known: Parse
// refuses a PSBT without them), which Value already includes when the
// account pays it: limits count Value alone on Bitcoin (intent.Spend). A
// PSBT is always decoded: its outputs are everything that can leave.
func (r *Request) describe() *intent.Intent {
	in := &intent.Intent{Chain: intent.ChainBitcoin, Network: string(r.acct.Network), Kind: intent.KindPSBT, Decoded: true}
	var spent, back, all, out int64
	for _, i := range r.ins {
		all += i.utxo.Value
		if i.mine {
			spent += i.utxo.Value
		}
	}
	for _, o := range r.packet.UnsignedTx.TxOut {
		out += o.Value
	}
	in.MaxFee = big.NewInt(max(all-out, 0))
	params := r.acct.Network.Params()
	for j, out := range r.packet.UnsignedTx.TxOut {
		if r.change[j] {
			back += out.Value
			continue
		}
		o := intent.Output{Script: hex.EncodeToString(out.PkScript), Value: big.NewInt(out.Value)}
		if _, addrs, n, err := txscript.ExtractPkScriptAddrs(out.PkScript, params); err == nil && n == 1 && len(addrs) == 1 {
			o.Address = addrs[0].EncodeAddress()
		}
		if in.To == "" && o.Address != "" {
			in.To = o.Address
		}
		in.Outputs = append(in.Outputs, o)
	}
	in.Value = big.NewInt(max(spent-back, 0))
	in.Normalize()
	return in
}

// Intent describes the request for policies (a fresh copy each call).
func (r *Request) Intent() *intent.Intent { return r.intent.Clone() }

// SignPSBT signs every input that pays the account, finalizes them if the
// request asked for it, and returns the updated PSBT.
func (r *Request) SignPSBT(k *Key) (*Result, error) {
	if r.signed {
		return nil, ErrSigned
	}
	if k == nil || !bytes.Equal(k.pub, r.acct.PublicKey) || k.typ != r.acct.Type {
		return nil, fmt.Errorf("btc: %w", chain.ErrKeyMismatch)
	}
	r.signed = true
	p := r.packet
	prev := make(map[wire.OutPoint]*wire.TxOut, len(r.ins))
	for i, in := range r.ins {
		prev[p.UnsignedTx.TxIn[i].PreviousOutPoint] = in.utxo
	}
	fetcher := txscript.NewMultiPrevOutFetcher(prev)
	hashes := txscript.NewTxSigHashes(p.UnsignedTx, fetcher)
	res := &Result{SignedInputs: []int{}}
	for i, in := range r.ins {
		if !in.sign {
			continue
		}
		var err error
		switch k.typ {
		case P2WPKH:
			err = r.signP2WPKH(k, i, in, hashes)
		case P2TR:
			err = r.signP2TR(k, i, in, hashes, fetcher)
		}
		if err != nil {
			return nil, fmt.Errorf("btc: sign inputs[%d]: %w", i, err)
		}
		if r.finalize {
			if err := psbt.Finalize(p, i); err != nil {
				return nil, fmt.Errorf("btc: finalize inputs[%d]: %w", i, err)
			}
		}
		res.SignedInputs = append(res.SignedInputs, i)
	}
	enc, err := p.B64Encode()
	if err != nil {
		return nil, fmt.Errorf("btc: encode PSBT: %w", err)
	}
	res.PSBT = enc
	return res, nil
}

func (r *Request) signP2WPKH(k *Key, i int, in input, hashes *txscript.TxSigHashes) error {
	hash, err := txscript.CalcWitnessSigHash(in.utxo.PkScript, hashes, in.sighash, r.packet.UnsignedTx, i, in.utxo.Value)
	if err != nil {
		return err
	}
	sig, err := ecdsaSign(hash, k.ecdsa)
	if err != nil {
		return err
	}
	sig = append(sig, byte(in.sighash)) // #nosec G115 -- checkSighash admits only one-byte sighash types
	// A partial signature for this key already present (a PSBT signed
	// before) is replaced, not duplicated. The signature is added directly
	// rather than through psbt.Updater.Sign, whose checks (DER form, key on
	// the curve, script of the key) hold by construction here and cost a
	// point decompression per input.
	pin := &r.packet.Inputs[i]
	kept := pin.PartialSigs[:0]
	for _, ps := range pin.PartialSigs {
		if !bytes.Equal(ps.PubKey, k.pub) {
			kept = append(kept, ps)
		}
	}
	pin.PartialSigs = append(kept, &psbt.PartialSig{PubKey: k.pub, Signature: sig})
	// Finalizing (and BIP-174 signers after us) read witness_utxo; copy
	// it from the previous transaction when only that was given.
	if pin.WitnessUtxo == nil {
		pin.WitnessUtxo = in.utxo
	}
	return nil
}

// ecdsaSign signs a 32-byte digest and returns the DER signature with a
// low S (BIP-62/BIP-146 policy; libsecp256k1 always produces one, and
// Serialize normalises again).
func ecdsaSign(hash []byte, key *ecdsa.PrivateKey) ([]byte, error) {
	rsv, err := crypto.Sign(hash, key)
	if err != nil {
		return nil, err
	}
	var rr, ss btcec.ModNScalar
	rr.SetByteSlice(rsv[:32])
	ss.SetByteSlice(rsv[32:64])
	return becdsa.NewSignature(&rr, &ss).Serialize(), nil
}

func (r *Request) signP2TR(k *Key, i int, in input, hashes *txscript.TxSigHashes, fetcher txscript.PrevOutputFetcher) error {
	hash, err := txscript.CalcTaprootSignatureHash(hashes, in.sighash, r.packet.UnsignedTx, i, fetcher)
	if err != nil {
		return err
	}
	sig, err := k.tweaked.Sign(hash, k.aux)
	if err != nil {
		return err
	}
	if in.sighash != txscript.SigHashDefault {
		sig = append(sig, byte(in.sighash)) // #nosec G115 -- checkSighash admits only one-byte sighash types
	}
	pin := &r.packet.Inputs[i]
	pin.TaprootKeySpendSig = sig
	if in.fromNWit {
		pin.WitnessUtxo = in.utxo
	}
	return nil
}
