package chain_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	sol "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/programs/system"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/hd"
	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/wallet/btc"
	"github.com/moonvault/moonvault/internal/wallet/chain"
	"github.com/moonvault/moonvault/internal/wallet/chain/chaintest"
	"github.com/moonvault/moonvault/internal/wallet/evm"
	"github.com/moonvault/moonvault/internal/wallet/solana"
)

// chains is what the sign pipeline will hold: one Chain per name.
var chains = map[string]chain.Chain{
	intent.ChainEthereum: evm.Chain{},
	intent.ChainBitcoin:  btc.Chain{},
	intent.ChainSolana:   solana.Chain{},
}

// account sets up an account the way the pipeline will, at index 0.
func account(t testing.TB, m *hd.Master, name string, o chain.Options) (chain.Chain, chain.Account, chain.Key) {
	t.Helper()
	_, a, key := chaintest.Derive(t, chains[name], m, o, 0)
	return chains[name], a, key
}

func master(t testing.TB) *hd.Master {
	return chaintest.Master(t, "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about")
}

// TestStandardAddresses: the reference mnemonic gives the reference
// addresses on every chain, through the chain contract alone.
func TestStandardAddresses(t *testing.T) {
	m := master(t)
	for _, c := range []struct {
		chain string
		o     chain.Options
		want  string
	}{
		{intent.ChainEthereum, chain.Options{}, "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"},
		{intent.ChainBitcoin, chain.Options{}, "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"},
		{intent.ChainBitcoin, chain.Options{AddressType: "p2tr"}, "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr"},
		{intent.ChainSolana, chain.Options{}, "HAgk14JpMQLgt6rVgv7cBQFJWFto5Dqxi472uT3DKpqk"},
	} {
		_, a, _ := account(t, m, c.chain, c.o)
		if a.Address != c.want {
			t.Errorf("%s %+v: %s, want %s", c.chain, c.o, a.Address, c.want)
		}
	}
}

func TestGenerateKey(t *testing.T) {
	for _, kt := range []chain.KeyType{chain.Secp256k1, chain.Ed25519} {
		raw, pub, err := chain.GenerateKey(kt, bytes.NewReader(bytes.Repeat([]byte{7}, 32)))
		if err != nil {
			t.Fatal(err)
		}
		again, err := chain.PublicKey(kt, raw)
		if err != nil || !bytes.Equal(again, pub) {
			t.Fatalf("%s: public key differs", kt)
		}
	}
	// A secp256k1 draw that is not a valid scalar (0, or >= n) is redrawn.
	src := io.MultiReader(bytes.NewReader(make([]byte, 32)), bytes.NewReader(bytes.Repeat([]byte{0xff}, 32)), bytes.NewReader(bytes.Repeat([]byte{1}, 32)))
	raw, _, err := chain.GenerateKey(chain.Secp256k1, src)
	if err != nil || raw[0] != 1 {
		t.Fatalf("invalid scalars were not redrawn: %v", err)
	}
	// A failing source fails closed.
	if _, _, err := chain.GenerateKey(chain.Ed25519, strings.NewReader("short")); err == nil {
		t.Fatal("a short read produced a key")
	}
	if _, err := chain.PublicKey(chain.Secp256k1, make(secret.Bytes, 32)); !errors.Is(err, chain.ErrBadKey) {
		t.Fatalf("zero scalar: %v", err)
	}
	if _, err := chain.PublicKey("rsa", make(secret.Bytes, 32)); err == nil {
		t.Fatal("unknown key type accepted")
	}
}

// request builds one typical request per chain for account a.
func request(t testing.TB, name string, a chain.Account) chain.Input {
	t.Helper()
	switch name {
	case intent.ChainEthereum:
		return chain.Input{Op: chain.OpSignMessage, Message: []byte("hello")}
	case intent.ChainBitcoin:
		acct, err := btc.NewAccount(a.PublicKey, btc.Network(a.Network), btc.AddressType(a.AddressType))
		if err != nil {
			t.Fatal(err)
		}
		prev := wire.NewMsgTx(2)
		var h chainhash.Hash
		h[0] = 1
		prev.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&h, 0), nil, nil))
		prev.AddTxOut(wire.NewTxOut(100_000, acct.Script))
		tx := wire.NewMsgTx(2)
		ph := prev.TxHash()
		tx.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&ph, 0), nil, nil))
		dest := sha256.Sum256([]byte("dest"))
		tx.AddTxOut(wire.NewTxOut(60_000, append([]byte{0x00, 0x14}, dest[:20]...)))
		tx.AddTxOut(wire.NewTxOut(39_000, acct.Script))
		p, err := psbt.NewFromUnsignedTx(tx)
		if err != nil {
			t.Fatal(err)
		}
		p.Inputs[0].NonWitnessUtxo = prev
		enc, err := p.B64Encode()
		if err != nil {
			t.Fatal(err)
		}
		return chain.Input{Op: chain.OpSignPSBT, Encoded: enc, Finalize: true}
	case intent.ChainSolana:
		me := sol.PublicKeyFromBytes(a.PublicKey)
		dest := sol.PublicKeyFromBytes(bytes.Repeat([]byte{9}, 32))
		tx, err := sol.NewTransaction([]sol.Instruction{system.NewTransferInstruction(1_000, me, dest).Build()}, sol.Hash{1}, sol.TransactionPayer(me))
		if err != nil {
			t.Fatal(err)
		}
		enc, err := tx.ToBase64()
		if err != nil {
			t.Fatal(err)
		}
		return chain.Input{Op: chain.OpSignTransaction, Encoded: enc}
	}
	t.Fatalf("no request for %s", name)
	return chain.Input{}
}

// TestPipelineShape drives every chain through the same code, as the sign
// pipeline will: parse, read the intent, sign, and get an answer.
func TestPipelineShape(t *testing.T) {
	m := master(t)
	for name := range chains {
		t.Run(name, func(t *testing.T) {
			c, a, key := account(t, m, name, chain.Options{})
			defer key.Destroy()
			req, err := c.Parse(request(t, name, a), a)
			if err != nil {
				t.Fatal(err)
			}
			in := req.Intent()
			if in.Chain != name || in.Value == nil {
				t.Fatalf("intent %+v", in)
			}
			ans, err := req.Sign(key)
			if err != nil || ans == nil {
				t.Fatalf("sign: %v", err)
			}
			// A key from another chain is refused, not misused.
			for other := range chains {
				if other == name {
					continue
				}
				_, _, k2 := account(t, m, other, chain.Options{})
				req, _ := c.Parse(request(t, name, a), a)
				if _, err := req.Sign(k2); err == nil {
					t.Fatalf("signed with a %s key", other)
				}
			}
		})
	}
}

// BenchmarkSign compares the library part of the sign path per chain
// (parse, intent, sign, answer), under one load: Ethereum sign-message
// (the reference), a Bitcoin P2WPKH PSBT (one input with its previous
// transaction, two outputs, finalized) and a Solana transfer. cpu-ns/op
// is the process CPU time per operation (GC included), steady when the
// machine is shared; ns/op is wall time.
//
//	go test -run '^$' -bench BenchmarkSign -benchtime 2s -count 5 ./internal/wallet/chain/
func BenchmarkSign(b *testing.B) {
	m := master(b)
	for _, name := range []string{intent.ChainEthereum, intent.ChainBitcoin, intent.ChainSolana} {
		b.Run(name, func(b *testing.B) {
			c, a, key := account(b, m, name, chain.Options{})
			in := request(b, name, a)
			b.ReportAllocs()
			start := cpuTime()
			for b.Loop() {
				req, err := c.Parse(in, a)
				if err != nil {
					b.Fatal(err)
				}
				_ = req.Intent()
				if _, err := req.Sign(key); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
		})
	}
}

// TestKeysRedacted: printing or logging a prepared key or the HD master
// shows no key material.
func TestKeysRedacted(t *testing.T) {
	m := master(t)
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	for name := range chains {
		_, a, key := account(t, m, name, chain.Options{})
		p, _ := chains[name].DerivationPath(a.Options, 0)
		k, err := chain.DeriveKey(m, chains[name].KeyType(), p)
		if err != nil {
			t.Fatal(err)
		}
		secretHex := hex.EncodeToString(k.Private)
		log.Info("key", "key", key, "master", m, "derived", k.Private)
		out := fmt.Sprintf("%v %+v %#v %s %v %+v", key, key, key, key, m, k)
		for _, s := range []string{out, buf.String()} {
			if strings.Contains(s, secretHex) || strings.Contains(s, secretHex[:16]) {
				t.Fatalf("%s: key material printed: %s", name, s)
			}
		}
		if !strings.Contains(out, "[redacted]") {
			t.Fatalf("%s: %s", name, out)
		}
		// Decimal forms (a big.Int scalar) must not show either.
		d := new(big.Int).SetBytes(k.Private).String()
		if strings.Contains(out, d[:20]) || strings.Contains(buf.String(), d[:20]) {
			t.Fatalf("%s: scalar printed", name)
		}
		k.Destroy()
	}
}

// TestMismatchesAreIntegrityErrors: a stored account whose address is not
// its key's, or a private key that is not the account's, is an integrity
// failure on every chain (a 500 that is logged, never the caller's 4xx).
func TestMismatchesAreIntegrityErrors(t *testing.T) {
	m := master(t)
	for name, c := range chains {
		_, a, key := account(t, m, name, chain.Options{})
		defer key.Destroy()
		wrongAddr := a
		_, other, _ := account(t, m, name, chain.Options{})
		p, _ := c.DerivationPath(a.Options, 1)
		k1, err := chain.DeriveKey(m, c.KeyType(), p)
		if err != nil {
			t.Fatal(err)
		}
		if wrongAddr.Address, err = c.Address(a.Options, k1.Public); err != nil {
			t.Fatal(err)
		}
		if _, err := c.NewKey(k1.Private, a); !errors.Is(err, chain.ErrKeyMismatch) || errkind.Of(err) != errkind.Integrity {
			t.Errorf("%s: another key: %v", name, err)
		}
		if _, err := c.Parse(request(t, name, other), wrongAddr); !errors.Is(err, chain.ErrAccountMismatch) || errkind.Of(err) != errkind.Integrity {
			t.Errorf("%s: mismatched account: %v", name, err)
		}
		k1.Destroy()
	}
}
