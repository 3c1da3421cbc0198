package evm

import (
	"encoding/json"
	"testing"

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
