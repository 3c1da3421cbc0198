package signpolicy

import (
	"bufio"
	"context"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/intent"
)

// docExamples reads the policies of docs/policies.md: fenced blocks whose
// info string is "json policy:NAME". The tests below run exactly what the
// guide shows.
func docExamples(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("../../docs/policies.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	var name string
	var body strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case name == "" && strings.HasPrefix(line, "```json policy:"):
			name = strings.TrimPrefix(line, "```json policy:")
			body.Reset()
		case name != "" && line == "```":
			if _, dup := out[name]; dup {
				t.Fatalf("docs/policies.md: example %q twice", name)
			}
			out[name] = body.String()
			name = ""
		case name != "":
			body.WriteString(line + "\n")
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func eth(s string) *big.Int {
	v, err := parseUnits(s, 18)
	if err != nil {
		panic(err)
	}
	return v
}

func units(s string, d int) *big.Int {
	v, err := parseUnits(s, d)
	if err != nil {
		panic(err)
	}
	return v
}

const (
	treasury = "0x1111111111111111111111111111111111111111"
	exchange = "0x2222222222222222222222222222222222222222"
	stranger = "0x9999999999999999999999999999999999999999"
	usdc     = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
	permit2  = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
	delegate = "0x63c0c19a282a1B52b07dD5a65b58948A07DAE32B"
	coldBTC  = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
	exchBTC  = "bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3297"
)

// ethTx is a user's Ethereum mainnet transaction from treasury/hot.
func ethTx(to string, value *big.Int) *intent.Intent {
	return &intent.Intent{Chain: intent.ChainEthereum, Network: "mainnet", Kind: intent.KindTransaction,
		Account: "treasury/hot", Owner: "treasury", Principal: "treasury", AMR: []string{"pwd", "otp"},
		ChainID: big.NewInt(1), To: to, Value: value}
}

func erc20(method, to string, amount *big.Int) *intent.Intent {
	in := ethTx(usdc, nil)
	in.Selector = map[string]string{"transfer": "0xa9059cbb", "transferFrom": "0x23b872dd", "approve": "0x095ea7b3"}[method]
	in.Token = &intent.Token{Contract: usdc, Method: method, To: to, Amount: amount}
	in.Tokens = []intent.Token{*in.Token} // as evm.TransactionIntent fills both
	return in
}

func typedData(primary, verifying string) *intent.Intent {
	return &intent.Intent{Chain: intent.ChainEthereum, Kind: intent.KindTypedData, Account: "treasury/hot",
		Owner: "treasury", Principal: "treasury", ChainID: big.NewInt(1),
		TypedData: &intent.TypedData{PrimaryType: primary, Domain: intent.Domain{Name: "USD Coin", Version: "2",
			ChainID: big.NewInt(1), VerifyingContract: verifying}}}
}

func psbt(outs ...string) *intent.Intent {
	in := &intent.Intent{Chain: intent.ChainBitcoin, Network: "mainnet", Kind: intent.KindPSBT,
		Account: "treasury/btc", Owner: "treasury", Principal: "treasury", Value: big.NewInt(0)}
	for _, a := range outs {
		in.Outputs = append(in.Outputs, intent.Output{Address: a, Value: big.NewInt(50_000)})
		in.Value.Add(in.Value, big.NewInt(50_000))
	}
	return in
}

func with(in *intent.Intent, f func(*intent.Intent)) *intent.Intent { f(in); return in }

// TestExamples: every example of docs/policies.md against intents that it
// must allow and intents that it must stop.
func TestExamples(t *testing.T) {
	ex := docExamples(t)
	type tc struct {
		name     string
		in       *intent.Intent
		decision Decision
		reason   string // a substring of the first match's reason
	}
	table := map[string][]tc{
		"recipient-allowlist": {
			{"treasury", ethTx(treasury, eth("1")), DecisionAllow, ""},
			{"exchange, uppercase hex", ethTx(strings.ToUpper(exchange[:2])+strings.ToUpper(exchange[2:]), eth("1")), DecisionAllow, ""},
			{"usdc contract, lowercase", erc20("transfer", treasury, units("5", 6)), DecisionAllow, ""},
			{"stranger", ethTx(stranger, eth("0.01")), DecisionDeny, "condition holds"},
			{"contract creation", ethTx("", eth("0")), DecisionDeny, ""},
			{"other owner out of scope", with(ethTx(stranger, eth("1")), func(in *intent.Intent) {
				in.Owner, in.Account = "bob", "bob/main"
			}), DecisionAllow, ""},
			{"message not a transaction", &intent.Intent{Chain: "ethereum", Kind: intent.KindMessage, Owner: "treasury", Account: "treasury/hot"}, DecisionAllow, ""},
		},
		"usdc-transfers": {
			{"allowlisted, small", erc20("transfer", treasury, units("9999.999999", 6)), DecisionAllow, ""},
			{"allowlisted, checksummed recipient", erc20("transfer", "0x1111111111111111111111111111111111111111", units("1", 6)), DecisionAllow, ""},
			{"allowlisted, at the cap", erc20("transfer", treasury, units("10000", 6)), DecisionDeny, ""},
			{"transferFrom to stranger", erc20("transferFrom", stranger, units("1", 6)), DecisionDeny, ""},
			{"to stranger", erc20("transfer", stranger, units("1", 6)), DecisionDeny, ""},
			{"approve is another rule", erc20("approve", stranger, units("1", 6)), DecisionAllow, ""},
			{"other token", with(erc20("transfer", stranger, units("1", 6)), func(in *intent.Intent) {
				in.Token.Contract = "0xdAC17F958D2ee523a2206206994597C13D831ec7"
				in.Tokens[0].Contract = in.Token.Contract
			}), DecisionAllow, ""},
			{"decoy first, stranger second", with(erc20("transfer", treasury, units("1", 6)), func(in *intent.Intent) {
				in.Tokens = append(in.Tokens, intent.Token{Contract: usdc, Method: "transfer", To: stranger, Amount: units("1", 6)})
			}), DecisionDeny, ""},
			{"plain ETH", ethTx(stranger, eth("1")), DecisionAllow, ""},
		},
		"no-unlimited-approve": {
			{"unlimited", erc20("approve", stranger, new(big.Int).Set(maxUint256)), DecisionDeny, "condition holds"},
			{"bounded", erc20("approve", stranger, units("100", 6)), DecisionAllow, ""},
			{"transfer of max", erc20("transfer", stranger, new(big.Int).Set(maxUint256)), DecisionAllow, ""},
			{"bounded first, unlimited second", with(erc20("approve", stranger, units("100", 6)), func(in *intent.Intent) {
				in.Tokens = append(in.Tokens, intent.Token{Contract: usdc, Method: "approve", To: stranger, Amount: new(big.Int).Set(maxUint256)})
			}), DecisionDeny, ""},
		},
		"known-permits": {
			{"usdc permit", typedData("Permit", usdc), DecisionAllow, ""},
			{"permit2, lowercase", typedData("PermitSingle", strings.ToLower(permit2)), DecisionAllow, ""},
			{"permit for unknown", typedData("Permit", stranger), DecisionDeny, ""},
			{"permit batch unknown", typedData("PermitBatch", stranger), DecisionDeny, ""},
			{"permit without verifying contract", typedData("Permit", ""), DecisionDeny, ""},
			{"order is not a permit", typedData("Order", stranger), DecisionAllow, ""},
		},
		"delegates-allowlist": {
			{"no authorization", ethTx(treasury, eth("1")), DecisionAllow, ""},
			{"audited, lowercase", with(ethTx(treasury, nil), func(in *intent.Intent) {
				in.Delegates = []string{strings.ToLower(delegate)}
			}), DecisionAllow, ""},
			{"one unknown among two", with(ethTx(treasury, nil), func(in *intent.Intent) {
				in.Delegates = []string{delegate, stranger}
			}), DecisionDeny, ""},
		},
		"btc-outputs": {
			{"cold and exchange", psbt(coldBTC, exchBTC), DecisionAllow, ""},
			{"uppercase bech32", psbt(strings.ToUpper(coldBTC)), DecisionAllow, ""},
			{"unknown output", psbt(coldBTC, "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"), DecisionDeny, ""},
			{"op_return", psbt(""), DecisionDeny, ""},
			{"only change (no outputs)", psbt(), DecisionAllow, ""},
			{"ethereum is another chain", ethTx(stranger, eth("1")), DecisionAllow, ""},
		},
		"large-transfers": {
			{"10 ETH exactly", ethTx(stranger, eth("10")), DecisionAllow, ""},
			{"10.5 ETH", ethTx(stranger, eth("10.5")), DecisionRequireApproval, "condition holds"},
			{"2000 ETH", ethTx(stranger, eth("2000")), DecisionRequireApproval, ""},
		},
		"apikeys-mainnet": {
			{"user on sepolia", with(ethTx(treasury, eth("1")), func(in *intent.Intent) { in.ChainID = big.NewInt(11155111) }), DecisionAllow, ""},
			{"api key on mainnet", with(ethTx(treasury, eth("1")), func(in *intent.Intent) {
				in.Principal, in.AMR = "apikey:0123456789abcdef0123456789abcdef", []string{"apikey"}
			}), DecisionAllow, ""},
			{"api key on sepolia", with(ethTx(treasury, eth("1")), func(in *intent.Intent) {
				in.Principal, in.ChainID = "apikey:0123456789abcdef0123456789abcdef", big.NewInt(11155111)
			}), DecisionDeny, ""},
			{"api key, chain id past int64", with(ethTx(treasury, eth("1")), func(in *intent.Intent) {
				in.Principal = "apikey:0123456789abcdef0123456789abcdef"
				in.ChainID = new(big.Int).Lsh(big.NewInt(1), 64)
			}), DecisionDeny, ""},
			{"api key message (no chain id)", &intent.Intent{Chain: "ethereum", Kind: intent.KindMessage, Owner: "treasury",
				Account: "treasury/hot", Principal: "apikey:0123456789abcdef0123456789abcdef"}, DecisionDeny, ""},
		},
	}
	for name, cases := range table {
		doc, ok := ex[name]
		if !ok {
			t.Fatalf("docs/policies.md has no example %q", name)
		}
		t.Run(name, func(t *testing.T) {
			e := newEngine(t, newMemKV(), nil)
			p := mustCreate(t, e, doc)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					res, err := e.Evaluate(context.Background(), c.in)
					if err != nil {
						t.Fatal(err)
					}
					if res.Decision != c.decision {
						t.Fatalf("decision = %s, want %s (%+v)", res.Decision, c.decision, res.Matched)
					}
					if c.decision == DecisionAllow {
						if len(res.Matched) != 0 {
							t.Fatalf("matched %+v on an allowed request", res.Matched)
						}
						return
					}
					if len(res.Matched) != 1 || res.Matched[0].Policy != p.ID || res.Matched[0].Name != p.Name {
						t.Fatalf("matched = %+v, want policy %s", res.Matched, p.ID)
					}
					if !strings.Contains(res.Matched[0].Reason, c.reason) {
						t.Errorf("reason %q does not contain %q", res.Matched[0].Reason, c.reason)
					}
					if c.decision == DecisionRequireApproval {
						a := res.Matched[0].Approvals
						if a == nil || a.Threshold != 2 || len(a.Approvers) != 3 {
							t.Errorf("approvals = %+v, want 2 of 3", a)
						}
					}
				})
			}
		})
	}
	for name := range ex {
		if _, ok := table[name]; !ok && name != "daily-eth-cap" {
			t.Errorf("docs example %q has no test cases", name)
		}
	}
}

// TestExampleDailyCap: the daily cap of docs/policies.md, consumed by
// Authorize and sliding out of the window.
func TestExampleDailyCap(t *testing.T) {
	c := newClock()
	e := newEngine(t, newMemKV(), c)
	p := mustCreate(t, e, docExamples(t)["daily-eth-cap"])
	ctx := context.Background()
	for i := range 2 {
		res, err := e.Authorize(ctx, ethTx(treasury, eth("0.7")), AuthorizeOptions{})
		if err != nil || res.Decision != DecisionAllow || res.Reservation == nil {
			t.Fatalf("request %d: %+v %v", i, res, err)
		}
		c.Advance(time.Hour)
	}
	res, err := e.Authorize(ctx, ethTx(treasury, eth("0.7")), AuthorizeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Decision != DecisionDeny || res.Reservation != nil {
		t.Fatalf("third request: %+v", res)
	}
	want := "24 h native spend would reach 2.1 ETH, limit 2 ETH"
	if d := res.Denial(); d == nil || d.Policy != p.ID || d.Reason != want {
		t.Fatalf("denial = %+v, want reason %q", d, want)
	}
	// 0.6 ETH still fits; another account has its own total.
	if res, _ := e.Authorize(ctx, ethTx(treasury, eth("0.6")), AuthorizeOptions{}); res.Decision != DecisionAllow {
		t.Fatalf("0.6 ETH: %+v", res)
	}
	other := with(ethTx(treasury, eth("1.9")), func(in *intent.Intent) { in.Account = "treasury/cold" })
	if res, _ := e.Authorize(ctx, other, AuthorizeOptions{}); res.Decision != DecisionAllow {
		t.Fatalf("other account: %+v", res)
	}
	// Bitcoin is outside the condition.
	if res, _ := e.Authorize(ctx, psbt(coldBTC), AuthorizeOptions{}); res.Decision != DecisionAllow {
		t.Fatalf("bitcoin: %+v", res)
	}
	// The first 0.7 leaves the window 24 h after it was signed, give or
	// take one step (24 min).
	c.Advance(22*time.Hour + 25*time.Minute)
	if res, _ := e.Evaluate(ctx, ethTx(treasury, eth("0.7"))); res.Decision != DecisionAllow {
		t.Fatalf("after the window: %+v", res)
	}
}
