package evm

import (
	"math/big"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"

	"github.com/moonvault/moonvault/internal/intent"
)

// erc20 is the part of the ERC-20 interface whose calls move or expose
// tokens.
var erc20 = mustABI(`[
 {"type":"function","name":"transfer","inputs":[{"name":"to","type":"address"},{"name":"amount","type":"uint256"}]},
 {"type":"function","name":"transferFrom","inputs":[{"name":"from","type":"address"},{"name":"to","type":"address"},{"name":"amount","type":"uint256"}]},
 {"type":"function","name":"approve","inputs":[{"name":"spender","type":"address"},{"name":"amount","type":"uint256"}]}
]`)

func mustABI(s string) abi.ABI {
	a, err := abi.JSON(strings.NewReader(s))
	if err != nil {
		panic(err)
	}
	return a
}

// MessageIntent describes an EIP-191 message.
func MessageIntent() *intent.Intent {
	return &intent.Intent{Chain: intent.ChainEthereum, Kind: intent.KindMessage, Value: new(big.Int)}
}

// TransactionIntent describes a transaction from ParseTransaction: to
// (EIP-55; "" for contract creation), value in wei, chain id, the calldata
// selector, an ERC-20 transfer, transferFrom or approve (decoded with the
// ABI, as the token contract would: arguments from the 4-byte selector on,
// trailing bytes ignored; a call too short to decode is no token movement,
// it reverts), and the EIP-7702 authorization addresses.
func TransactionIntent(tx *types.Transaction, chainID *big.Int) *intent.Intent {
	in := &intent.Intent{
		Chain:   intent.ChainEthereum,
		Kind:    intent.KindTransaction,
		ChainID: new(big.Int).Set(chainID),
		Value:   new(big.Int).Set(tx.Value()),
	}
	if to := tx.To(); to != nil {
		in.To = to.Hex()
	}
	data := tx.Data()
	if len(data) >= 4 {
		in.Selector = hexutil.Encode(data[:4])
		if tx.To() != nil {
			in.Token = erc20Call(*tx.To(), data)
		}
	}
	if in.Token != nil {
		in.Tokens = []intent.Token{*in.Token}
	}
	for _, a := range tx.SetCodeAuthorizations() {
		in.Delegates = append(in.Delegates, a.Address.Hex())
	}
	in.Normalize()
	return in
}

func erc20Call(contract common.Address, data []byte) *intent.Token {
	m, err := erc20.MethodById(data[:4])
	if err != nil {
		return nil
	}
	args, err := m.Inputs.Unpack(data[4:])
	if err != nil {
		return nil
	}
	t := &intent.Token{Contract: contract.Hex(), Method: m.Name}
	switch m.Name {
	case "transfer", "approve":
		t.To = args[0].(common.Address).Hex()
		t.Amount = args[1].(*big.Int)
	case "transferFrom":
		t.From = args[0].(common.Address).Hex()
		t.To = args[1].(common.Address).Hex()
		t.Amount = args[2].(*big.Int)
	}
	return t
}

// TypedDataIntent describes EIP-712 typed data from ParseTypedData: the
// domain and primary type, the domain's chain id, and, for an EIP-2612
// Permit (or the DAI-style Permit with `allowed`) signed for the token at
// verifyingContract, the approval it grants, as Token{Method: "approve"}.
func TypedDataIntent(td *apitypes.TypedData) *intent.Intent {
	in := &intent.Intent{Chain: intent.ChainEthereum, Kind: intent.KindTypedData, Value: new(big.Int)}
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
		in.Token = t
		in.Tokens = []intent.Token{*t}
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
			return &intent.Token{Contract: contract, Method: "approve", From: owner, To: spender, Amount: new(big.Int).Set(value)}
		}
		holder, ok1 := addr("holder")
		allowed, ok2 := m["allowed"].(bool)
		if ok1 && ok2 && fields["allowed"] == "bool" && fields["nonce"] == "uint256" && fields["expiry"] == "uint256" {
			amount := new(big.Int)
			if allowed {
				amount = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))
			}
			return &intent.Token{Contract: contract, Method: "approve", From: holder, To: spender, Amount: amount}
		}
	}
	return nil
}
