package intent

import (
	"math/big"
	"testing"
)

func TestNormalize(t *testing.T) {
	in := &Intent{
		Token:   &Token{Method: "transfer"},
		Tokens:  []Token{{Method: "transfer"}, {Method: "approve"}},
		Outputs: []Output{{Address: "a"}},
	}
	in.Normalize()
	if in.Value == nil || in.Value.Sign() != 0 {
		t.Fatal("value not zero")
	}
	if in.Token.Amount == nil || in.Outputs[0].Value == nil {
		t.Fatal("token or output amount left nil")
	}
	for i, tk := range in.Tokens {
		if tk.Amount == nil {
			t.Fatalf("tokens[%d] amount left nil", i)
		}
	}
}

func TestSpend(t *testing.T) {
	for _, c := range []struct {
		chain         string
		value, fee, w int64
	}{
		{ChainEthereum, 100, 7, 107},
		{ChainSolana, 100, 5000, 5100},
		{ChainBitcoin, 100, 7, 100}, // the fee is in value already
	} {
		in := &Intent{Chain: c.chain, Value: big.NewInt(c.value), MaxFee: big.NewInt(c.fee)}
		if got := in.Spend(); got.Int64() != c.w {
			t.Errorf("%s: spend %s, want %d", c.chain, got, c.w)
		}
		if in.Value.Int64() != c.value {
			t.Errorf("%s: Spend changed value", c.chain)
		}
	}
	if (&Intent{}).Spend().Sign() != 0 {
		t.Error("empty intent spends")
	}
}

func TestCloneIsDeep(t *testing.T) {
	in := &Intent{Value: big.NewInt(1), MaxFee: big.NewInt(2), ChainID: big.NewInt(3), Programs: []string{"p"},
		Undecoded: []string{"r"}, Token: &Token{Amount: big.NewInt(4), TokenID: big.NewInt(5)},
		Tokens: []Token{{Amount: big.NewInt(4)}}, Outputs: []Output{{Value: big.NewInt(6)}},
		TypedData: &TypedData{Domain: Domain{ChainID: big.NewInt(7)}}}
	c := in.Clone()
	c.Value.SetInt64(0)
	c.MaxFee.SetInt64(0)
	c.ChainID.SetInt64(0)
	c.Programs[0], c.Undecoded[0] = "x", "x"
	c.Token.Amount.SetInt64(0)
	c.Token.TokenID.SetInt64(0)
	c.Tokens[0].Amount.SetInt64(0)
	c.Outputs[0].Value.SetInt64(0)
	c.TypedData.Domain.ChainID.SetInt64(0)
	if in.Value.Int64() != 1 || in.MaxFee.Int64() != 2 || in.ChainID.Int64() != 3 || in.Programs[0] != "p" || in.Undecoded[0] != "r" ||
		in.Token.Amount.Int64() != 4 || in.Token.TokenID.Int64() != 5 || in.Tokens[0].Amount.Int64() != 4 ||
		in.Outputs[0].Value.Int64() != 6 || in.TypedData.Domain.ChainID.Int64() != 7 {
		t.Fatalf("Clone shares state: %+v", in)
	}
}
