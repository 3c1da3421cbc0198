package solana

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/big"
	"testing"

	sol "github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/programs/system"
	"github.com/mr-tron/base58"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/vectors"
	"github.com/moonvault/moonvault/internal/wallet/chain"
	"github.com/moonvault/moonvault/internal/wallet/chain/chaintest"
)

func TestAbandonAddress(t *testing.T) {
	var v struct{ Mnemonic, Path, Address string }
	vectors.Read(t, "testdata/good_abandon_address.json", &v)
	c := Chain{}
	p, a, _ := chaintest.Derive(t, c, chaintest.Master(t, v.Mnemonic), chain.Options{}, 0)
	if p.String() != v.Path || a.Address != v.Address {
		t.Fatalf("index 0: %s %s, want %s %s", p, a.Address, v.Path, v.Address)
	}
	if p1, _ := c.DerivationPath(chain.Options{}, 7); p1.String() != "m/44'/501'/7'/0'" {
		t.Fatalf("index 7: %s", p1)
	}
	for _, o := range []chain.Options{{Network: "mainnet"}, {AddressType: "p2wpkh"}} {
		if _, err := c.Options(o); err == nil {
			t.Fatalf("option %+v accepted", o)
		}
	}
}

// TestSignTransfer: a System transfer built and decoded by solana-go,
// signed here; the signature verifies with crypto/ed25519 and solana-go's
// verifier, and equals the signature solana-go makes itself.
func TestSignTransfer(t *testing.T) {
	me, dest := newSigner(t, "me"), newSigner(t, "dest")
	tx := buildTx(t, me.pub, []sol.Instruction{system.NewTransferInstruction(1_500_000, me.pub, dest.pub).Build()})
	parsed, err := ParseTransaction(b64(t, tx), me.pub[:])
	if err != nil {
		t.Fatal(err)
	}
	in := parsed.Intent()
	if in.Chain != intent.ChainSolana || in.Kind != intent.KindTransaction || in.Value.Int64() != 1_500_000 || in.To != dest.pub.String() {
		t.Fatalf("intent %+v", in)
	}
	if len(in.Outputs) != 1 || in.Outputs[0].Address != dest.pub.String() || in.Token != nil {
		t.Fatalf("outputs %+v token %+v", in.Outputs, in.Token)
	}
	res, err := parsed.SignTransaction(me.key)
	if err != nil {
		t.Fatal(err)
	}
	back, err := sol.TransactionFromBase64(res.Transaction)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := back.Message.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := base58.Decode(res.Signature)
	if err != nil || !ed25519.Verify(me.pub[:], msg, sig) {
		t.Fatal("the signature does not verify with crypto/ed25519")
	}
	if err := back.VerifySignatures(); err != nil {
		t.Fatalf("solana-go: %v", err)
	}
	// solana-go decodes the instruction back to the same transfer.
	accts, err := back.Message.Instructions[0].ResolveInstructionAccounts(&back.Message)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := system.DecodeInstruction(accts, back.Message.Instructions[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	tr, ok := ix.Impl.(*system.Transfer)
	if !ok || *tr.Lamports != 1_500_000 || !tr.GetRecipientAccount().PublicKey.Equals(dest.pub) {
		t.Fatalf("decoded %+v", ix.Impl)
	}
	// Independent: solana-go signing the same transaction.
	if _, err := tx.Sign(func(k sol.PublicKey) *sol.PrivateKey {
		if k.Equals(me.pub) {
			return &me.priv
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if b64(t, tx) != res.Transaction {
		t.Fatal("differs from the transaction solana-go signs")
	}
}

// TestSignV0Lookup: a v0 transaction whose recipient comes from an address
// lookup table, signed by the second of two signers.
func TestSignV0Lookup(t *testing.T) {
	payer, me := newSigner(t, "payer"), newSigner(t, "me")
	dest := newSigner(t, "dest").pub
	table := newSigner(t, "table").pub
	tx := buildTx(t, payer.pub, []sol.Instruction{
		system.NewTransferInstruction(42, me.pub, dest).Build(),
		system.NewTransferInstruction(7, payer.pub, dest).Build(),
	}, sol.TransactionAddressTables(map[sol.PublicKey]sol.PublicKeySlice{table: {dest}}))
	if !tx.Message.IsVersioned() || len(tx.Message.AddressTableLookups) != 1 {
		t.Fatal("expected a v0 message with a lookup")
	}
	enc := b64(t, tx)
	p, err := ParseTransaction(enc, me.pub[:])
	if err != nil {
		t.Fatal(err)
	}
	if p.slot != 1 {
		t.Fatalf("slot %d", p.slot)
	}
	in := p.Intent()
	// Only the lamports leaving this account count; the recipient is
	// loaded from the table, so it has no address here.
	if in.Value.Int64() != 42 || in.To != "" || len(in.Outputs) != 1 {
		t.Fatalf("intent value %s to %q outputs %d", in.Value, in.To, len(in.Outputs))
	}
	res, err := p.SignTransaction(me.key)
	if err != nil {
		t.Fatal(err)
	}
	back, err := sol.TransactionFromBase64(res.Transaction)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Signatures[0].IsZero() {
		t.Fatal("the payer's slot was written")
	}
	msg, _ := back.Message.MarshalBinary()
	if !ed25519.Verify(me.pub[:], msg, back.Signatures[1][:]) {
		t.Fatal("slot 1 does not verify")
	}
	// The payer signs next; both verify.
	pp, err := ParseTransaction(res.Transaction, payer.pub[:])
	if err != nil {
		t.Fatal(err)
	}
	res2, err := pp.SignTransaction(payer.key)
	if err != nil {
		t.Fatal(err)
	}
	full, _ := sol.TransactionFromBase64(res2.Transaction)
	if err := full.VerifySignatures(); err != nil {
		t.Fatal(err)
	}
	// A non-signer cannot sign.
	if _, err := ParseTransaction(enc, newSigner(t, "stranger").pub[:]); !errors.Is(err, ErrNotSigner) || errkind.Of(err) != errkind.Invalid {
		t.Fatalf("stranger: %v", err)
	}
}

func u64(op byte, amount uint64, extra ...byte) []byte {
	b := make([]byte, 9, 9+len(extra))
	b[0] = op
	binary.LittleEndian.PutUint64(b[1:], amount)
	return append(b, extra...)
}

func TestIntentSystemAndTokens(t *testing.T) {
	me, other := newSigner(t, "me"), newSigner(t, "other")
	a, b, mint, owner := newSigner(t, "a").pub, newSigner(t, "b").pub, newSigner(t, "mint").pub, newSigner(t, "owner").pub
	w := func(k sol.PublicKey) *sol.AccountMeta { return sol.Meta(k).WRITE() }
	s := func(k sol.PublicKey) *sol.AccountMeta { return sol.Meta(k).SIGNER() }
	derived, err := sol.CreateWithSeed(me.pub, "vault", owner)
	if err != nil {
		t.Fatal(err)
	}
	ins := []sol.Instruction{
		system.NewTransferInstruction(100, me.pub, a).Build(),
		system.NewTransferInstruction(999, other.pub, a).Build(), // not this account's lamports
		system.NewCreateAccountInstruction(2_000, 165, owner, me.pub, b).Build(),
		system.NewCreateAccountWithSeedInstruction(me.pub, "seed-x", 30, 0, owner, me.pub, derived, me.pub).Build(),
		system.NewTransferWithSeedInstruction(4, "vault", owner, derived, me.pub, b).Build(),
		tokenIx(sol.TokenProgramID, u64(tokTransfer, 5_000), w(a), w(b), s(me.pub)),
		tokenIx(sol.Token2022ProgramID, u64(tokTransferChecked, 6_000, 6), w(a), sol.Meta(mint), w(b), s(me.pub)),
		tokenIx(sol.TokenProgramID, u64(tokApprove, 7_000), w(a), sol.Meta(b), s(me.pub)),
		tokenIx(sol.TokenProgramID, u64(tokApproveChecked, 8_000, 9), w(a), sol.Meta(mint), sol.Meta(b), s(me.pub)),
		tokenIx(sol.TokenProgramID, u64(tokTransfer, 1), w(a), w(b), s(other.pub)),  // another authority
		tokenIx(sol.TokenProgramID, u64(tokTransfer, 1)[:5], w(a), w(b), s(me.pub)), // truncated data
	}
	tx := buildTx(t, me.pub, ins)
	p, err := ParseTransaction(b64(t, tx), me.pub[:])
	if err != nil {
		t.Fatal(err)
	}
	in := p.Intent()
	if in.Value.Int64() != 100+2_000+30+4 || in.To != a.String() || len(in.Outputs) != 4 {
		t.Fatalf("value %s to %s outputs %+v", in.Value, in.To, in.Outputs)
	}
	want := []intent.Token{
		{Method: "transfer", To: b.String(), Amount: big.NewInt(5_000)},
		{Contract: mint.String(), Method: "transfer", To: b.String(), Amount: big.NewInt(6_000)},
		{Method: "approve", To: b.String(), Amount: big.NewInt(7_000)},
		{Contract: mint.String(), Method: "approve", To: b.String(), Amount: big.NewInt(8_000)},
	}
	if len(in.Tokens) != len(want) {
		t.Fatalf("tokens %+v", in.Tokens)
	}
	for i, tk := range in.Tokens {
		if tk.Contract != want[i].Contract || tk.Method != want[i].Method || tk.To != want[i].To || tk.Amount.Cmp(want[i].Amount) != 0 {
			t.Fatalf("token %d = %+v, want %+v", i, tk, want[i])
		}
	}
	if in.Token == nil || in.Token.Amount.Int64() != 5_000 {
		t.Fatalf("token %+v", in.Token)
	}
	// Intent returns a copy.
	in.Tokens[0].Amount.SetInt64(0)
	in.Token.Amount.SetInt64(0)
	if p.Intent().Token.Amount.Int64() != 5_000 {
		t.Fatal("Intent returns shared state")
	}
}

func TestSignMessage(t *testing.T) {
	me := newSigner(t, "me")
	m, err := ParseMessage([]byte("hello, moon"))
	if err != nil {
		t.Fatal(err)
	}
	if in := m.Intent(); in.Kind != intent.KindMessage || in.Chain != intent.ChainSolana {
		t.Fatalf("intent %+v", in)
	}
	res, err := m.SignMessage(me.key)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := base58.Decode(res.Signature)
	if !ed25519.Verify(me.pub[:], []byte("hello, moon"), sig) {
		t.Fatal("does not verify")
	}
	// The off-chain message format (a 0xff prefix) is fine.
	if _, err := ParseMessage(append([]byte("\xffsolana offchain"), 0, 0)); err != nil {
		t.Fatal(err)
	}
	// A transaction message, bare or with trailing bytes, is refused.
	tx := buildTx(t, me.pub, []sol.Instruction{system.NewTransferInstruction(1, me.pub, newSigner(t, "d").pub).Build()})
	msg, _ := tx.Message.MarshalBinary()
	for _, data := range [][]byte{msg, append(append([]byte(nil), msg...), "junk"...)} {
		if _, err := ParseMessage(data); !errors.Is(err, ErrMessageIsTransaction) {
			t.Fatalf("a transaction message: %v", err)
		}
	}
	if _, err := ParseMessage(nil); err == nil {
		t.Fatal("empty message accepted")
	}
	if _, err := ParseMessage(make([]byte, MaxMessageSize+1)); errkind.Of(err) != errkind.TooLarge {
		t.Fatalf("oversized: %v", err)
	}
}

func TestChainInterface(t *testing.T) {
	var c chain.Chain = Chain{}
	me, dest := newSigner(t, "me"), newSigner(t, "dest")
	acct := chain.Account{Address: me.pub.String(), PublicKey: me.pub[:]}
	key, err := c.NewKey(me.raw, acct)
	if err != nil {
		t.Fatal(err)
	}
	tx := buildTx(t, me.pub, []sol.Instruction{system.NewTransferInstruction(9, me.pub, dest.pub).Build()})
	req, err := c.Parse(chain.Input{Op: chain.OpSignTransaction, Encoded: b64(t, tx)}, acct)
	if err != nil {
		t.Fatal(err)
	}
	ans, err := req.Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(ans)
	var out struct{ Signature, Transaction string }
	if err := json.Unmarshal(body, &out); err != nil || out.Signature == "" || out.Transaction == "" {
		t.Fatalf("answer %s", body)
	}
	if _, err := base64.StdEncoding.DecodeString(out.Transaction); err != nil {
		t.Fatal(err)
	}
	req, err = c.Parse(chain.Input{Op: chain.OpSignMessage, Message: []byte("hi")}, acct)
	if err != nil {
		t.Fatal(err)
	}
	if _, err = req.Sign(key); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Parse(chain.Input{Op: chain.OpSignPSBT, Encoded: "x"}, acct); err == nil {
		t.Fatal("sign-psbt accepted for Solana")
	}
	key.Destroy()
	if k := key.(*Key); k.priv[0] != 0 || k.priv[40] != 0 {
		t.Fatal("Destroy did not wipe")
	}
	other := newSigner(t, "other")
	if _, err := NewKey(other.raw, me.pub[:]); err == nil {
		t.Fatal("NewKey accepted another account's key")
	}
}
