package evm

import (
	"fmt"
	"math/big"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"

	"github.com/moonvault/moonvault/internal/intent"
)

// tokenCalls are the token calls the intent decodes on any contract:
// ERC-20 transfer, transferFrom (also ERC-721's, whose token id then reads
// as the amount), approve, and OpenZeppelin's increaseAllowance and
// decreaseAllowance; ERC-721 and ERC-1155 setApprovalForAll,
// safeTransferFrom and safeBatchTransferFrom.
var tokenCalls = mustABI(`[
 {"type":"function","name":"transfer","inputs":[{"name":"to","type":"address"},{"name":"amount","type":"uint256"}]},
 {"type":"function","name":"transferFrom","inputs":[{"name":"from","type":"address"},{"name":"to","type":"address"},{"name":"amount","type":"uint256"}]},
 {"type":"function","name":"approve","inputs":[{"name":"spender","type":"address"},{"name":"amount","type":"uint256"}]},
 {"type":"function","name":"increaseAllowance","inputs":[{"name":"spender","type":"address"},{"name":"amount","type":"uint256"}]},
 {"type":"function","name":"decreaseAllowance","inputs":[{"name":"spender","type":"address"},{"name":"amount","type":"uint256"}]},
 {"type":"function","name":"setApprovalForAll","inputs":[{"name":"operator","type":"address"},{"name":"approved","type":"bool"}]},
 {"type":"function","name":"safeTransferFrom","inputs":[{"name":"from","type":"address"},{"name":"to","type":"address"},{"name":"id","type":"uint256"}]},
 {"type":"function","name":"safeTransferFrom","inputs":[{"name":"from","type":"address"},{"name":"to","type":"address"},{"name":"id","type":"uint256"},{"name":"data","type":"bytes"}]},
 {"type":"function","name":"safeTransferFrom","inputs":[{"name":"from","type":"address"},{"name":"to","type":"address"},{"name":"id","type":"uint256"},{"name":"amount","type":"uint256"},{"name":"data","type":"bytes"}]},
 {"type":"function","name":"safeBatchTransferFrom","inputs":[{"name":"from","type":"address"},{"name":"to","type":"address"},{"name":"ids","type":"uint256[]"},{"name":"amounts","type":"uint256[]"},{"name":"data","type":"bytes"}]}
]`)

// Permit2 (Uniswap) is at one address on every chain; its calls are
// decoded only there (its selectors mean nothing elsewhere).
var permit2Address = common.HexToAddress("0x000000000022D473030F116dDEE9F6B43aC78BA3")

// permit2Calls is Permit2's IAllowanceTransfer: approve, permit (single
// and batch), transferFrom (single and batch), and the revocations
// lockdown, invalidateNonces, invalidateUnorderedNonces. Its
// ISignatureTransfer calls (permitTransferFrom...) are not decoded.
var permit2Calls = mustABI(`[
 {"type":"function","name":"approve","inputs":[{"name":"token","type":"address"},{"name":"spender","type":"address"},{"name":"amount","type":"uint160"},{"name":"expiration","type":"uint48"}]},
 {"type":"function","name":"permit","inputs":[{"name":"owner","type":"address"},{"name":"permit","type":"tuple","components":[
   {"name":"details","type":"tuple","components":[{"name":"token","type":"address"},{"name":"amount","type":"uint160"},{"name":"expiration","type":"uint48"},{"name":"nonce","type":"uint48"}]},
   {"name":"spender","type":"address"},{"name":"sigDeadline","type":"uint256"}]},{"name":"signature","type":"bytes"}]},
 {"type":"function","name":"permit","inputs":[{"name":"owner","type":"address"},{"name":"permit","type":"tuple","components":[
   {"name":"details","type":"tuple[]","components":[{"name":"token","type":"address"},{"name":"amount","type":"uint160"},{"name":"expiration","type":"uint48"},{"name":"nonce","type":"uint48"}]},
   {"name":"spender","type":"address"},{"name":"sigDeadline","type":"uint256"}]},{"name":"signature","type":"bytes"}]},
 {"type":"function","name":"transferFrom","inputs":[{"name":"from","type":"address"},{"name":"to","type":"address"},{"name":"amount","type":"uint160"},{"name":"token","type":"address"}]},
 {"type":"function","name":"transferFrom","inputs":[{"name":"transfers","type":"tuple[]","components":[{"name":"from","type":"address"},{"name":"to","type":"address"},{"name":"amount","type":"uint160"},{"name":"token","type":"address"}]}]},
 {"type":"function","name":"lockdown","inputs":[{"name":"approvals","type":"tuple[]","components":[{"name":"token","type":"address"},{"name":"spender","type":"address"}]}]},
 {"type":"function","name":"invalidateNonces","inputs":[{"name":"token","type":"address"},{"name":"spender","type":"address"},{"name":"newNonce","type":"uint48"}]},
 {"type":"function","name":"invalidateUnorderedNonces","inputs":[{"name":"wordPos","type":"uint256"},{"name":"mask","type":"uint256"}]}
]`)

// erc7821 is ERC-7821's execute(mode, executionData): the batch entry
// point of EIP-7702 delegate contracts (Solady, OpenZeppelin, the Ithaca
// and MetaMask delegators).
var erc7821 = mustABI(`[{"type":"function","name":"execute","inputs":[{"name":"mode","type":"bytes32"},{"name":"executionData","type":"bytes"}]}]`)

var (
	callsType, _    = abi.NewType("tuple[]", "", []abi.ArgumentMarshaling{{Name: "to", Type: "address"}, {Name: "value", Type: "uint256"}, {Name: "data", Type: "bytes"}})
	bytesType, _    = abi.NewType("bytes", "", nil)
	batchCalls      = abi.Arguments{{Type: callsType}}
	batchCallsOp    = abi.Arguments{{Type: callsType}, {Type: bytesType}}
	maxUint256      = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))
	maxUint160      = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 160), big.NewInt(1))
	blobGasPerBlob  = big.NewInt(131072) // EIP-4844 GAS_PER_BLOB
	mode7821Batch   = [10]byte{0x01}     // call type batch, exec type default, mode selector 0
	mode7821BatchOp = [10]byte{0x01, 0, 0, 0, 0, 0, 0x78, 0x21, 0x00, 0x01}
)

// The Go forms of the tuples above (go-ethereum matches fields by name).
type (
	permitDetails struct {
		Token      common.Address
		Amount     *big.Int
		Expiration *big.Int
		Nonce      *big.Int
	}
	permitSingle struct {
		Details     permitDetails
		Spender     common.Address
		SigDeadline *big.Int
	}
	permitBatch struct {
		Details     []permitDetails
		Spender     common.Address
		SigDeadline *big.Int
	}
	allowanceTransfer struct {
		From   common.Address
		To     common.Address
		Amount *big.Int
		Token  common.Address
	}
	batchCall struct {
		To    common.Address
		Value *big.Int
		Data  []byte
	}
)

func mustABI(s string) abi.ABI {
	a, err := abi.JSON(strings.NewReader(s))
	if err != nil {
		panic(err)
	}
	return a
}

// MessageIntent describes an EIP-191 message: nothing moves, and it is
// fully decoded.
func MessageIntent() *intent.Intent {
	return &intent.Intent{Chain: intent.ChainEthereum, Kind: intent.KindMessage, Value: new(big.Int), MaxFee: new(big.Int), Decoded: true}
}

// TransactionIntent describes a transaction from ParseTransaction sent by
// from (the account).
//
// To is the recipient (EIP-55; "" for contract creation), Value the wei
// sent (plus, for a decoded ERC-7821 batch on the account's own code, the
// wei of each call in it), MaxFee the most the fee can cost (gas ×
// maxFeePerGas, or gasPrice, plus blob gas × maxFeePerBlobGas), Selector
// the calldata's first 4 bytes, Delegates the EIP-7702 authorization
// addresses. Calldata is decoded with the ABI, as the contract would
// (arguments from the selector on, trailing bytes ignored) into Tokens:
// the token calls of tokenCalls on any contract, Permit2's calls at its
// address, and an ERC-7821 batch on the account's own code, call by call.
// Programs lists the contracts called with calldata. Decoded is false, with
// the reason, for calldata the intent cannot account for: an unknown
// selector, arguments that do not decode, data shorter than a selector,
// any other call to the account's own address (its EIP-7702 code runs as
// the account and can move anything).
func TransactionIntent(tx *types.Transaction, chainID *big.Int, from common.Address) *intent.Intent {
	in := &intent.Intent{
		Chain:   intent.ChainEthereum,
		Kind:    intent.KindTransaction,
		ChainID: new(big.Int).Set(chainID),
		Value:   new(big.Int).Set(tx.Value()),
		MaxFee:  maxFee(tx),
		Decoded: true,
		// The transaction states the ether it sends and the fee it may
		// burn; only code running as the account could send more.
		ValueKnown: true,
	}
	data := tx.Data()
	if len(data) >= 4 {
		in.Selector = hexutil.Encode(data[:4])
	}
	if to := tx.To(); to != nil {
		in.To = to.Hex()
		if len(data) > 0 {
			c := &calls{in: in, from: from}
			c.call(*to, data, "")
		}
	}
	if len(in.Tokens) > 0 {
		first := in.Tokens[0]
		in.Token = &first
	}
	for _, a := range tx.SetCodeAuthorizations() {
		in.Delegates = append(in.Delegates, a.Address.Hex())
	}
	in.Normalize()
	return in
}

// maxFee is gas × fee cap (gasPrice for legacy and access-list
// transactions) plus blob gas × blob fee cap.
func maxFee(tx *types.Transaction) *big.Int {
	fee := new(big.Int).Mul(new(big.Int).SetUint64(tx.Gas()), tx.GasFeeCap())
	if n := len(tx.BlobHashes()); n > 0 && tx.BlobGasFeeCap() != nil {
		blob := new(big.Int).Mul(big.NewInt(int64(n)), blobGasPerBlob)
		fee.Add(fee, blob.Mul(blob, tx.BlobGasFeeCap()))
	}
	return fee
}

// calls decodes the calls a transaction makes as the account.
type calls struct {
	in   *intent.Intent
	from common.Address
}

func (c *calls) undecoded(where, format string, args ...any) {
	c.in.Undecodable(where + fmt.Sprintf(format, args...))
}

// ownCode marks what the account's own (EIP-7702 delegated) code does as
// undecoded: that code can send ether too, so Value is no longer exact.
func (c *calls) ownCode(where, format string, args ...any) {
	c.undecoded(where, format, args...)
	c.in.ValueKnown = false
}

func (c *calls) program(to common.Address) {
	h := to.Hex()
	for _, p := range c.in.Programs {
		if p == h {
			return
		}
	}
	c.in.Programs = append(c.in.Programs, h)
}

// call decodes calldata sent to `to`; where prefixes reasons ("" for the
// transaction itself, "batch call N to X: " inside a batch).
func (c *calls) call(to common.Address, data []byte, where string) {
	c.program(to)
	if len(data) < 4 {
		if to == c.from {
			c.ownCode(where, "calldata shorter than a selector to the account's own address (its EIP-7702 delegated code's fallback runs as the account)")
			return
		}
		c.undecoded(where, "calldata shorter than a selector (the contract's fallback runs)")
		return
	}
	if to == c.from {
		if where == "" && c.batch(data) {
			return
		}
		c.ownCode(where, "calls the account's own address (its EIP-7702 delegated code runs as the account) with selector %s, which the vault does not decode", hexutil.Encode(data[:4]))
		return
	}
	set := tokenCalls
	if to == permit2Address {
		set = permit2Calls
	}
	m, err := set.MethodById(data[:4])
	if err != nil {
		c.undecoded(where, "selector %s is not a call the vault decodes", hexutil.Encode(data[:4]))
		return
	}
	args, err := m.Inputs.Unpack(data[4:])
	if err != nil {
		c.undecoded(where, "the arguments of %s do not decode", m.Sig)
		return
	}
	if to == permit2Address {
		err = c.permit2(m, args)
	} else {
		err = c.token(to, m, args)
	}
	if err != nil {
		c.undecoded(where, "%s: %v", m.Sig, err)
	}
}

func (c *calls) add(t intent.Token) {
	if t.Amount == nil {
		t.Amount = new(big.Int)
	}
	c.in.Tokens = append(c.in.Tokens, t)
}

// token adds a call of tokenCalls on contract.
func (c *calls) token(contract common.Address, m *abi.Method, args []any) error {
	addr := func(i int) string { return args[i].(common.Address).Hex() }
	num := func(i int) *big.Int { return new(big.Int).Set(args[i].(*big.Int)) }
	t := intent.Token{Contract: contract.Hex(), Method: m.RawName}
	switch m.Sig {
	case "transfer(address,uint256)":
		t.To, t.Amount = addr(0), num(1)
	case "transferFrom(address,address,uint256)":
		t.From, t.To, t.Amount = addr(0), addr(1), num(2)
	case "approve(address,uint256)", "increaseAllowance(address,uint256)":
		t.To, t.Amount = addr(0), num(1)
		t.Unlimited = t.Amount.Cmp(maxUint256) == 0
	case "decreaseAllowance(address,uint256)":
		t.To, t.Amount = addr(0), num(1)
	case "setApprovalForAll(address,bool)":
		t.To, t.Unlimited = addr(0), args[1].(bool)
	case "safeTransferFrom(address,address,uint256)", "safeTransferFrom(address,address,uint256,bytes)":
		t.From, t.To, t.TokenID, t.Amount = addr(0), addr(1), num(2), big.NewInt(1)
	case "safeTransferFrom(address,address,uint256,uint256,bytes)":
		t.From, t.To, t.TokenID, t.Amount = addr(0), addr(1), num(2), num(3)
	case "safeBatchTransferFrom(address,address,uint256[],uint256[],bytes)":
		ids, amounts := args[2].([]*big.Int), args[3].([]*big.Int)
		if len(ids) != len(amounts) {
			return fmt.Errorf("%d ids and %d values (the contract reverts)", len(ids), len(amounts))
		}
		for i := range ids {
			c.add(intent.Token{Contract: t.Contract, Method: t.Method, From: addr(0), To: addr(1),
				TokenID: new(big.Int).Set(ids[i]), Amount: new(big.Int).Set(amounts[i])})
		}
		return nil
	default:
		return fmt.Errorf("not decoded") // every method of tokenCalls is a case above
	}
	c.add(t)
	return nil
}

// permit2 adds a call of Permit2's allowance interface.
func (c *calls) permit2(m *abi.Method, args []any) error {
	approve := func(owner string, d permitDetails, spender common.Address) {
		c.add(intent.Token{Contract: d.Token.Hex(), Method: "approve", From: owner, To: spender.Hex(),
			Amount: new(big.Int).Set(d.Amount), Unlimited: d.Amount.Cmp(maxUint160) == 0})
	}
	move := func(t allowanceTransfer) {
		c.add(intent.Token{Contract: t.Token.Hex(), Method: "transferFrom", From: t.From.Hex(), To: t.To.Hex(), Amount: new(big.Int).Set(t.Amount)})
	}
	switch m.Sig {
	case "approve(address,address,uint160,uint48)":
		approve("", permitDetails{Token: args[0].(common.Address), Amount: args[2].(*big.Int)}, args[1].(common.Address))
	case "permit(address,((address,uint160,uint48,uint48),address,uint256),bytes)":
		p, err := convert[permitSingle](args[1])
		if err != nil {
			return err
		}
		approve(args[0].(common.Address).Hex(), p.Details, p.Spender)
	case "permit(address,((address,uint160,uint48,uint48)[],address,uint256),bytes)":
		p, err := convert[permitBatch](args[1])
		if err != nil {
			return err
		}
		for _, d := range p.Details {
			approve(args[0].(common.Address).Hex(), d, p.Spender)
		}
	case "transferFrom(address,address,uint160,address)":
		move(allowanceTransfer{From: args[0].(common.Address), To: args[1].(common.Address), Amount: args[2].(*big.Int), Token: args[3].(common.Address)})
	case "transferFrom((address,address,uint160,address)[])":
		ts, err := convert[[]allowanceTransfer](args[0])
		if err != nil {
			return err
		}
		for _, t := range ts {
			move(t)
		}
	case "lockdown((address,address)[])", "invalidateNonces(address,address,uint48)", "invalidateUnorderedNonces(uint256,uint256)":
		// Revocations: nothing leaves.
	default:
		return fmt.Errorf("not decoded")
	}
	return nil
}

// convert turns an unpacked tuple into T. abi.ConvertType panics when the
// shapes differ; they cannot (T mirrors the ABI above), but a decoder of
// untrusted bytes does not bet on it.
func convert[T any](v any) (_ T, err error) {
	var zero T
	defer func() {
		if recover() != nil {
			err = fmt.Errorf("tuple does not decode")
		}
	}()
	out, ok := abi.ConvertType(v, new(T)).(*T)
	if !ok || out == nil {
		return zero, fmt.Errorf("tuple does not decode")
	}
	return *out, nil
}

// batch decodes an ERC-7821 execute on the account's own code: each call
// runs as the account. It reports whether data is such a call (decoded or
// not); false leaves the call undecoded by the caller.
func (c *calls) batch(data []byte) bool {
	m, err := erc7821.MethodById(data[:4])
	if err != nil {
		return false
	}
	args, err := m.Inputs.Unpack(data[4:])
	if err != nil {
		return false
	}
	mode := args[0].([32]byte)
	exec := args[1].([]byte)
	var head [10]byte
	copy(head[:], mode[:10])
	head[1] = 0 // exec type: revert on failure (0) or try (1); either way every call may run
	if mode[1] > 1 || (head != mode7821Batch && head != mode7821BatchOp) {
		c.ownCode("", "ERC-7821 execute with execution mode %s, which the vault does not decode", hexutil.Encode(mode[:10]))
		return true
	}
	decoder := batchCalls
	if head == mode7821BatchOp {
		decoder = batchCallsOp
	}
	vals, err := decoder.Unpack(exec)
	if err != nil {
		c.ownCode("", "ERC-7821 execute: the batch does not decode")
		return true
	}
	list, err := convert[[]batchCall](vals[0])
	if err != nil {
		c.ownCode("", "ERC-7821 execute: the batch does not decode")
		return true
	}
	for i, bc := range list {
		to := bc.To
		if to == (common.Address{}) {
			to = c.from // ERC-7821: the zero address means the account itself
		}
		if bc.Value != nil {
			c.in.Value.Add(c.in.Value, bc.Value)
		}
		switch {
		case len(bc.Data) == 0:
			// Wei only: counted in Value.
		case to == c.from:
			c.ownCode("", "batch call %d calls the account's own address (its EIP-7702 delegated code)", i)
		default:
			c.call(to, bc.Data, fmt.Sprintf("batch call %d to %s: ", i, to.Hex()))
		}
	}
	return true
}

// TypedDataIntent describes EIP-712 typed data from ParseTypedData: the
// domain and primary type, the domain's chain id, and the allowances a
// permit grants as Tokens with method "approve": an EIP-2612 Permit (or
// the DAI-style Permit with `allowed`) for the token at
// verifyingContract; in Permit2's domain, PermitSingle and PermitBatch
// (allowances) and PermitTransferFrom, PermitBatchTransferFrom and their
// witness forms (one-time allowances). Typed data is always decoded: what a
// signature authorises is in the document.
func TypedDataIntent(td *apitypes.TypedData) *intent.Intent {
	in := &intent.Intent{Chain: intent.ChainEthereum, Kind: intent.KindTypedData, Value: new(big.Int), MaxFee: new(big.Int), Decoded: true}
	d := td.Domain
	dom := intent.Domain{Name: d.Name, Version: d.Version, Salt: d.Salt}
	if d.ChainId != nil {
		dom.ChainID = new(big.Int).Set((*big.Int)(d.ChainId))
		in.ChainID = new(big.Int).Set(dom.ChainID)
	}
	if d.VerifyingContract != "" {
		dom.VerifyingContract = common.HexToAddress(d.VerifyingContract).Hex()
	}
	in.TypedData = &intent.TypedData{PrimaryType: td.PrimaryType, Domain: dom}
	if t := permit(td, dom.VerifyingContract); t != nil {
		in.Tokens = []intent.Token{*t}
	} else if dom.VerifyingContract == permit2Address.Hex() {
		in.Tokens = permit2Typed(td.Message)
	}
	if len(in.Tokens) > 0 {
		first := in.Tokens[0]
		in.Token = &first
	}
	in.Normalize()
	return in
}

// permit decodes an EIP-2612 Permit(owner, spender, value, nonce,
// deadline), or DAI's Permit(holder, spender, nonce, expiry, allowed)
// whose allowed=true grants an unlimited allowance.
func permit(td *apitypes.TypedData, contract string) *intent.Token {
	if td.PrimaryType != "Permit" || contract == "" {
		return nil
	}
	fields := map[string]string{}
	for _, f := range td.Types["Permit"] {
		fields[f.Name] = f.Type
	}
	m := td.Message
	addr := func(k string) (string, bool) {
		s, ok := m[k].(string)
		if !ok || fields[k] != "address" || !common.IsHexAddress(s) {
			return "", false
		}
		return common.HexToAddress(s).Hex(), true
	}
	spender, ok := addr("spender")
	if !ok {
		return nil
	}
	switch len(fields) {
	case 5:
		owner, ok1 := addr("owner")
		value, ok2 := m["value"].(*big.Int)
		if ok1 && ok2 && fields["value"] == "uint256" && fields["nonce"] == "uint256" && fields["deadline"] == "uint256" {
			return &intent.Token{Contract: contract, Method: "approve", From: owner, To: spender, Amount: new(big.Int).Set(value),
				Unlimited: value.Cmp(maxUint256) == 0}
		}
		holder, ok1 := addr("holder")
		allowed, ok2 := m["allowed"].(bool)
		if ok1 && ok2 && fields["allowed"] == "bool" && fields["nonce"] == "uint256" && fields["expiry"] == "uint256" {
			amount := new(big.Int)
			if allowed {
				amount.Set(maxUint256)
			}
			return &intent.Token{Contract: contract, Method: "approve", From: holder, To: spender, Amount: amount, Unlimited: allowed}
		}
	}
	return nil
}

// permit2Typed decodes a Permit2 permit message by its fields (the
// checked typed data guarantees each field has its declared type):
// {details: PermitDetails or PermitDetails[], spender} grants allowances
// (unlimited at 2^160−1); {permitted: TokenPermissions or
// TokenPermissions[], spender} a one-time transfer of up to each amount.
func permit2Typed(m map[string]any) []intent.Token {
	spender, ok := m["spender"].(string)
	if !ok || !common.IsHexAddress(spender) {
		return nil
	}
	spender = common.HexToAddress(spender).Hex()
	var out []intent.Token
	each := func(v any, max *big.Int) {
		items, isList := v.([]any)
		if !isList {
			items = []any{v}
		}
		for _, it := range items {
			o, ok := it.(map[string]any)
			if !ok {
				continue
			}
			tok, ok1 := o["token"].(string)
			amount, ok2 := o["amount"].(*big.Int)
			if !ok1 || !ok2 || !common.IsHexAddress(tok) {
				continue
			}
			out = append(out, intent.Token{Contract: common.HexToAddress(tok).Hex(), Method: "approve", To: spender,
				Amount: new(big.Int).Set(amount), Unlimited: amount.Cmp(max) == 0})
		}
	}
	if d, ok := m["details"]; ok {
		each(d, maxUint160)
	} else if p, ok := m["permitted"]; ok {
		each(p, maxUint256)
	}
	return out
}
