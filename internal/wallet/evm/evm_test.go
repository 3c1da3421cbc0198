package evm

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/holiman/uint256"
)

func testKey(t testing.TB, seed string) *ecdsa.PrivateKey {
	t.Helper()
	k, err := crypto.ToECDSA(crypto.Keccak256([]byte(seed)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signedAuth returns an EIP-7702 authorization signed by the authority key,
// as a JSON object the way eth_sendTransaction carries it.
func signedAuth(t *testing.T, authority *ecdsa.PrivateKey) string {
	t.Helper()
	a, err := types.SignSetCode(authority, types.SetCodeAuthorization{
		ChainID: *uint256.NewInt(1), Address: common.HexToAddress("0x00000000000000000000000000000000000000c0"), Nonce: 7,
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(&a)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRoundTripEveryType(t *testing.T) {
	key := testKey(t, "sender")
	want := crypto.PubkeyToAddress(key.PublicKey)
	auth := signedAuth(t, testKey(t, "authority"))
	to := `"to":"0x3535353535353535353535353535353535353535"`
	cases := []struct {
		name string
		typ  uint8
		json string
	}{
		{"legacy", 0, `{"chainId":"0x1","nonce":"0x0","gasPrice":"0x3b9aca00","gas":"0x5208",` + to + `,"value":"0xde0b6b3a7640000"}`},
		{"legacy contract creation", 0, `{"chainId":"5","nonce":"1","gasPrice":"1","gas":"100000","input":"0x6000"}`},
		{"access list", 1, `{"chainId":1,"nonce":2,"gasPrice":1,"gas":30000,` + to + `,"accessList":[{"address":"0x3535353535353535353535353535353535353535","storageKeys":["0x0000000000000000000000000000000000000000000000000000000000000001"]}]}`},
		{"dynamic fee", 2, `{"type":"0x2","chainId":"0x89","nonce":"0x3","maxFeePerGas":"0x100","maxPriorityFeePerGas":"0x10","gas":"0x5208",` + to + `,"data":"0xdeadbeef","input":"0xdeadbeef","from":"0x0000000000000000000000000000000000000001"}`},
		{"blob", 3, `{"chainId":"0x1","nonce":"0x4","maxFeePerGas":"0x100","maxPriorityFeePerGas":"0x10","gas":"0x5208",` + to + `,"maxFeePerBlobGas":"0x3","blobVersionedHashes":["0x0100000000000000000000000000000000000000000000000000000000000001"]}`},
		{"set code", 4, `{"chainId":"0x1","nonce":"0x5","maxFeePerGas":"0x100","maxPriorityFeePerGas":"0x10","gas":"0x186a0",` + to + `,"authorizationList":[` + auth + `]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tx, chainID, err := ParseTransaction(json.RawMessage(c.json))
			if err != nil {
				t.Fatal(err)
			}
			if tx.Type() != c.typ {
				t.Fatalf("type %d, want %d", tx.Type(), c.typ)
			}
			signed, err := SignTransaction(tx, chainID, key)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := signed.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			var decoded types.Transaction
			if err := decoded.UnmarshalBinary(raw); err != nil {
				t.Fatal(err)
			}
			from, err := types.Sender(types.LatestSignerForChainID(chainID), &decoded)
			if err != nil {
				t.Fatal(err)
			}
			if from != want {
				t.Fatalf("sender %s, want %s", from, want)
			}
			if decoded.Hash() != signed.Hash() {
				t.Fatal("hash changed through encoding")
			}
		})
	}
}

func TestSignTransactionChainMismatch(t *testing.T) {
	tx, _, err := ParseTransaction(json.RawMessage(`{"chainId":1,"nonce":0,"maxFeePerGas":2,"maxPriorityFeePerGas":1,"gas":21000}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = SignTransaction(tx, big.NewInt(5), testKey(t, "k"))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Name != "chainId" {
		t.Fatalf("want chainId error, got %v", err)
	}
}

func TestQuantities(t *testing.T) {
	base := `"chainId":1,"nonce":0,"gas":21000,"gasPrice":1`
	cases := []struct {
		value string
		want  string // decimal, or "" for an error naming "value"
	}{
		{`"0x0"`, "0"}, {`"0x00ff"`, "255"}, {`"255"`, "255"}, {`255`, "255"}, {`"0X10"`, "16"},
		{`"0x"`, ""}, {`""`, ""}, {`"-0x1"`, ""}, {`-1`, ""}, {`1.5`, ""}, {`1e3`, ""}, {`"0xg"`, ""},
		{`"ff"`, ""}, {`true`, ""}, {`"0x1` + fmt.Sprintf("%064d", 0) + `"`, ""},
		{`"0x` + fmt.Sprintf("%064s", "f") + `"`, "15"},
	}
	for _, c := range cases {
		tx, _, err := ParseTransaction(json.RawMessage(`{` + base + `,"value":` + c.value + `}`))
		if c.want == "" {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Name != "value" {
				t.Errorf("value %s: want error naming value, got %v", c.value, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("value %s: %v", c.value, err)
			continue
		}
		if tx.Value().String() != c.want {
			t.Errorf("value %s = %s, want %s", c.value, tx.Value(), c.want)
		}
	}
}

func TestTypeInference(t *testing.T) {
	cases := map[string]uint8{
		`{"chainId":1,"nonce":0,"gas":1,"gasPrice":1}`:                              0,
		`{"chainId":1,"nonce":0,"gas":1,"gasPrice":1,"accessList":[]}`:              1,
		`{"chainId":1,"nonce":0,"gas":1,"maxFeePerGas":1,"maxPriorityFeePerGas":1}`: 2,
		`{"chainId":1,"nonce":0,"gas":1,"maxFeePerGas":1,"maxPriorityFeePerGas":1,"to":"0x3535353535353535353535353535353535353535","maxFeePerBlobGas":1,"blobVersionedHashes":["0x0100000000000000000000000000000000000000000000000000000000000000"]}`: 3,
	}
	for in, want := range cases {
		tx, _, err := ParseTransaction(json.RawMessage(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if tx.Type() != want {
			t.Errorf("%s: type %d, want %d", in, tx.Type(), want)
		}
	}
}

func TestDataLimit(t *testing.T) {
	big := "0x" + string(bytes.Repeat([]byte("00"), MaxDataSize+1))
	_, _, err := ParseTransaction(json.RawMessage(`{"chainId":1,"nonce":0,"gas":1,"gasPrice":1,"data":"` + big + `"}`))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Name != "data" {
		t.Fatalf("want data error, got %v", err)
	}
}

func TestSignMessageRecovers(t *testing.T) {
	key := testKey(t, "msg")
	sig, hash, err := SignMessage([]byte("hello"), key)
	if err != nil {
		t.Fatal(err)
	}
	// EIP-191: keccak256("\x19Ethereum Signed Message:\n5hello").
	if !bytes.Equal(hash, crypto.Keccak256([]byte("\x19Ethereum Signed Message:\n5hello"))) || !bytes.Equal(hash, accounts.TextHash([]byte("hello"))) {
		t.Fatal("wrong EIP-191 digest")
	}
	if len(sig) != 65 || (sig[64] != 27 && sig[64] != 28) {
		t.Fatalf("bad signature shape %x", sig)
	}
	rs := append([]byte(nil), sig...)
	rs[64] -= 27
	pub, err := crypto.SigToPub(hash, rs)
	if err != nil || crypto.PubkeyToAddress(*pub) != crypto.PubkeyToAddress(key.PublicKey) {
		t.Fatalf("recovered wrong signer: %v", err)
	}
}

// TestTypedDataTypes covers nested structs, arrays of structs, nested
// arrays, dynamic and fixed bytes and several integer widths; the digest
// is compared with go-ethereum's on the same document.
func TestTypedDataTypes(t *testing.T) {
	doc := `{
 "types": {
  "EIP712Domain": [{"name":"name","type":"string"},{"name":"chainId","type":"uint256"},{"name":"salt","type":"bytes32"}],
  "Order": [{"name":"maker","type":"Party"},{"name":"legs","type":"Leg[]"},{"name":"grid","type":"uint8[2][]"},
            {"name":"blob","type":"bytes"},{"name":"sel","type":"bytes4"},{"name":"i8","type":"int8"},{"name":"u256","type":"uint256"},
            {"name":"i256","type":"int"},{"name":"ok","type":"bool"},{"name":"tags","type":"string[2]"}],
  "Party": [{"name":"who","type":"address"},{"name":"ids","type":"uint64[]"}],
  "Leg": [{"name":"party","type":"Party"},{"name":"amount","type":"uint128"}]
 },
 "primaryType": "Order",
 "domain": {"name":"X","chainId":"0x1","salt":"0x0000000000000000000000000000000000000000000000000000000000000001"},
 "message": {
  "maker": {"who":"0x3535353535353535353535353535353535353535","ids":[1,"2","0x3"]},
  "legs": [{"party":{"who":"0x3636363636363636363636363636363636363636","ids":[]},"amount":"340282366920938463463374607431768211455"}],
  "grid": [[1,2],[3,255]],
  "blob": "0xdeadbeef", "sel": "0x01020304", "i8": -128, "u256": "0x` + fmt.Sprintf("%064s", "f") + `",
  "i256": "-57896044618658097711785492504343953926634992332820282019728792003956564819968", "ok": true, "tags": ["a","b"]
 }
}`
	td, err := ParseTypedData(json.RawMessage(doc))
	if err != nil {
		t.Fatal(err)
	}
	key := testKey(t, "td")
	sig, hash, err := SignTypedData(td, key)
	if err != nil {
		t.Fatal(err)
	}
	rs := append([]byte(nil), sig...)
	rs[64] -= 27
	pub, err := crypto.SigToPub(hash, rs)
	if err != nil || crypto.PubkeyToAddress(*pub) != crypto.PubkeyToAddress(key.PublicKey) {
		t.Fatalf("recovered wrong signer: %v", err)
	}
	for _, bad := range []struct{ from, to, field string }{
		{`"i8": -128`, `"i8": -129`, "message.i8"},
		{`"grid": [[1,2],[3,255]]`, `"grid": [[1,2],[3]]`, "message.grid[1]"},
		{`"grid": [[1,2],[3,255]]`, `"grid": [[1,2],[3,256]]`, "message.grid[1][1]"},
		{`"ids":[1,"2","0x3"]`, `"ids":[1,"2","0x3",1.5]`, "message.maker.ids[3]"},
		{`"amount":"340282366920938463463374607431768211455"`, `"amount":"340282366920938463463374607431768211456"`, "message.legs[0].amount"},
		{`"salt":"0x0000000000000000000000000000000000000000000000000000000000000001"`, `"salt":"0x01"`, "domain.salt"},
		{`"ok": true`, `"ok": "true"`, "message.ok"},
		{`"tags": ["a","b"]`, `"tags": ["a","b","c"]`, "message.tags"},
		{`"blob": "0xdeadbeef"`, `"blob": "deadbeef"`, "message.blob"},
	} {
		in := bytes.Replace([]byte(doc), []byte(bad.from), []byte(bad.to), 1)
		if bytes.Equal(in, []byte(doc)) {
			t.Fatalf("replacement %q did not apply", bad.from)
		}
		_, err := ParseTypedData(in)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Name != bad.field {
			t.Errorf("%s: want error naming %s, got %v", bad.to, bad.field, err)
		}
	}
}

func TestParseTxFrom(t *testing.T) {
	base := `"chainId":"0x1","nonce":"0x0","gas":"0x5208","gasPrice":"0x1","to":"0x3535353535353535353535353535353535353535"`
	tx, err := ParseTx(json.RawMessage(`{"from":"0x9d8a62f656a8d1615c1294fd71e9cfb3e4855a4f",` + base + `}`))
	if err != nil || tx.From == nil || *tx.From != common.HexToAddress("0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F") || tx.ChainID.Int64() != 1 {
		t.Fatalf("ParseTx = %+v %v", tx, err)
	}
	if tx, err := ParseTx(json.RawMessage(`{` + base + `}`)); err != nil || tx.From != nil {
		t.Fatalf("absent from: %+v %v", tx, err)
	}
	var fe *FieldError
	if _, err := ParseTx(json.RawMessage(`{"from":"0x12",` + base + `}`)); !errors.As(err, &fe) || fe.Name != "from" {
		t.Fatalf("bad from: %v", err)
	}
}
