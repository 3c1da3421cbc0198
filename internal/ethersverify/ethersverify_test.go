package ethersverify

import (
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"

	"github.com/moonvault/moonvault/internal/wallet/evm"
)

// TestEthersAgrees: what go-ethereum signs, ethers recovers to the same
// address; a signature by another key recovers to another address.
func TestEthersAgrees(t *testing.T) {
	v := New(t)
	key, err := crypto.ToECDSA(crypto.Keccak256([]byte("ethersverify")))
	if err != nil {
		t.Fatal(err)
	}
	addr := crypto.PubkeyToAddress(key.PublicKey)
	other, _ := crypto.ToECDSA(crypto.Keccak256([]byte("someone else")))

	to := common.HexToAddress("0x3535353535353535353535353535353535353535")
	tx := types.NewTx(&types.DynamicFeeTx{ChainID: big.NewInt(1), Nonce: 7, GasTipCap: big.NewInt(1), GasFeeCap: big.NewInt(2),
		Gas: 21000, To: &to, Value: big.NewInt(300_000_000_000_000_000)})
	signed, err := evm.SignTransaction(tx, big.NewInt(1), key)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := signed.MarshalBinary()
	got := v.Transaction(t, hexutil.Encode(raw))
	if got.From != addr.Hex() || got.Hash != signed.Hash().Hex() || got.ChainID != "1" || got.Value != "300000000000000000" || got.Type != 2 || got.Nonce != 7 {
		t.Fatalf("ethers decoded %+v, want from %s hash %s", got, addr.Hex(), signed.Hash().Hex())
	}

	msg := []byte("hello from the vault")
	sig, _, err := evm.SignMessage(msg, key)
	if err != nil {
		t.Fatal(err)
	}
	if from := v.MessageSigner(t, msg, hexutil.Encode(sig)); from != addr.Hex() {
		t.Fatalf("message signer %s, want %s", from, addr.Hex())
	}
	sig2, _, _ := evm.SignMessage(msg, other)
	if from := v.MessageSigner(t, msg, hexutil.Encode(sig2)); strings.EqualFold(from, addr.Hex()) {
		t.Fatal("another key's signature recovered to this address")
	}

	doc := json.RawMessage(`{"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"chainId","type":"uint256"}],
		"Mail":[{"name":"contents","type":"string"}]},"primaryType":"Mail","domain":{"name":"Ether Mail","chainId":1},
		"message":{"contents":"Hello, Bob!"}}`)
	var td apitypes.TypedData
	if err := json.Unmarshal(doc, &td); err != nil {
		t.Fatal(err)
	}
	parsed, err := evm.ParseTypedData(doc)
	if err != nil {
		t.Fatal(err)
	}
	tsig, thash, err := evm.SignTypedData(parsed, key)
	if err != nil {
		t.Fatal(err)
	}
	from, hash := v.TypedDataSigner(t, doc, hexutil.Encode(tsig))
	if from != addr.Hex() || hash != hexutil.Encode(thash) {
		t.Fatalf("typed data: ethers %s %s, want %s %s", from, hash, addr.Hex(), hexutil.Encode(thash))
	}
}
