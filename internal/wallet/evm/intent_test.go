package evm

import (
	"encoding/json"
	"math/big"
	"os"
	"testing"

	"github.com/moonvault/moonvault/internal/intent"
)

type wantToken struct {
	Contract, Method, From, To, Amount string
}

func readCases(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func bigStr(b *big.Int) string {
	if b == nil {
		return ""
	}
	return b.String()
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
	if got.Contract != want.Contract || got.Method != want.Method || got.From != want.From || got.To != want.To || bigStr(got.Amount) != want.Amount {
		t.Fatalf("token %+v (amount %s), want %+v", got, got.Amount, want)
	}
}

func TestTransactionIntent(t *testing.T) {
	var f struct {
		Cases []struct {
			Name        string
			Transaction json.RawMessage
			Want        struct {
				To, Value, Selector string
				ChainID             string `json:"chain_id"`
				Token               *wantToken
				Delegates           []string
			}
		}
	}
	readCases(t, "testdata/intents/good_transaction.json", &f)
	for _, c := range f.Cases {
		t.Run(c.Name, func(t *testing.T) {
			tx, chainID, err := ParseTransaction(c.Transaction)
			if err != nil {
				t.Fatal(err)
			}
			in := TransactionIntent(tx, chainID)
			w := c.Want
			if in.Chain != intent.ChainEthereum || in.Kind != intent.KindTransaction {
				t.Fatalf("header %+v", in)
			}
			if in.To != w.To || in.Value.String() != w.Value || bigStr(in.ChainID) != w.ChainID || in.Selector != w.Selector {
				t.Fatalf("to %q value %s chain %s selector %q; want %+v", in.To, in.Value, in.ChainID, in.Selector, w)
			}
			checkToken(t, in.Token, w.Token)
			if (in.Token == nil) != (len(in.Tokens) == 0) {
				t.Fatal("Token and Tokens disagree")
			}
			if len(in.Delegates) != len(w.Delegates) {
				t.Fatalf("delegates %v, want %v", in.Delegates, w.Delegates)
			}
			for i := range w.Delegates {
				if in.Delegates[i] != w.Delegates[i] {
					t.Fatalf("delegates %v, want %v", in.Delegates, w.Delegates)
				}
			}
		})
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
				Token *wantToken
			}
		}
	}
	readCases(t, "testdata/intents/good_typed_data.json", &f)
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
			if in.Value == nil || in.Value.Sign() != 0 {
				t.Fatal("typed data moves no ether")
			}
		})
	}
}

func TestMessageIntent(t *testing.T) {
	in := MessageIntent()
	if in.Kind != intent.KindMessage || in.Chain != intent.ChainEthereum || in.Value.Sign() != 0 {
		t.Fatalf("%+v", in)
	}
}
