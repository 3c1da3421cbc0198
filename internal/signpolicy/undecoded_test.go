package signpolicy

import (
	"context"
	"math/big"
	"strings"
	"testing"

	"github.com/moonvault/moonvault/internal/intent"
)

// solTx is a Solana transaction intent of alice/sol, fully decoded unless
// undecoded reasons are given (as the chain package reports them).
func solTx(value int64, reasons ...string) *intent.Intent {
	in := &intent.Intent{Chain: intent.ChainSolana, Kind: intent.KindTransaction, Account: "alice/sol", Owner: "alice",
		Principal: "alice", Value: big.NewInt(value), MaxFee: big.NewInt(5000), Decoded: true}
	for _, r := range reasons {
		in.Undecodable(r)
	}
	return in
}

// TestUndecodedFailsClosed (review H2, M3): on a request the chain could
// not fully decode, value, token, tokens and outputs are unknown. A
// deny or require_approval policy whose condition depends on them matches
// (fails closed) unless the rest of the condition is false; a limit whose
// condition holds matches whatever its total; `intent.decoded` is known,
// so `!intent.decoded` refuses such requests and `intent.decoded && ...`
// exempts them explicitly. An allow policy never matches on unknowns.
func TestUndecodedFailsClosed(t *testing.T) {
	const reason = "instructions[0]: program Attacker111 receives the account as a writable signer"
	undecoded := func() *intent.Intent { return solTx(0, reason) }
	type tc struct {
		name     string
		in       *intent.Intent
		decision Decision
		reason   string
	}
	table := []struct {
		doc   string
		cases []tc
	}{
		{`{"name": "daily SOL cap", "effect": "deny", "condition": "intent.chain == \"solana\"", "limit": {"amount": "2000000000", "window": "24h"}}`, []tc{
			{"undecoded, value 0", undecoded(), DecisionDeny, "not fully decoded"},
			{"decoded, value 0", solTx(0), DecisionAllow, ""},
			{"decoded, 1 SOL", solTx(1_000_000_000), DecisionAllow, ""},
		}},
		{`{"name": "SOL over 1 needs bob", "effect": "require_approval", "condition": "intent.chain == \"solana\" && intent.value > sol(\"1\")", "approvals": {"threshold": 1, "approvers": ["bob"]}}`, []tc{
			{"undecoded", undecoded(), DecisionRequireApproval, "not fully decoded"},
			{"decoded under", solTx(1_000_000_000), DecisionAllow, ""},
			{"decoded over", solTx(1_000_000_001), DecisionRequireApproval, "condition holds"},
		}},
		{`{"name": "no unlimited grants", "effect": "deny", "condition": "intent.tokens.exists(t, t.unlimited)"}`, []tc{
			{"undecoded", undecoded(), DecisionDeny, reason},
			{"decoded, no tokens", solTx(5), DecisionAllow, ""},
		}},
		{`{"name": "outputs allowlist", "effect": "deny", "condition": "intent.outputs.exists(o, !(o.address in [\"A\"]))"}`, []tc{
			{"undecoded", undecoded(), DecisionDeny, ""},
		}},
		{`{"name": "explicitly exempt", "effect": "deny", "condition": "intent.decoded && intent.value > sol(\"1\")"}`, []tc{
			{"undecoded is exempt", undecoded(), DecisionAllow, ""},
		}},
		{`{"name": "refuse what is not understood", "effect": "deny", "condition": "!intent.decoded"}`, []tc{
			{"undecoded", undecoded(), DecisionDeny, "condition holds"},
			{"decoded", solTx(5), DecisionAllow, ""},
		}},
		{`{"name": "false whatever the amounts", "effect": "deny", "condition": "intent.principal == \"bob\" && intent.value > 1"}`, []tc{
			{"alice, undecoded", undecoded(), DecisionAllow, ""},
		}},
		{`{"name": "true whatever the amounts", "effect": "deny", "condition": "intent.principal == \"alice\" || intent.value > 1"}`, []tc{
			{"alice, undecoded", undecoded(), DecisionDeny, "condition holds"},
		}},
		{`{"name": "reads no amount", "effect": "deny", "condition": "intent.to == \"Z\""}`, []tc{
			{"undecoded, other recipient", undecoded(), DecisionAllow, ""},
		}},
		{`{"name": "allow on unknowns", "effect": "allow", "condition": "intent.value < 10"}`, []tc{
			{"undecoded: not matched", undecoded(), DecisionAllow, ""},
		}},
	}
	for _, row := range table {
		e := newEngine(t, newMemKV(), nil)
		p := mustCreate(t, e, row.doc)
		t.Run(p.Name, func(t *testing.T) {
			for _, c := range row.cases {
				t.Run(c.name, func(t *testing.T) {
					for _, consume := range []bool{false, true} {
						var res *Result
						var err error
						if consume {
							res, err = e.Authorize(context.Background(), c.in, AuthorizeOptions{})
						} else {
							res, err = e.Evaluate(context.Background(), c.in)
						}
						if err != nil {
							t.Fatal(err)
						}
						if res.Decision != c.decision {
							t.Fatalf("consume=%v: decision %s, want %s (%+v)", consume, res.Decision, c.decision, res.Matched)
						}
						if c.decision == DecisionAllow {
							if len(res.Matched) != 0 && p.Effect != EffectAllow {
								t.Fatalf("matched %+v", res.Matched)
							}
							if consume {
								_ = res.Release(context.Background())
							}
							continue
						}
						if len(res.Matched) != 1 || !strings.Contains(res.Matched[0].Reason, c.reason) {
							t.Fatalf("matched %+v, want a reason containing %q", res.Matched, c.reason)
						}
						if res.Reservation != nil {
							t.Fatal("a refused request reserved spend")
						}
					}
				})
			}
		})
	}
}

// TestUndecodedApprovedIsCounted: an undecoded request held by a
// require_approval limit and approved is signed, and what it states
// (value and fee) is counted against that limit.
func TestUndecodedApprovedIsCounted(t *testing.T) {
	e := newEngine(t, newMemKV(), nil)
	p := mustCreate(t, e, `{"name": "SOL cap, approvers lift it", "effect": "require_approval", "condition": "intent.chain == \"solana\"",
		"limit": {"amount": "2000000000", "window": "24h"}, "approvals": {"threshold": 1, "approvers": ["bob"]}}`)
	ctx := context.Background()
	in := solTx(1_500_000_000, "instructions[1]: System Assign gives the account to program X")
	res, err := e.Authorize(ctx, in, AuthorizeOptions{})
	if err != nil || res.Decision != DecisionRequireApproval || !strings.Contains(res.Matched[0].Reason, "not fully decoded") {
		t.Fatalf("held: %+v %v", res, err)
	}
	res, err = e.Authorize(ctx, in, AuthorizeOptions{Approved: []string{p.ID}})
	if err != nil || res.Decision != DecisionAllow || res.Reservation == nil {
		t.Fatalf("approved: %+v %v", res, err)
	}
	// 1.5 SOL + 5000 lamports are counted: 0.5 SOL more passes the cap.
	res, err = e.Evaluate(ctx, solTx(500_000_000))
	if err != nil || res.Decision != DecisionRequireApproval || !strings.Contains(res.Matched[0].Reason, "would reach 2.00001 SOL, limit 2 SOL") {
		t.Fatalf("after the approved request: %+v %v", res, err)
	}
}

// TestFeesCounted (review M3): a native limit counts value plus max_fee,
// so a cap cannot be drained as fees; Bitcoin's value already has the fee.
func TestFeesCounted(t *testing.T) {
	e := newEngine(t, newMemKV(), nil)
	mustCreate(t, e, `{"name": "1 ETH a day", "effect": "deny", "condition": "intent.chain == \"ethereum\"", "limit": {"amount": "1000000000000000000", "window": "24h"}}`)
	ctx := context.Background()
	tx := func(value, fee string) *intent.Intent {
		in := ethTx(treasury, eth(value))
		in.MaxFee = eth(fee)
		return in
	}
	// A transaction that sends nothing but may burn 1.5 ETH in gas.
	res, err := e.Authorize(ctx, tx("0", "1.5"), AuthorizeOptions{})
	if err != nil || res.Decision != DecisionDeny || res.Denial().Reason != "24 h native spend would reach 1.5 ETH, limit 1 ETH" {
		t.Fatalf("fee-only drain: %+v %v", res, err)
	}
	res, err = e.Authorize(ctx, tx("0.7", "0.2"), AuthorizeOptions{})
	if err != nil || res.Decision != DecisionAllow {
		t.Fatalf("0.7 + 0.2: %+v %v", res, err)
	}
	res, err = e.Authorize(ctx, tx("0.05", "0.06"), AuthorizeOptions{})
	if err != nil || res.Decision != DecisionDeny || res.Denial().Reason != "24 h native spend would reach 1.01 ETH, limit 1 ETH" {
		t.Fatalf("0.05 + 0.06 after 0.9: %+v %v", res, err)
	}
	// Bitcoin: value includes the fee; max_fee is not added again.
	mustCreate(t, e, `{"name": "1000 sats", "effect": "deny", "condition": "intent.chain == \"bitcoin\"", "limit": {"amount": "1000", "window": "24h"}}`)
	b := psbt()
	b.Value, b.MaxFee = big.NewInt(1000), big.NewInt(300)
	if res, err := e.Authorize(ctx, b, AuthorizeOptions{}); err != nil || res.Decision != DecisionAllow {
		t.Fatalf("bitcoin at the cap: %+v %v", res, err)
	}
}

// TestNewIntentFields: the fields added for review H2/M3 are in the CEL
// schema with their types.
func TestNewIntentFields(t *testing.T) {
	e := newEngine(t, newMemKV(), nil)
	in := ethTx(usdc, eth("0"))
	in.MaxFee = big.NewInt(21000)
	in.Programs = []string{"0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"}
	in.Tokens = []intent.Token{{Contract: usdc, Method: "safeTransferFrom", To: stranger, Amount: big.NewInt(1), TokenID: big.NewInt(42), Unlimited: false},
		{Contract: usdc, Method: "setApprovalForAll", To: stranger, Amount: big.NewInt(0), Unlimited: true}}
	for cond, want := range map[string]bool{
		`intent.decoded`:               true,
		`intent.max_fee == wei(21000)`: true,
		`intent.max_fee > gwei(1)`:     false,
		`"0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48" in intent.programs`: true,
		`intent.tokens.exists(t, t.token_id == bigint("42"))`:             true,
		`intent.tokens.exists(t, t.unlimited)`:                            true,
		`intent.tokens.all(t, t.unlimited)`:                               false,
		`intent.token.token_id == wei(42) && !intent.token.unlimited`:     true,
	} {
		p := mustCreate(t, e, docJSON(Document{Name: "x " + cond, Effect: EffectDeny, Condition: cond}))
		res, err := e.Evaluate(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Decision == DecisionDeny; got != want {
			t.Errorf("%s = %v, want %v", cond, got, want)
		}
		if err := e.Delete(context.Background(), p.ID, Actor{User: "admin"}, 0); err != nil {
			t.Fatal(err)
		}
	}
}

// TestUndecodedValueKnown: an Ethereum call to a contract whose calldata
// the vault does not decode still states its ether and fee
// (intent.ValueKnown), so amount rules and limits count it as usual, while
// token rules still fail closed; an EIP-7702 self-call (value not known)
// is refused by the limit whatever its stated value.
func TestUndecodedValueKnown(t *testing.T) {
	ctx := context.Background()
	router := "0x1111111111111111111111111111111111111111"
	call := func(value string) *intent.Intent {
		in := ethTx(router, eth(value))
		in.Undecodable("selector 0x3593564c is not a call the vault decodes")
		in.ValueKnown = true
		return in
	}
	selfCall := func(value string) *intent.Intent {
		in := ethTx(treasury, eth(value))
		in.Undecodable("calls the account's own address (its EIP-7702 delegated code runs as the account)")
		return in
	}

	e := newEngine(t, newMemKV(), nil)
	mustCreate(t, e, `{"name": "2 ETH a day", "effect": "deny", "condition": "intent.chain == \"ethereum\"", "limit": {"amount": "2000000000000000000", "window": "24h"}}`)
	for i, want := range []Decision{DecisionAllow, DecisionAllow, DecisionAllow, DecisionDeny} {
		res, err := e.Authorize(ctx, call("0.6"), AuthorizeOptions{})
		if err != nil || res.Decision != want {
			t.Fatalf("router call %d of 0.6 ETH: %+v %v, want %s", i, res, err, want)
		}
		if want == DecisionDeny && !strings.Contains(res.Denial().Reason, "would reach 2.4 ETH, limit 2 ETH") {
			t.Fatalf("router call over the cap: reason %q", res.Denial().Reason)
		}
	}
	res, err := e.Evaluate(ctx, selfCall("0"))
	if err != nil || res.Decision != DecisionDeny || !strings.Contains(res.Matched[0].Reason, "not fully decoded") {
		t.Fatalf("self-call: %+v %v", res, err)
	}

	e2 := newEngine(t, newMemKV(), nil)
	mustCreate(t, e2, `{"name": "over 1 ETH needs bob", "effect": "require_approval", "condition": "intent.value > ether(1)", "approvals": {"threshold": 1, "approvers": ["bob"]}}`)
	mustCreate(t, e2, `{"name": "no unlimited grants", "effect": "deny", "condition": "intent.tokens.exists(t, t.unlimited)"}`)
	for _, tc := range []struct {
		name string
		in   *intent.Intent
		want Decision
	}{
		{"router call under 1 ETH: value rule false, token rule unknown", call("0.5"), DecisionDeny},
		{"self-call of 0.5 ETH: value unknown", selfCall("0.5"), DecisionDeny},
	} {
		res, err := e2.Evaluate(ctx, tc.in)
		if err != nil || res.Decision != tc.want {
			t.Fatalf("%s: %+v %v", tc.name, res, err)
		}
	}
	e3 := newEngine(t, newMemKV(), nil)
	mustCreate(t, e3, `{"name": "over 1 ETH needs bob", "effect": "require_approval", "condition": "intent.value > ether(1)", "approvals": {"threshold": 1, "approvers": ["bob"]}}`)
	for _, tc := range []struct {
		name string
		in   *intent.Intent
		want Decision
	}{
		{"router call of 0.5 ETH", call("0.5"), DecisionAllow},
		{"router call of 1.5 ETH", call("1.5"), DecisionRequireApproval},
		{"self-call of 0.5 ETH", selfCall("0.5"), DecisionRequireApproval},
	} {
		res, err := e3.Evaluate(ctx, tc.in)
		if err != nil || res.Decision != tc.want {
			t.Fatalf("%s: %+v %v", tc.name, res, err)
		}
	}
}
