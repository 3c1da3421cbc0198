package evm

import (
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/moonvault/moonvault/internal/vectors"
)

// The call vectors (review M3): calldata built from the interfaces as the
// EIPs and Permit2 declare them, written by this test into
// testdata/intents/good_calls.json (MV_WRITE_TESTDATA=1) and checked from
// there by TestCallIntents. testABI is the test's own declaration, apart
// from the one the decoder uses; TestCallSelectors pins its selectors to
// the published ones.
var testABI = func() abi.ABI {
	a, err := abi.JSON(strings.NewReader(`[
 {"type":"function","name":"transfer","inputs":[{"name":"to","type":"address"},{"name":"value","type":"uint256"}]},
 {"type":"function","name":"increaseAllowance","inputs":[{"name":"spender","type":"address"},{"name":"addedValue","type":"uint256"}]},
 {"type":"function","name":"decreaseAllowance","inputs":[{"name":"spender","type":"address"},{"name":"subtractedValue","type":"uint256"}]},
 {"type":"function","name":"setApprovalForAll","inputs":[{"name":"operator","type":"address"},{"name":"approved","type":"bool"}]},
 {"type":"function","name":"safeTransferFrom","inputs":[{"name":"from","type":"address"},{"name":"to","type":"address"},{"name":"tokenId","type":"uint256"}]},
 {"type":"function","name":"safeTransferFrom","inputs":[{"name":"from","type":"address"},{"name":"to","type":"address"},{"name":"tokenId","type":"uint256"},{"name":"data","type":"bytes"}]},
 {"type":"function","name":"safeTransferFrom","inputs":[{"name":"from","type":"address"},{"name":"to","type":"address"},{"name":"id","type":"uint256"},{"name":"value","type":"uint256"},{"name":"data","type":"bytes"}]},
 {"type":"function","name":"safeBatchTransferFrom","inputs":[{"name":"from","type":"address"},{"name":"to","type":"address"},{"name":"ids","type":"uint256[]"},{"name":"values","type":"uint256[]"},{"name":"data","type":"bytes"}]},
 {"type":"function","name":"approve","inputs":[{"name":"token","type":"address"},{"name":"spender","type":"address"},{"name":"amount","type":"uint160"},{"name":"expiration","type":"uint48"}]},
 {"type":"function","name":"permit","inputs":[{"name":"owner","type":"address"},{"name":"permitSingle","type":"tuple","components":[
   {"name":"details","type":"tuple","components":[{"name":"token","type":"address"},{"name":"amount","type":"uint160"},{"name":"expiration","type":"uint48"},{"name":"nonce","type":"uint48"}]},
   {"name":"spender","type":"address"},{"name":"sigDeadline","type":"uint256"}]},{"name":"signature","type":"bytes"}]},
 {"type":"function","name":"permit","inputs":[{"name":"owner","type":"address"},{"name":"permitBatch","type":"tuple","components":[
   {"name":"details","type":"tuple[]","components":[{"name":"token","type":"address"},{"name":"amount","type":"uint160"},{"name":"expiration","type":"uint48"},{"name":"nonce","type":"uint48"}]},
   {"name":"spender","type":"address"},{"name":"sigDeadline","type":"uint256"}]},{"name":"signature","type":"bytes"}]},
 {"type":"function","name":"transferFrom","inputs":[{"name":"from","type":"address"},{"name":"to","type":"address"},{"name":"amount","type":"uint160"},{"name":"token","type":"address"}]},
 {"type":"function","name":"transferFrom","inputs":[{"name":"transferDetails","type":"tuple[]","components":[{"name":"from","type":"address"},{"name":"to","type":"address"},{"name":"amount","type":"uint160"},{"name":"token","type":"address"}]}]},
 {"type":"function","name":"lockdown","inputs":[{"name":"approvals","type":"tuple[]","components":[{"name":"token","type":"address"},{"name":"spender","type":"address"}]}]},
 {"type":"function","name":"execute","inputs":[{"name":"mode","type":"bytes32"},{"name":"executionData","type":"bytes"}]}
]`))
	if err != nil {
		panic(err)
	}
	return a
}()

// Published selectors: ERC-20 (OpenZeppelin's allowance helpers),
// ERC-721, ERC-1155, Permit2's IAllowanceTransfer, ERC-7821.
var publishedSelectors = map[string]string{
	"transfer(address,uint256)":                                                 "0xa9059cbb",
	"increaseAllowance(address,uint256)":                                        "0x39509351",
	"decreaseAllowance(address,uint256)":                                        "0xa457c2d7",
	"setApprovalForAll(address,bool)":                                           "0xa22cb465",
	"safeTransferFrom(address,address,uint256)":                                 "0x42842e0e",
	"safeTransferFrom(address,address,uint256,bytes)":                           "0xb88d4fde",
	"safeTransferFrom(address,address,uint256,uint256,bytes)":                   "0xf242432a",
	"safeBatchTransferFrom(address,address,uint256[],uint256[],bytes)":          "0x2eb2c2d6",
	"approve(address,address,uint160,uint48)":                                   "0x87517c45",
	"permit(address,((address,uint160,uint48,uint48),address,uint256),bytes)":   "0x2b67b570",
	"permit(address,((address,uint160,uint48,uint48)[],address,uint256),bytes)": "0x2a2d80d1",
	"transferFrom(address,address,uint160,address)":                             "0x36c78516",
	"transferFrom((address,address,uint160,address)[])":                         "0x0d58b1db",
	"lockdown((address,address)[])":                                             "0xcc53287f",
	"execute(bytes32,bytes)":                                                    "0xe9ae5c53",
}

func TestCallSelectors(t *testing.T) {
	seen := 0
	for _, m := range testABI.Methods {
		want, ok := publishedSelectors[m.Sig]
		if !ok {
			t.Errorf("no published selector for %s", m.Sig)
			continue
		}
		if got := hexutil.Encode(m.ID); got != want {
			t.Errorf("%s: selector %s, published %s", m.Sig, got, want)
		}
		seen++
	}
	if seen != len(publishedSelectors) {
		t.Errorf("%d methods, %d published selectors", seen, len(publishedSelectors))
	}
}

// pack encodes a call of the method with signature sig.
func pack(t testing.TB, sig string, args ...any) string {
	t.Helper()
	for _, m := range testABI.Methods {
		if m.Sig != sig {
			continue
		}
		enc, err := m.Inputs.Pack(args...)
		if err != nil {
			t.Fatalf("%s: %v", sig, err)
		}
		return hexutil.Encode(append(append([]byte{}, m.ID...), enc...))
	}
	t.Fatalf("no method %s", sig)
	return ""
}

// Tuples as go-ethereum packs them (field names are the components').
type (
	tDetails struct {
		Token      common.Address
		Amount     *big.Int
		Expiration *big.Int
		Nonce      *big.Int
	}
	tPermitSingle struct {
		Details     tDetails
		Spender     common.Address
		SigDeadline *big.Int
	}
	tPermitBatch struct {
		Details     []tDetails
		Spender     common.Address
		SigDeadline *big.Int
	}
	tTransfer struct {
		From   common.Address
		To     common.Address
		Amount *big.Int
		Token  common.Address
	}
	tPair struct {
		Token   common.Address
		Spender common.Address
	}
	tCall struct {
		Target common.Address
		Value  *big.Int
		Data   []byte
	}
)

var (
	callsArgs, _     = abi.NewType("tuple[]", "", []abi.ArgumentMarshaling{{Name: "target", Type: "address"}, {Name: "value", Type: "uint256"}, {Name: "data", Type: "bytes"}})
	bytesArg, _      = abi.NewType("bytes", "", nil)
	batchExecution   = abi.Arguments{{Type: callsArgs}}
	batchExecutionOp = abi.Arguments{{Type: callsArgs}, {Type: bytesArg}}
	tModeBatch       = common.HexToHash("0x0100000000000000000000000000000000000000000000000000000000000000")
	tModeBatchOp     = common.HexToHash("0x0100000000007821000100000000000000000000000000000000000000000000")
	tModeBatchBatch  = common.HexToHash("0x0100000000007821000200000000000000000000000000000000000000000000")
)

func executeData(t testing.TB, mode common.Hash, calls []tCall, opData []byte) string {
	t.Helper()
	var enc []byte
	var err error
	if opData != nil {
		enc, err = batchExecutionOp.Pack(calls, opData)
	} else {
		enc, err = batchExecution.Pack(calls)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pack(t, "execute(bytes32,bytes)", mode, enc)
}

func bigDec(s string) *big.Int { v, _ := new(big.Int).SetString(s, 10); return v }

// callTx is an EIP-1559 transaction on chain 1 from defaultFrom: 100 000
// gas at 2 wei, so max_fee 200 000.
func callTx(to, data string, value int64) map[string]any {
	tx := map[string]any{"chainId": "0x1", "nonce": "0x0", "maxFeePerGas": "0x2", "maxPriorityFeePerGas": "0x1", "gas": "0x186a0", "to": to}
	if data != "" {
		tx["data"] = data
	}
	if value != 0 {
		tx["value"] = hexutil.EncodeBig(big.NewInt(value))
	}
	return tx
}

func callCases(t testing.TB) []txVector {
	const (
		usdc     = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
		dai      = "0x6B175474E89094C44Da98b954EedeAC495271d0F"
		nft      = "0xBC4CA0EdA7647A8aB7C2061c2E118A18a936f13D"
		permit2  = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
		spender  = "0x3535353535353535353535353535353535353535"
		other    = "0x1111111111111111111111111111111111111111"
		max256   = "115792089237316195423570985008687907853269984665640564039457584007913129639935"
		max160   = "1461501637330902918203684832716283019655932542975"
		fee      = "200000"
		selfAddr = defaultFrom
	)
	a := common.HexToAddress
	maxU256, maxU160 := bigDec(max256), bigDec(max160)
	vec := func(name string, tx map[string]any, w txWant) txVector {
		raw, err := json.Marshal(tx)
		if err != nil {
			t.Fatal(err)
		}
		if w.ChainID == "" {
			w.ChainID = "1"
		}
		if w.MaxFee == "" {
			w.MaxFee = fee
		}
		if w.Value == "" {
			w.Value = "0"
		}
		if w.Tokens != nil && w.Token == nil {
			first := w.Tokens[0]
			w.Token = &first
		}
		if d, _ := tx["data"].(string); len(d) >= 10 && w.Selector == "" {
			w.Selector = d[:10]
		}
		if to, _ := tx["to"].(string); w.To == "" {
			w.To = to
		}
		return txVector{Name: name, Transaction: raw, Want: w}
	}
	exec := executeData
	return []txVector{
		vec("increaseAllowance to the maximum: unlimited", callTx(usdc, pack(t, "increaseAllowance(address,uint256)", a(spender), maxU256), 0),
			txWant{Decoded: true, Programs: []string{usdc}, Tokens: []wantToken{{Contract: usdc, Method: "increaseAllowance", To: spender, Amount: max256, Unlimited: true}}}),
		vec("increaseAllowance bounded", callTx(usdc, pack(t, "increaseAllowance(address,uint256)", a(spender), big.NewInt(5)), 0),
			txWant{Decoded: true, Programs: []string{usdc}, Tokens: []wantToken{{Contract: usdc, Method: "increaseAllowance", To: spender, Amount: "5"}}}),
		vec("decreaseAllowance moves nothing but is decoded", callTx(usdc, pack(t, "decreaseAllowance(address,uint256)", a(spender), big.NewInt(5)), 0),
			txWant{Decoded: true, Programs: []string{usdc}, Tokens: []wantToken{{Contract: usdc, Method: "decreaseAllowance", To: spender, Amount: "5"}}}),
		vec("setApprovalForAll true: every token, unlimited", callTx(nft, pack(t, "setApprovalForAll(address,bool)", a(spender), true), 0),
			txWant{Decoded: true, Programs: []string{nft}, Tokens: []wantToken{{Contract: nft, Method: "setApprovalForAll", To: spender, Amount: "0", Unlimited: true}}}),
		vec("setApprovalForAll false revokes", callTx(nft, pack(t, "setApprovalForAll(address,bool)", a(spender), false), 0),
			txWant{Decoded: true, Programs: []string{nft}, Tokens: []wantToken{{Contract: nft, Method: "setApprovalForAll", To: spender, Amount: "0"}}}),
		vec("ERC-721 safeTransferFrom", callTx(nft, pack(t, "safeTransferFrom(address,address,uint256)", a(selfAddr), a(spender), big.NewInt(7)), 0),
			txWant{Decoded: true, Programs: []string{nft}, Tokens: []wantToken{{Contract: nft, Method: "safeTransferFrom", From: selfAddr, To: spender, Amount: "1", TokenID: "7"}}}),
		vec("ERC-721 safeTransferFrom with data", callTx(nft, pack(t, "safeTransferFrom(address,address,uint256,bytes)", a(selfAddr), a(spender), big.NewInt(8), []byte{1, 2}), 0),
			txWant{Decoded: true, Programs: []string{nft}, Tokens: []wantToken{{Contract: nft, Method: "safeTransferFrom", From: selfAddr, To: spender, Amount: "1", TokenID: "8"}}}),
		vec("ERC-1155 safeTransferFrom", callTx(nft, pack(t, "safeTransferFrom(address,address,uint256,uint256,bytes)", a(selfAddr), a(spender), big.NewInt(3), big.NewInt(40), []byte{}), 0),
			txWant{Decoded: true, Programs: []string{nft}, Tokens: []wantToken{{Contract: nft, Method: "safeTransferFrom", From: selfAddr, To: spender, Amount: "40", TokenID: "3"}}}),
		vec("ERC-1155 safeBatchTransferFrom: one movement per id", callTx(nft, pack(t, "safeBatchTransferFrom(address,address,uint256[],uint256[],bytes)", a(selfAddr), a(spender), []*big.Int{big.NewInt(1), big.NewInt(2)}, []*big.Int{big.NewInt(10), big.NewInt(20)}, []byte{}), 0),
			txWant{Decoded: true, Programs: []string{nft}, Tokens: []wantToken{
				{Contract: nft, Method: "safeBatchTransferFrom", From: selfAddr, To: spender, Amount: "10", TokenID: "1"},
				{Contract: nft, Method: "safeBatchTransferFrom", From: selfAddr, To: spender, Amount: "20", TokenID: "2"}}}),
		vec("ERC-1155 safeBatchTransferFrom with mismatched lists", callTx(nft, pack(t, "safeBatchTransferFrom(address,address,uint256[],uint256[],bytes)", a(selfAddr), a(spender), []*big.Int{big.NewInt(1), big.NewInt(2)}, []*big.Int{big.NewInt(10)}, []byte{}), 0),
			txWant{Decoded: false, Programs: []string{nft}, Reasons: []string{"2 ids and 1 values"}}),
		vec("Permit2 approve at the uint160 maximum: unlimited", callTx(permit2, pack(t, "approve(address,address,uint160,uint48)", a(usdc), a(spender), maxU160, big.NewInt(1900000000)), 0),
			txWant{Decoded: true, Programs: []string{permit2}, Tokens: []wantToken{{Contract: usdc, Method: "approve", To: spender, Amount: max160, Unlimited: true}}}),
		vec("Permit2 permit (single) submitted for an owner", callTx(permit2, pack(t, "permit(address,((address,uint160,uint48,uint48),address,uint256),bytes)", a(other),
			tPermitSingle{tDetails{a(dai), big.NewInt(99), big.NewInt(1900000000), big.NewInt(0)}, a(spender), big.NewInt(1900000000)}, []byte{1}), 0),
			txWant{Decoded: true, Programs: []string{permit2}, Tokens: []wantToken{{Contract: dai, Method: "approve", From: other, To: spender, Amount: "99"}}}),
		vec("Permit2 permit (batch)", callTx(permit2, pack(t, "permit(address,((address,uint160,uint48,uint48)[],address,uint256),bytes)", a(selfAddr),
			tPermitBatch{[]tDetails{{a(dai), big.NewInt(1), big.NewInt(1900000000), big.NewInt(0)}, {a(usdc), maxU160, big.NewInt(1900000000), big.NewInt(0)}}, a(spender), big.NewInt(1900000000)}, []byte{1}), 0),
			txWant{Decoded: true, Programs: []string{permit2}, Tokens: []wantToken{
				{Contract: dai, Method: "approve", From: selfAddr, To: spender, Amount: "1"},
				{Contract: usdc, Method: "approve", From: selfAddr, To: spender, Amount: max160, Unlimited: true}}}),
		vec("Permit2 transferFrom", callTx(permit2, pack(t, "transferFrom(address,address,uint160,address)", a(other), a(spender), big.NewInt(12), a(usdc)), 0),
			txWant{Decoded: true, Programs: []string{permit2}, Tokens: []wantToken{{Contract: usdc, Method: "transferFrom", From: other, To: spender, Amount: "12"}}}),
		vec("Permit2 batch transferFrom", callTx(permit2, pack(t, "transferFrom((address,address,uint160,address)[])", []tTransfer{{a(other), a(spender), big.NewInt(1), a(usdc)}, {a(other), a(spender), big.NewInt(2), a(dai)}}), 0),
			txWant{Decoded: true, Programs: []string{permit2}, Tokens: []wantToken{
				{Contract: usdc, Method: "transferFrom", From: other, To: spender, Amount: "1"},
				{Contract: dai, Method: "transferFrom", From: other, To: spender, Amount: "2"}}}),
		vec("Permit2 lockdown revokes: decoded, nothing moves", callTx(permit2, pack(t, "lockdown((address,address)[])", []tPair{{a(usdc), a(spender)}}), 0),
			txWant{Decoded: true, Programs: []string{permit2}}),
		vec("a Permit2 selector sent to another contract is not decoded", callTx(usdc, pack(t, "approve(address,address,uint160,uint48)", a(usdc), a(spender), maxU160, big.NewInt(1)), 0),
			txWant{Decoded: false, Programs: []string{usdc}, Reasons: []string{"selector 0x87517c45 is not a call the vault decodes"}}),
		vec("EIP-7702: the account calls its own code", callTx(selfAddr, "0xdeadbeef", 0),
			txWant{Decoded: false, Programs: []string{selfAddr}, Reasons: []string{"calls the account's own address (its EIP-7702 delegated code runs as the account)"}}),
		vec("EIP-7702: an ERC-20 selector on the account's own code is not a token call", callTx(selfAddr, pack(t, "transfer(address,uint256)", a(spender), big.NewInt(1)), 0),
			txWant{Decoded: false, Programs: []string{selfAddr}, Reasons: []string{"calls the account's own address"}}),
		vec("ERC-7821 batch on the account's own code: each call decoded", callTx(selfAddr, exec(t, tModeBatch, []tCall{
			{a(spender), big.NewInt(1000), nil},
			{a(usdc), big.NewInt(0), hexutil.MustDecode(pack(t, "transfer(address,uint256)", a(spender), big.NewInt(5)))},
			{a(nft), big.NewInt(1), hexutil.MustDecode(pack(t, "setApprovalForAll(address,bool)", a(spender), true))},
		}, nil), 2),
			txWant{Decoded: true, Value: "1003", Programs: []string{selfAddr, usdc, nft}, Tokens: []wantToken{
				{Contract: usdc, Method: "transfer", To: spender, Amount: "5"},
				{Contract: nft, Method: "setApprovalForAll", To: spender, Amount: "0", Unlimited: true}}}),
		vec("ERC-7821 batch with opData", callTx(selfAddr, exec(t, tModeBatchOp, []tCall{
			{a(usdc), big.NewInt(0), hexutil.MustDecode(pack(t, "increaseAllowance(address,uint256)", a(spender), maxU256))},
		}, []byte{0xab}), 0),
			txWant{Decoded: true, Programs: []string{selfAddr, usdc}, Tokens: []wantToken{
				{Contract: usdc, Method: "increaseAllowance", To: spender, Amount: max256, Unlimited: true}}}),
		vec("ERC-7821 batch with an unknown call", callTx(selfAddr, exec(t, tModeBatch, []tCall{
			{a(usdc), big.NewInt(0), hexutil.MustDecode(pack(t, "transfer(address,uint256)", a(spender), big.NewInt(5)))},
			{a(nft), big.NewInt(0), []byte{0xde, 0xad, 0xbe, 0xef}},
		}, nil), 0),
			txWant{Decoded: false, Programs: []string{selfAddr, usdc, nft}, Tokens: []wantToken{{Contract: usdc, Method: "transfer", To: spender, Amount: "5"}},
				Reasons: []string{"batch call 1 to " + nft + ": selector 0xdeadbeef is not a call the vault decodes"}}),
		vec("ERC-7821 batch calling the account itself (target 0 is the account)", callTx(selfAddr, exec(t, tModeBatch, []tCall{
			{common.Address{}, big.NewInt(0), []byte{0xde, 0xad, 0xbe, 0xef}},
		}, nil), 0),
			txWant{Decoded: false, Programs: []string{selfAddr}, Reasons: []string{"batch call 0 calls the account's own address"}}),
		vec("ERC-7821 batch of batches is not decoded", callTx(selfAddr, exec(t, tModeBatchBatch, []tCall{{a(spender), big.NewInt(1), nil}}, nil), 0),
			txWant{Decoded: false, Programs: []string{selfAddr}, Reasons: []string{"execution mode"}}),
		vec("blob transaction: blob gas counts in max_fee", map[string]any{"chainId": "0x1", "nonce": "0x0", "maxFeePerGas": "0x3", "maxPriorityFeePerGas": "0x1",
			"gas": "0x5208", "to": spender, "maxFeePerBlobGas": "0x7",
			"blobVersionedHashes": []string{"0x01" + strings.Repeat("aa", 31), "0x01" + strings.Repeat("bb", 31)}},
			// 21 000 × 3 + 2 blobs × 131 072 × 7
			txWant{Decoded: true, MaxFee: "1898008"}),
	}
}

// TestCallIntents checks testdata/intents/good_calls.json, and that it
// holds exactly the cases above.
func TestCallIntents(t *testing.T) {
	const file = "testdata/intents/good_calls.json"
	cases := callCases(t)
	vectors.Regenerate(t, file, "built by internal/wallet/evm/intent_calls_test.go from the interfaces of ERC-20 (OpenZeppelin allowance helpers), ERC-721, ERC-1155, Permit2 IAllowanceTransfer and ERC-7821; sent from "+defaultFrom, cases)
	var f struct{ Cases []txVector }
	vectors.Read(t, file, &f)
	if len(f.Cases) != len(cases) {
		t.Fatalf("%d vectors in %s, %d cases: regenerate", len(f.Cases), file, len(cases))
	}
	for i, c := range f.Cases {
		if c.Name != cases[i].Name {
			t.Fatalf("vector %d is %q, case is %q: regenerate", i, c.Name, cases[i].Name)
		}
		t.Run(c.Name, func(t *testing.T) { checkTxVector(t, c) })
	}
}
