package server

import (
	"math/big"
	"reflect"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/holiman/uint256"
)

// wantTx is what the caller asks to sign, as Go values; the JSON request is
// written from it, and the signed transaction must decode back to it.
type wantTx struct {
	typ       uint8
	chainID   int64
	nonce     uint64
	gas       uint64
	gasPrice  int64 // types 0 and 1
	tip, fee  int64 // types 2-4
	to        common.Address
	value     *big.Int
	data      []byte
	acl       types.AccessList
	blobFee   int64
	blobs     []common.Hash
	auths     []types.SetCodeAuthorization
	authsJSON []map[string]string
}

func (w wantTx) json(from string) map[string]any {
	m := map[string]any{
		"type": hexutil.EncodeUint64(uint64(w.typ)), "chainId": hexutil.EncodeUint64(uint64(w.chainID)),
		"nonce": hexutil.EncodeUint64(w.nonce), "gas": hexutil.EncodeUint64(w.gas),
		"to": w.to.Hex(), "value": hexutil.EncodeBig(w.value), "data": hexutil.Encode(w.data),
	}
	if from != "" {
		m["from"] = from
	}
	if w.typ <= types.AccessListTxType {
		m["gasPrice"] = hexutil.EncodeUint64(uint64(w.gasPrice))
	} else {
		m["maxPriorityFeePerGas"] = hexutil.EncodeUint64(uint64(w.tip))
		m["maxFeePerGas"] = hexutil.EncodeUint64(uint64(w.fee))
	}
	if w.typ != types.LegacyTxType {
		acl := []map[string]any{}
		for _, t := range w.acl {
			keys := []string{}
			for _, k := range t.StorageKeys {
				keys = append(keys, k.Hex())
			}
			acl = append(acl, map[string]any{"address": t.Address.Hex(), "storageKeys": keys})
		}
		m["accessList"] = acl
	}
	if w.typ == types.BlobTxType {
		m["maxFeePerBlobGas"] = hexutil.EncodeUint64(uint64(w.blobFee))
		hs := []string{}
		for _, h := range w.blobs {
			hs = append(hs, h.Hex())
		}
		m["blobVersionedHashes"] = hs
	}
	if w.typ == types.SetCodeTxType {
		m["authorizationList"] = w.authsJSON
	}
	return m
}

// check compares every field of the signed transaction with w.
func (w wantTx) check(t *testing.T, how string, raw []byte, signer common.Address) {
	t.Helper()
	var tx types.Transaction
	if err := tx.UnmarshalBinary(raw); err != nil {
		t.Fatalf("%s type %d: decode: %v", how, w.typ, err)
	}
	eq := func(field string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s type %d: %s = %v, want %v", how, w.typ, field, got, want)
		}
	}
	eq("type", tx.Type(), w.typ)
	eq("chainId", tx.ChainId(), big.NewInt(w.chainID))
	eq("nonce", tx.Nonce(), w.nonce)
	eq("gas", tx.Gas(), w.gas)
	eq("to", tx.To(), &w.to)
	eq("value", tx.Value(), w.value)
	eq("data", tx.Data(), w.data)
	if w.typ <= types.AccessListTxType {
		eq("gasPrice", tx.GasPrice(), big.NewInt(w.gasPrice))
	} else {
		eq("maxPriorityFeePerGas", tx.GasTipCap(), big.NewInt(w.tip))
		eq("maxFeePerGas", tx.GasFeeCap(), big.NewInt(w.fee))
	}
	acl := w.acl
	if w.typ == types.LegacyTxType {
		acl = nil
	}
	eq("accessList", tx.AccessList(), acl)
	if w.typ == types.BlobTxType {
		eq("maxFeePerBlobGas", tx.BlobGasFeeCap(), big.NewInt(w.blobFee))
		eq("blobVersionedHashes", tx.BlobHashes(), w.blobs)
		if tx.BlobTxSidecar() != nil {
			t.Errorf("%s: a sidecar was added", how)
		}
	} else {
		eq("blobVersionedHashes", len(tx.BlobHashes()), 0)
	}
	eq("authorizationList", tx.SetCodeAuthorizations(), w.auths)
	from, err := types.Sender(types.LatestSignerForChainID(tx.ChainId()), &tx)
	if err != nil || from != signer {
		t.Errorf("%s type %d: sender %s (%v), want %s", how, w.typ, from.Hex(), err, signer.Hex())
	}
}

// TestSignTransactionFields signs one transaction of every type over REST
// and over JSON-RPC, decodes what the vault returns and compares every
// field with what was asked: nothing dropped (access-list entries, storage
// keys, blob hashes, authorizations), nothing added or changed.
func TestSignTransactionFields(t *testing.T) {
	tn := startNode(t, t.TempDir(), nodeOpts{})
	tn.token = initShamir(t, tn)
	const pw = "correct horse battery staple"
	tn.mustCall(201, "POST", "/v1/users", map[string]string{"username": "alice", "password": pw}, nil)
	tn.token = login(t, tn, "alice", pw)
	var acc account
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "hot"}, &acc)
	signer := common.HexToAddress(acc.Address)

	a1, a2 := common.HexToAddress("0x1111111111111111111111111111111111111111"), common.HexToAddress("0x2222222222222222222222222222222222222222")
	k := func(b byte) common.Hash { return common.BytesToHash([]byte{b, 0xee, b}) }
	acl := types.AccessList{
		{Address: a1, StorageKeys: []common.Hash{k(1), k(2), k(3)}},
		{Address: a2, StorageKeys: []common.Hash{}},
		{Address: a1, StorageKeys: []common.Hash{k(4)}},
	}
	// Authorizations are signed by another key (the EIP-7702 authority).
	authority, err := crypto.ToECDSA(common.FromHex("0x4646464646464646464646464646464646464646464646464646464646464646"))
	if err != nil {
		t.Fatal(err)
	}
	var auths []types.SetCodeAuthorization
	var authsJSON []map[string]string
	for i, chain := range []uint64{1, 0} { // 0: valid on any chain
		a, err := types.SignSetCode(authority, types.SetCodeAuthorization{ChainID: *uint256.NewInt(chain), Address: []common.Address{a1, a2}[i], Nonce: uint64(7 + i)})
		if err != nil {
			t.Fatal(err)
		}
		auths = append(auths, a)
		authsJSON = append(authsJSON, map[string]string{
			"chainId": hexutil.EncodeUint64(chain), "address": a.Address.Hex(), "nonce": hexutil.EncodeUint64(a.Nonce),
			"yParity": hexutil.EncodeUint64(uint64(a.V)), "r": hexutil.EncodeBig(a.R.ToBig()), "s": hexutil.EncodeBig(a.S.ToBig()),
		})
	}
	base := wantTx{chainID: 1, nonce: 42, gas: 123456, gasPrice: 7e9, tip: 2e9, fee: 9e9,
		to: common.HexToAddress("0x3535353535353535353535353535353535353535"), value: big.NewInt(1234567890123),
		data: []byte{0xa9, 0x05, 0x9c, 0xbb, 0, 1, 2, 3}, acl: acl, blobFee: 5,
		blobs: []common.Hash{common.HexToHash("0x01ab00000000000000000000000000000000000000000000000000000000000a"), common.HexToHash("0x0100000000000000000000000000000000000000000000000000000000000b0b")},
		auths: auths, authsJSON: authsJSON}

	for typ := uint8(0); typ <= types.SetCodeTxType; typ++ {
		w := base
		w.typ = typ
		if typ != types.SetCodeTxType {
			w.auths = nil
		}
		if typ != types.BlobTxType {
			w.blobs = nil
		}

		var rest struct {
			Raw string `json:"raw_transaction"`
		}
		tn.mustCall(200, "POST", "/v1/accounts/hot/sign-transaction", map[string]any{"transaction": w.json("")}, &rest)
		w.check(t, "REST", hexutil.MustDecode(rest.Raw), signer)

		var rpcOut struct {
			Result string `json:"result"`
			Error  any    `json:"error"`
		}
		tn.mustCall(200, "POST", "/v1/rpc", map[string]any{"jsonrpc": "2.0", "id": 1, "method": "eth_signTransaction", "params": []any{w.json(acc.Address)}}, &rpcOut)
		if rpcOut.Error != nil {
			t.Fatalf("eth_signTransaction type %d: %v", typ, rpcOut.Error)
		}
		w.check(t, "JSON-RPC", hexutil.MustDecode(rpcOut.Result), signer)
	}
}
