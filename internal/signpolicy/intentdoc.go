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
	Chain     string   `json:"chain"`
	Network   string   `json:"network,omitempty"`
	Kind      string   `json:"kind"`
	Account   string   `json:"account"`
	Owner     string   `json:"owner"`
	Principal string   `json:"principal"`
	AMR       []string `json:"amr,omitempty"`
	ChainID   string   `json:"chain_id,omitempty"`
	To        string   `json:"to,omitempty"`
	Value     string   `json:"value"`
	MaxFee    string   `json:"max_fee"`
	Decoded   bool     `json:"decoded"`
	// ValueKnown: value and max_fee are exact though decoded is false.
	ValueKnown bool          `json:"value_known,omitempty"`
	Undecoded  []string      `json:"undecoded,omitempty"`
	Programs   []string      `json:"programs,omitempty"`
	Selector   string        `json:"selector,omitempty"`
	Token      *TokenDoc     `json:"token,omitempty"`
	Tokens     []TokenDoc    `json:"tokens,omitempty"`
	TypedData  *TypedDataDoc `json:"typed_data,omitempty"`
	Delegates  []string      `json:"delegates,omitempty"`
	Outputs    []OutputDoc   `json:"outputs,omitempty"`
}

// TokenDoc is the JSON form of intent.Token.
type TokenDoc struct {
	Contract  string `json:"contract,omitempty"`
	Method    string `json:"method"`
	From      string `json:"from,omitempty"`
	To        string `json:"to,omitempty"`
	Amount    string `json:"amount"`
	TokenID   string `json:"token_id,omitempty"`
	Unlimited bool   `json:"unlimited,omitempty"`
}

func tokenDoc(t *intent.Token) TokenDoc {
	return TokenDoc{Contract: t.Contract, Method: t.Method, From: t.From, To: t.To, Amount: dec(t.Amount),
		TokenID: optDec(t.TokenID), Unlimited: t.Unlimited}
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
		Value: dec(in.Value), MaxFee: dec(in.MaxFee), Decoded: in.Decoded, Undecoded: in.Undecoded,
		Programs: in.Programs, Selector: in.Selector, Delegates: in.Delegates,
	}
	if !in.Decoded {
		d.ValueKnown = in.ValueKnown
	}
	if t := in.Token; t != nil {
		td := tokenDoc(t)
		d.Token = &td
	}
	for i := range in.Tokens {
		d.Tokens = append(d.Tokens, tokenDoc(&in.Tokens[i]))
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
		Decoded: d.Decoded, ValueKnown: d.ValueKnown, Undecoded: d.Undecoded, Programs: d.Programs,
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
	in.MaxFee = parse("max_fee", d.MaxFee, true)
	token := func(field string, t TokenDoc) intent.Token {
		return intent.Token{Contract: t.Contract, Method: t.Method, From: t.From, To: t.To, Unlimited: t.Unlimited,
			Amount: parse(field+".amount", t.Amount, false), TokenID: parse(field+".token_id", t.TokenID, true)}
	}
	if t := d.Token; t != nil {
		tk := token("token", *t)
		in.Token = &tk
	}
	for i, t := range d.Tokens {
		in.Tokens = append(in.Tokens, token(fmt.Sprintf("tokens[%d]", i), t))
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
