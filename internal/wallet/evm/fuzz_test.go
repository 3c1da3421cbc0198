package evm

import (
	"encoding/json"
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
)

// FuzzParseTransaction: nothing panics, and whatever parses also signs and
// recovers to the signing key.
func FuzzParseTransaction(f *testing.F) {
	f.Add([]byte(`{"chainId":1,"nonce":"0x9","gasPrice":"20000000000","gas":21000,"to":"0x3535353535353535353535353535353535353535","value":"1000000000000000000"}`))
	key := testKey(f, "fuzz")
	want := crypto.PubkeyToAddress(key.PublicKey)
	f.Fuzz(func(t *testing.T, in []byte) {
		tx, chainID, err := ParseTransaction(json.RawMessage(in))
		if err != nil {
			return
		}
		signed, err := SignTransaction(tx, chainID, key)
		if err != nil {
			t.Fatalf("parsed but cannot sign: %v", err)
		}
		from, err := types.Sender(types.LatestSignerForChainID(chainID), signed)
		if err != nil || from != want {
			t.Fatalf("sender %s, %v", from, err)
		}
	})
}

// FuzzParseTypedData: nothing panics, and whatever parses also hashes.
func FuzzParseTypedData(f *testing.F) {
	f.Add([]byte(`{"types":{"EIP712Domain":[{"name":"name","type":"string"}],"M":[{"name":"a","type":"uint8[2]"}]},"primaryType":"M","domain":{"name":"x"},"message":{"a":[1,2]}}`))
	key := testKey(f, "fuzz")
	f.Fuzz(func(t *testing.T, in []byte) {
		td, err := ParseTypedData(json.RawMessage(in))
		if err != nil {
			return
		}
		if _, _, err := SignTypedData(td, key); err != nil {
			t.Fatalf("parsed but cannot sign: %v", err)
		}
	})
}

// FuzzTransactionIntent: calldata and recipients from the fuzzer, decoded
// as the intent does (every decoder: tokens, Permit2, ERC-7821 batches);
// it must never panic, and undecoded intents must say why.
func FuzzTransactionIntent(f *testing.F) {
	for _, c := range callCases(f) {
		var tx struct {
			To   string `json:"to"`
			Data string `json:"data"`
		}
		_ = json.Unmarshal(c.Transaction, &tx)
		f.Add(common.HexToAddress(tx.To).Bytes(), common.FromHex(tx.Data))
	}
	from := common.HexToAddress(defaultFrom)
	f.Fuzz(func(t *testing.T, to, data []byte) {
		addr := common.BytesToAddress(to)
		if len(to) == 1 {
			addr = from // a self-call now and then
		}
		tx := types.NewTx(&types.DynamicFeeTx{ChainID: big.NewInt(1), To: &addr, Data: data, Gas: 21000, GasFeeCap: big.NewInt(1), GasTipCap: big.NewInt(1)})
		in := TransactionIntent(tx, big.NewInt(1), from)
		if !in.Decoded && len(in.Undecoded) == 0 {
			t.Fatal("undecoded without a reason")
		}
		for _, tk := range in.Tokens {
			if tk.Amount == nil {
				t.Fatalf("token without an amount: %+v", tk)
			}
		}
	})
}
