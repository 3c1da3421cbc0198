package evm

import (
	"encoding/json"
	"math/big"
	"slices"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/vectors"
)

type wantToken struct {
	Contract, Method, From, To, Amount string
	TokenID                            string `json:"token_id,omitempty"`
	Unlimited                          bool   `json:"unlimited,omitempty"`
}

func bigStr(b *big.Int) string {
	if b == nil {
		return ""
	}
	return b.String()
}

func tokenOf(got *intent.Token) wantToken {
	return wantToken{got.Contract, got.Method, got.From, got.To, bigStr(got.Amount), bigStr(got.TokenID), got.Unlimited}
}

func checkToken(t *testing.T, got *intent.Token, want *wantToken) {
	t.Helper()
	if want == nil {
		if got != nil {
			t.Fatalf("token %+v, want none", got)
		}
		return
	}
	if got == nil {
		t.Fatalf("no token, want %+v", want)
	}
	if tokenOf(got) != *want {
		t.Fatalf("token %+v, want %+v", tokenOf(got), want)
	}
}

// txWant is the expected intent of a transaction vector.
type txWant struct {
	To, Value, Selector string
	ChainID             string `json:"chain_id"`
	Decoded             bool
	MaxFee              string `json:"max_fee"`
	Programs            []string
	Token               *wantToken
	Tokens              []wantToken // every movement; absent: [token] when token is set
	Delegates           []string
	Reasons             []string // substrings of the undecoded reasons, in order
}

// txVector is a transaction, the account that sends it (default
// defaultFrom) and its intent.
type txVector struct {
	Name        string          `json:"name"`
	From        string          `json:"from,omitempty"`
	Transaction json.RawMessage `json:"transaction"`
	Want        txWant          `json:"want"`
}

// defaultFrom is the sending account of vectors that name none.
const defaultFrom = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"

func checkTxVector(t *testing.T, c txVector) {
	t.Helper()
	tx, chainID, err := ParseTransaction(c.Transaction)
	if err != nil {
		t.Fatal(err)
	}
	from := defaultFrom
	if c.From != "" {
		from = c.From
	}
	in := TransactionIntent(tx, chainID, common.HexToAddress(from))
	w := c.Want
	if in.Chain != intent.ChainEthereum || in.Kind != intent.KindTransaction {
		t.Fatalf("header %+v", in)
	}
	if in.To != w.To || in.Value.String() != w.Value || bigStr(in.ChainID) != w.ChainID || in.Selector != w.Selector {
		t.Fatalf("to %q value %s chain %s selector %q; want %+v", in.To, in.Value, in.ChainID, in.Selector, w)
	}
	if in.Decoded != w.Decoded || in.MaxFee.String() != w.MaxFee {
		t.Fatalf("decoded %v (%q) max_fee %s; want %v %s", in.Decoded, in.Undecoded, in.MaxFee, w.Decoded, w.MaxFee)
	}
	// The ether a transaction sends is exact unless the account's own code
	// may run (an EIP-7702 self-call or a batch that does not decode).
	ownCode := false
	for _, r := range in.Undecoded {
		ownCode = ownCode || strings.Contains(r, "own address") || strings.Contains(r, "ERC-7821")
	}
	if in.ValueKnown == ownCode {
		t.Fatalf("value_known %v with undecoded %q", in.ValueKnown, in.Undecoded)
	}
	if !slices.Equal(in.Programs, w.Programs) && len(in.Programs)+len(w.Programs) > 0 {
		t.Fatalf("programs %v, want %v", in.Programs, w.Programs)
	}
	if len(in.Undecoded) != len(w.Reasons) {
		t.Fatalf("undecoded %q, want %q", in.Undecoded, w.Reasons)
	}
	for i, r := range w.Reasons {
		if !strings.Contains(in.Undecoded[i], r) {
			t.Fatalf("reason %d %q does not contain %q", i, in.Undecoded[i], r)
		}
	}
	checkToken(t, in.Token, w.Token)
	wantToks := w.Tokens
	if wantToks == nil && w.Token != nil {
		wantToks = []wantToken{*w.Token}
	}
	var got []wantToken
	for i := range in.Tokens {
		got = append(got, tokenOf(&in.Tokens[i]))
	}
	if !slices.Equal(got, wantToks) {
		t.Fatalf("tokens %+v, want %+v", got, wantToks)
	}
	if (in.Token == nil) != (len(in.Tokens) == 0) {
		t.Fatal("Token and Tokens disagree")
	}
	if !slices.Equal(in.Delegates, w.Delegates) && len(in.Delegates)+len(w.Delegates) > 0 {
		t.Fatalf("delegates %v, want %v", in.Delegates, w.Delegates)
	}
}

func TestTransactionIntent(t *testing.T) {
	var f struct{ Cases []txVector }
	vectors.Read(t, "testdata/intents/good_transaction.json", &f)
	for _, c := range f.Cases {
		t.Run(c.Name, func(t *testing.T) { checkTxVector(t, c) })
	}
}

func TestTypedDataIntent(t *testing.T) {
	var f struct {
		Cases []struct {
			Name      string
			TypedData json.RawMessage `json:"typed_data"`
			Want      struct {
				PrimaryType string `json:"primary_type"`
				ChainID     string `json:"chain_id"`
				Domain      struct {
					Name, Version, Salt string
					ChainID             string `json:"chain_id"`
					VerifyingContract   string `json:"verifying_contract"`
				}
				Token  *wantToken
				Tokens []wantToken
			}
		}
	}
	vectors.Read(t, "testdata/intents/good_typed_data.json", &f)
	for _, c := range f.Cases {
		t.Run(c.Name, func(t *testing.T) {
			td, err := ParseTypedData(c.TypedData)
			if err != nil {
				t.Fatal(err)
			}
			in := TypedDataIntent(td)
			w := c.Want
			if in.Kind != intent.KindTypedData || in.TypedData == nil || in.TypedData.PrimaryType != w.PrimaryType || bigStr(in.ChainID) != w.ChainID {
				t.Fatalf("intent %+v", in)
			}
			d := in.TypedData.Domain
			if d.Name != w.Domain.Name || d.Version != w.Domain.Version || d.Salt != w.Domain.Salt || bigStr(d.ChainID) != w.Domain.ChainID || d.VerifyingContract != w.Domain.VerifyingContract {
				t.Fatalf("domain %+v, want %+v", d, w.Domain)
			}
			checkToken(t, in.Token, w.Token)
			if in.Value == nil || in.Value.Sign() != 0 || in.MaxFee == nil || in.MaxFee.Sign() != 0 {
				t.Fatal("typed data moves no ether")
			}
			if !in.Decoded {
				t.Fatalf("typed data is decoded: %q", in.Undecoded)
			}
			if w.Tokens != nil {
				var got []wantToken
				for i := range in.Tokens {
					got = append(got, tokenOf(&in.Tokens[i]))
				}
				if !slices.Equal(got, w.Tokens) {
					t.Fatalf("tokens %+v, want %+v", got, w.Tokens)
				}
			}
		})
	}
}

func TestMessageIntent(t *testing.T) {
	in := MessageIntent()
	if in.Kind != intent.KindMessage || in.Chain != intent.ChainEthereum || in.Value.Sign() != 0 || !in.Decoded || in.MaxFee == nil || in.MaxFee.Sign() != 0 {
		t.Fatalf("%+v", in)
	}
}
