package signpolicy

import (
	"fmt"
	"math/big"

	"github.com/moonvault/moonvault/internal/intent"
)

// IntentDoc is the JSON form of an intent: the field names a condition
// reads, amounts as decimal strings (wei exceed what JSON numbers carry
// exactly). It is what the dry run answers and what an approval record
// keeps. Addresses are shown as the chain package decoded them; conditions
// see 0x-hex and bech32 in lowercase.
type IntentDoc struct {
	Chain     string        `json:"chain"`
	Network   string        `json:"network,omitempty"`
	Kind      string        `json:"kind"`
	Account   string        `json:"account"`
	Owner     string        `json:"owner"`
	Principal string        `json:"principal"`
	AMR       []string      `json:"amr,omitempty"`
	ChainID   string        `json:"chain_id,omitempty"`
	To        string        `json:"to,omitempty"`
	Value     string        `json:"value"`
	Selector  string        `json:"selector,omitempty"`
	Token     *TokenDoc     `json:"token,omitempty"`
	Tokens    []TokenDoc    `json:"tokens,omitempty"`
	TypedData *TypedDataDoc `json:"typed_data,omitempty"`
	Delegates []string      `json:"delegates,omitempty"`
	Outputs   []OutputDoc   `json:"outputs,omitempty"`
}

// TokenDoc is the JSON form of intent.Token.
type TokenDoc struct {
	Contract string `json:"contract,omitempty"`
	Method   string `json:"method"`
	From     string `json:"from,omitempty"`
	To       string `json:"to,omitempty"`
	Amount   string `json:"amount"`
}

// TypedDataDoc is the JSON form of intent.TypedData.
type TypedDataDoc struct {
	PrimaryType string    `json:"primary_type"`
	Domain      DomainDoc `json:"domain"`
}

// DomainDoc is the JSON form of intent.Domain.
type DomainDoc struct {
	Name              string `json:"name,omitempty"`
	Version           string `json:"version,omitempty"`
	ChainID           string `json:"chain_id,omitempty"`
	VerifyingContract string `json:"verifying_contract,omitempty"`
	Salt              string `json:"salt,omitempty"`
}

// OutputDoc is the JSON form of intent.Output.
type OutputDoc struct {
	Address string `json:"address,omitempty"`
	Script  string `json:"script,omitempty"`
	Value   string `json:"value"`
}

func dec(v *big.Int) string {
	if v == nil {
		return "0"
	}
	return v.String()
}

func optDec(v *big.Int) string {
	if v == nil {
		return ""
	}
	return v.String()
}

// DescribeIntent returns the JSON form of in.
func DescribeIntent(in *intent.Intent) *IntentDoc {
	d := &IntentDoc{
		Chain: in.Chain, Network: in.Network, Kind: in.Kind, Account: in.Account, Owner: in.Owner,
		Principal: in.Principal, AMR: in.AMR, ChainID: optDec(in.ChainID), To: in.To,
		Value: dec(in.Value), Selector: in.Selector, Delegates: in.Delegates,
	}
	if t := in.Token; t != nil {
		d.Token = &TokenDoc{Contract: t.Contract, Method: t.Method, From: t.From, To: t.To, Amount: dec(t.Amount)}
	}
	for _, t := range in.Tokens {
		d.Tokens = append(d.Tokens, TokenDoc{Contract: t.Contract, Method: t.Method, From: t.From, To: t.To, Amount: dec(t.Amount)})
	}
	if td := in.TypedData; td != nil {
		d.TypedData = &TypedDataDoc{PrimaryType: td.PrimaryType, Domain: DomainDoc{
			Name: td.Domain.Name, Version: td.Domain.Version, ChainID: optDec(td.Domain.ChainID),
			VerifyingContract: td.Domain.VerifyingContract, Salt: td.Domain.Salt,
		}}
	}
	for _, o := range in.Outputs {
		d.Outputs = append(d.Outputs, OutputDoc{Address: o.Address, Script: o.Script, Value: dec(o.Value)})
	}
	return d
}

// Intent converts the document back (to re-evaluate a stored approval).
func (d *IntentDoc) Intent() (*intent.Intent, error) {
	in := &intent.Intent{
		Chain: d.Chain, Network: d.Network, Kind: d.Kind, Account: d.Account, Owner: d.Owner,
		Principal: d.Principal, AMR: d.AMR, To: d.To, Selector: d.Selector, Delegates: d.Delegates,
	}
	var err error
	parse := func(field, s string, opt bool) *big.Int {
		if err != nil || (opt && s == "") {
			return nil
		}
		v, ok := new(big.Int).SetString(s, 10)
		if !ok {
			err = fmt.Errorf("signpolicy: intent %s %q is not a decimal integer", field, truncate(s, 32))
		}
		return v
	}
	in.ChainID = parse("chain_id", d.ChainID, true)
	in.Value = parse("value", d.Value, false)
	if t := d.Token; t != nil {
		in.Token = &intent.Token{Contract: t.Contract, Method: t.Method, From: t.From, To: t.To,
			Amount: parse("token.amount", t.Amount, false)}
	}
	for i, t := range d.Tokens {
		in.Tokens = append(in.Tokens, intent.Token{Contract: t.Contract, Method: t.Method, From: t.From, To: t.To,
			Amount: parse(fmt.Sprintf("tokens[%d].amount", i), t.Amount, false)})
	}
	if td := d.TypedData; td != nil {
		in.TypedData = &intent.TypedData{PrimaryType: td.PrimaryType, Domain: intent.Domain{
			Name: td.Domain.Name, Version: td.Domain.Version, ChainID: parse("typed_data.domain.chain_id", td.Domain.ChainID, true),
			VerifyingContract: td.Domain.VerifyingContract, Salt: td.Domain.Salt,
		}}
	}
	for i, o := range d.Outputs {
		in.Outputs = append(in.Outputs, intent.Output{Address: o.Address, Script: o.Script,
			Value: parse(fmt.Sprintf("outputs[%d].value", i), o.Value, false)})
	}
	if err != nil {
		return nil, err
	}
	return in, nil
}
