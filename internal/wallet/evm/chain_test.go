package evm

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/vectors"
	"github.com/moonvault/moonvault/internal/wallet/chain"
	"github.com/moonvault/moonvault/internal/wallet/chain/chaintest"
)

func TestAbandonAddress(t *testing.T) {
	var v struct{ Mnemonic, Path, Address string }
	vectors.Read(t, "testdata/hd/good_abandon_address.json", &v)
	c := Chain{}
	p, a, _ := chaintest.Derive(t, c, chaintest.Master(t, v.Mnemonic), chain.Options{}, 0)
	if p.String() != v.Path || a.Address != v.Address {
		t.Fatalf("index 0: %s %s, want %s %s", p, a.Address, v.Path, v.Address)
	}
	if _, err := c.Options(chain.Options{Network: "mainnet"}); err == nil {
		t.Fatal("a network option was accepted")
	}
}

// TestChainInterface signs through chain.Chain and checks each answer
// with go-ethereum's recovery.
func TestChainInterface(t *testing.T) {
	var c chain.Chain = Chain{}
	priv, _ := crypto.HexToECDSA("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
	raw := secret.Bytes(crypto.FromECDSA(priv))
	addr := crypto.PubkeyToAddress(priv.PublicKey)
	acct := chain.Account{Address: addr.Hex(), PublicKey: crypto.CompressPubkey(&priv.PublicKey)}
	key, err := c.NewKey(raw, acct)
	if err != nil {
		t.Fatal(err)
	}
	// An account with only an address (made before public keys were kept).
	if _, err := c.NewKey(raw, chain.Account{Address: addr.Hex()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.NewKey(raw, chain.Account{Address: common.Address{1}.Hex()}); err == nil {
		t.Fatal("a key for another address was accepted")
	}

	req, err := c.Parse(chain.Input{Op: chain.OpSignMessage, Message: []byte("hello")}, acct)
	if err != nil {
		t.Fatal(err)
	}
	ans, err := req.Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	msg := ans.(*SignedMessage)
	sig := hexutil.MustDecode(msg.Signature)
	sig[64] -= 27
	pub, err := crypto.SigToPub(hexutil.MustDecode(msg.MessageHash), sig)
	if err != nil || crypto.PubkeyToAddress(*pub) != addr {
		t.Fatal("the message signature does not recover the account")
	}

	txDoc := json.RawMessage(`{"chainId":"0x1","nonce":"0x0","maxFeePerGas":"0x2","maxPriorityFeePerGas":"0x1","gas":"0x5208","to":"0x3535353535353535353535353535353535353535","value":"0x1","from":"` + addr.Hex() + `"}`)
	req, err = c.Parse(chain.Input{Op: chain.OpSignTransaction, Document: txDoc}, acct)
	if err != nil {
		t.Fatal(err)
	}
	if in := req.Intent(); in.Value.Int64() != 1 || in.ChainID.Int64() != 1 {
		t.Fatalf("intent %+v", in)
	}
	ans, err = req.Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	st := ans.(*SignedTransaction)
	var tx types.Transaction
	if err := tx.UnmarshalBinary(hexutil.MustDecode(st.Raw)); err != nil {
		t.Fatal(err)
	}
	from, err := types.Sender(types.LatestSignerForChainID(tx.ChainId()), &tx)
	if err != nil || from != addr || tx.Hash().Hex() != st.Hash {
		t.Fatalf("sender %s (%v)", from.Hex(), err)
	}
	body, _ := json.Marshal(st)
	var shape map[string]any
	_ = json.Unmarshal(body, &shape)
	if _, ok := shape["raw_transaction"]; !ok || len(shape) != 3 {
		t.Fatalf("answer shape %s", body)
	}

	other := json.RawMessage(`{"chainId":"0x1","nonce":"0x0","gasPrice":"0x1","gas":"0x5208","to":"0x3535353535353535353535353535353535353535","from":"0x1111111111111111111111111111111111111111"}`)
	if _, err := c.Parse(chain.Input{Op: chain.OpSignTransaction, Document: other}, acct); err != ErrFromMismatch {
		t.Fatalf("foreign from: %v", err)
	}
	b, err := os.ReadFile("testdata/good_eip712_mail.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Input json.RawMessage }
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	req, err = c.Parse(chain.Input{Op: chain.OpSignTypedData, Document: v.Input}, acct)
	if err != nil {
		t.Fatal(err)
	}
	if in := req.Intent(); in.TypedData == nil || in.TypedData.PrimaryType != "Mail" {
		t.Fatalf("intent %+v", in)
	}
	if _, err := req.Sign(key); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Parse(chain.Input{Op: chain.OpSignPSBT}, acct); err == nil {
		t.Fatal("sign-psbt accepted for Ethereum")
	}
	key.Destroy()
	//lint:ignore SA1019 the test checks that Destroy reached the scalar
	if key.(*Key).priv.D.Sign() != 0 {
		t.Fatal("Destroy did not wipe")
	}
}
