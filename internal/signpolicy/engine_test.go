package signpolicy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/intent"
)

// bigList is a CEL list literal of n ints.
func bigList(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprint(i)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// TestCostLimit: conditions that try to loop or to build huge values stop
// at the cost limit (or the bigint bound) and the policy fails closed.
func TestCostLimit(t *testing.T) {
	l := bigList(1000)
	for _, tc := range []struct{ name, cond, want string }{
		{"nested loop 10^6", l + ".all(x, " + l + ".all(y, x != y || intent.value > 0))", "cost limit"},
		{"nested exists 10^6", l + ".exists(x, " + l + ".exists(y, x * y == -1))", "cost limit"},
		{"quadratic memory", l + ".map(x, " + l + ".map(y, intent.principal + intent.principal)).size() > 0", "cost limit"},
		{"string growth", l + ".map(x, " + l + ".filter(y, (intent.to + intent.to + intent.to).size() > 0)).size() > 0", "cost limit"},
		{"bigint growth", "max_uint256 * max_uint256 * max_uint256 * max_uint256 * max_uint256 > wei(0)", "bigint overflow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, newMemKV(), nil)
			deny := mustCreate(t, e, docJSON(Document{Name: "loop", Effect: EffectDeny, Condition: tc.cond}))
			mustCreate(t, e, docJSON(Document{Name: "loop allow", Effect: EffectAllow, Condition: tc.cond}))
			res, err := e.Evaluate(context.Background(), ethTx(treasury, eth("1")))
			if err != nil {
				t.Fatal(err)
			}
			if res.Decision != DecisionDeny || len(res.Matched) != 1 || res.Matched[0].Policy != deny.ID {
				t.Fatalf("result = %+v, want the deny policy alone (fail closed; the allow one ignored)", res)
			}
			if r := res.Matched[0].Reason; !strings.Contains(r, "could not be evaluated") || !strings.Contains(r, tc.want) {
				t.Errorf("reason = %q, want %q", r, tc.want)
			}
			p, err := e.c.compile(tc.cond)
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.eval(e.c.newActivation(ethTx(treasury, eth("1")), e.now()))
			if tc.want == "cost limit" && !errors.Is(err, ErrCostLimit) {
				t.Errorf("eval err = %v, want ErrCostLimit", err)
			}
		})
	}
}

func TestPrecedence(t *testing.T) {
	in := ethTx(stranger, eth("20"))
	for _, tc := range []struct {
		name    string
		effects []Effect
		want    Decision
	}{
		{"none", nil, DecisionAllow},
		{"allow", []Effect{EffectAllow}, DecisionAllow},
		{"approval beats allow", []Effect{EffectAllow, EffectRequireApproval}, DecisionRequireApproval},
		{"deny beats all", []Effect{EffectRequireApproval, EffectAllow, EffectDeny}, DecisionDeny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, newMemKV(), nil)
			// A non-matching deny is never reported.
			mustCreate(t, e, `{"name": "a miss", "effect": "deny", "condition": "intent.chain == \"solana\""}`)
			for i, eff := range tc.effects {
				d := Document{Name: fmt.Sprintf("p%d", i), Effect: eff, Condition: "intent.value > ether(10)"}
				if eff == EffectRequireApproval {
					d.Approvals = &Approvals{Threshold: 1, Approvers: []string{"alice"}}
				}
				mustCreate(t, e, docJSON(d))
			}
			res, err := e.Evaluate(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			if res.Decision != tc.want || len(res.Matched) != len(tc.effects) {
				t.Fatalf("result %+v, want %s with %d matches", res, tc.want, len(tc.effects))
			}
			for i := 1; i < len(res.Matched); i++ {
				if effectRank[res.Matched[i-1].Effect] > effectRank[res.Matched[i].Effect] {
					t.Errorf("matches not strongest first: %+v", res.Matched)
				}
			}
			if tc.want == DecisionRequireApproval && len(res.RequiredApprovals()) != 1 {
				t.Errorf("RequiredApprovals = %+v", res.RequiredApprovals())
			}
		})
	}
}

func TestScope(t *testing.T) {
	e := newEngine(t, newMemKV(), nil)
	acct := mustCreate(t, e, `{"name": "account", "effect": "deny", "condition": "true", "accounts": ["alice/hot"]}`)
	own := mustCreate(t, e, `{"name": "owner", "effect": "deny", "condition": "true", "owners": ["bob"]}`)
	all := mustCreate(t, e, `{"name": "global", "effect": "require_approval", "condition": "intent.value > ether(1)", "approvals": {"threshold": 1, "approvers": ["carol"]}}`)
	for _, tc := range []struct {
		account, owner string
		want           []string
	}{
		{"alice/hot", "alice", []string{acct.ID, all.ID}},
		{"alice/cold", "alice", []string{all.ID}},
		{"bob/x", "bob", []string{own.ID, all.ID}},
		{"carol/alice", "carol", []string{all.ID}},
	} {
		in := ethTx(stranger, eth("2"))
		in.Account, in.Owner = tc.account, tc.owner
		res, err := e.Evaluate(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range res.Matched {
			got = append(got, m.Policy)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: matched %v, want %v", tc.account, got, tc.want)
		}
	}
}

// TestBrokenStoredPolicy: a stored policy that no longer compiles fails
// closed when it denies, and is ignored when it allows.
func TestBrokenStoredPolicy(t *testing.T) {
	kv := newMemKV()
	ctx := context.Background()
	for _, p := range []Policy{
		{ID: "pol_aaaaaaaaaaaaaaaaaaaaaaaaaa", Version: 1, Document: Document{Name: "broken deny", Effect: EffectDeny, Condition: "intent.no_such_field"}},
		{ID: "pol_bbbbbbbbbbbbbbbbbbbbbbbbbb", Version: 1, Document: Document{Name: "broken allow", Effect: EffectAllow, Condition: "intent.no_such_field"}},
	} {
		if err := kv.Put(ctx, headKey(p.ID), mustJSON(p)); err != nil {
			t.Fatal(err)
		}
	}
	e := newEngine(t, kv, nil)
	res, err := e.Evaluate(ctx, ethTx(treasury, nil))
	if err != nil {
		t.Fatal(err)
	}
	if res.Decision != DecisionDeny || len(res.Matched) != 1 || !strings.Contains(res.Matched[0].Reason, "does not compile") {
		t.Fatalf("result %+v", res)
	}
}

func TestNotLoadedFailsClosed(t *testing.T) {
	kv := newMemKV()
	kv.setFailing(true)
	e, err := New(kv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(context.Background()); !errors.Is(err, errDown) {
		t.Fatalf("Reload = %v", err)
	}
	if _, err := e.Evaluate(context.Background(), ethTx(treasury, nil)); !errors.Is(err, ErrNotLoaded) || errkind.Of(err) != errkind.Unavailable {
		t.Fatalf("Evaluate = %v, want ErrNotLoaded (unavailable)", err)
	}
}

// TestStatelessTouchesNoStorage: without limits, evaluation is in memory;
// with a limit and storage down, Authorize fails (never signs blind).
func TestStatelessTouchesNoStorage(t *testing.T) {
	kv := newMemKV()
	e := newEngine(t, kv, nil)
	mustCreate(t, e, `{"name": "big", "effect": "deny", "condition": "intent.value > ether(100)"}`)
	g0, u0 := kv.counts()
	for range 10 {
		if _, err := e.Authorize(context.Background(), ethTx(treasury, eth("1")), AuthorizeOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if g, u := kv.counts(); g != g0 || u != u0 {
		t.Fatalf("stateless evaluation touched storage: %d gets, %d updates", g-g0, u-u0)
	}
	mustCreate(t, e, `{"name": "cap", "effect": "deny", "condition": "true", "limit": {"count": 100, "window": "1h"}}`)
	kv.setFailing(true)
	_, err := e.Authorize(context.Background(), ethTx(treasury, eth("1")), AuthorizeOptions{})
	if !errors.Is(err, errDown) {
		t.Fatalf("Authorize with storage down = %v, want an error", err)
	}
	if _, err := e.Evaluate(context.Background(), ethTx(treasury, eth("1"))); !errors.Is(err, errDown) {
		t.Fatalf("Evaluate with storage down = %v, want an error", err)
	}
}

func TestVersions(t *testing.T) {
	kv := newMemKV()
	c := newClock()
	e := newEngine(t, kv, c)
	ctx := context.Background()
	d1, _ := Decode([]byte(`{"name": "cap", "effect": "deny", "condition": "intent.value > ether(5)"}`))
	p, err := e.Create(ctx, d1, Actor{User: "alice"})
	if err != nil || p.Version != 1 || p.CreatedBy != "alice" || !ValidID(p.ID) {
		t.Fatalf("Create = %+v, %v", p, err)
	}
	c.Advance(1000)
	d2 := *d1
	d2.Condition = "intent.value > ether(1)"
	if _, err := e.Update(ctx, p.ID, &d2, Actor{User: "bob"}, 7); !errors.Is(err, ErrVersionConflict) || errkind.Of(err) != errkind.Conflict {
		t.Fatalf("Update with a stale version = %v", err)
	}
	p2, err := e.Update(ctx, p.ID, &d2, Actor{User: "bob", ApprovedBy: []string{"carol", "dave"}, Approval: "apr_x"}, 1)
	if err != nil || p2.Version != 2 || p2.CreatedBy != "alice" || p2.UpdatedBy != "bob" || p2.Condition != d2.Condition {
		t.Fatalf("Update = %+v, %v", p2, err)
	}
	if got, err := e.Get(ctx, p.ID); err != nil || got.Version != 2 || got.Condition != d2.Condition {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if res, _ := e.Evaluate(ctx, ethTx(treasury, eth("2"))); res.Decision != DecisionDeny {
		t.Fatalf("the update is not in force: %+v", res)
	}
	bad := d2
	bad.Condition = "intent.value >"
	if _, err := e.Update(ctx, p.ID, &bad, Actor{User: "bob"}, 0); errkind.Of(err) != errkind.Invalid {
		t.Fatalf("Update with a bad condition = %v", err)
	}
	if err := e.Delete(ctx, p.ID, Actor{User: "carol"}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Get(ctx, p.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after delete = %v", err)
	}
	if err := e.Delete(ctx, p.ID, Actor{User: "carol"}, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete = %v", err)
	}
	if res, _ := e.Evaluate(ctx, ethTx(treasury, eth("2"))); res.Decision != DecisionAllow {
		t.Fatalf("deleted policy still in force: %+v", res)
	}
	list, err := e.List(ctx)
	if err != nil || len(list) != 0 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	vs, err := e.Versions(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vs {
		got = append(got, fmt.Sprintf("%d %s %s %v", v.Version, v.Op, v.By, v.ApprovedBy))
	}
	want := "[1 create alice [] 2 update bob [carol dave] 3 delete carol []]"
	if fmt.Sprint(got) != want {
		t.Fatalf("versions = %v, want %v", got, want)
	}
	if vs[0].Document.Condition != d1.Condition || vs[1].Document.Condition != d2.Condition || vs[2].Document != nil {
		t.Errorf("version documents wrong: %+v", vs)
	}
	if _, err := e.Get(ctx, "pol_../../etc"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a malformed id = %v", err)
	}
}

// TestInterruptedWriteRollsForward: a change that claimed its version slot
// but died before moving the head is completed by the next writer, and no
// version is lost or overwritten.
func TestInterruptedWriteRollsForward(t *testing.T) {
	kv := newMemKV()
	e := newEngine(t, kv, nil)
	ctx := context.Background()
	p := mustCreate(t, e, `{"name": "v1", "effect": "deny", "condition": "false"}`)
	orphan := Version{ID: p.ID, Version: 2, Op: OpUpdate, By: "crashed",
		Document: &Document{Name: "v2", Effect: EffectDeny, Condition: "true"}}
	if err := kv.Put(ctx, versionKey(p.ID, 2), mustJSON(orphan)); err != nil {
		t.Fatal(err)
	}
	d3 := &Document{Name: "v3", Effect: EffectDeny, Condition: "intent.value > wei(1)"}
	p3, err := e.Update(ctx, p.ID, d3, Actor{User: "next"}, 0)
	if err != nil || p3.Version != 3 || p3.Name != "v3" {
		t.Fatalf("Update = %+v, %v", p3, err)
	}
	vs, _ := e.Versions(ctx, p.ID)
	if len(vs) != 3 || vs[1].By != "crashed" || vs[2].By != "next" {
		t.Fatalf("versions = %+v", vs)
	}
	// With If-Match on the version seen before the crash, the writer learns
	// that someone changed it.
	if _, err := e.Update(ctx, p.ID, d3, Actor{User: "late"}, 1); !errors.Is(err, ErrVersionConflict) {
		t.Fatalf("stale update = %v", err)
	}
}

func TestConcurrentUpdatesKeepEveryVersion(t *testing.T) {
	e := newEngine(t, newMemKV(), nil)
	ctx := context.Background()
	p := mustCreate(t, e, `{"name": "v", "effect": "deny", "condition": "false"}`)
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			d := &Document{Name: fmt.Sprint("w", i), Effect: EffectDeny, Condition: "false"}
			if _, err := e.Update(ctx, p.ID, d, Actor{User: fmt.Sprint("u", i)}, 0); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	vs, err := e.Versions(ctx, p.ID)
	if err != nil || len(vs) != 11 {
		t.Fatalf("versions: %d, %v", len(vs), err)
	}
	users := map[string]bool{}
	for i, v := range vs {
		if v.Version != i+1 {
			t.Fatalf("version %d at %d", v.Version, i)
		}
		users[v.By] = true
	}
	if len(users) != 11 {
		t.Fatalf("a change was lost: %v", users)
	}
	head, _ := e.Get(ctx, p.ID)
	if head.Version != 11 || head.Name != vs[10].Document.Name {
		t.Fatalf("head %+v disagrees with the last version", head)
	}
}

// TestTwoEnginesShareStorage: a policy written on one node is enforced by
// another once it is told of the change (phase 2 wires the barrier's
// change notifications to Changed).
func TestTwoEnginesShareStorage(t *testing.T) {
	kv := newMemKV()
	a, b := newEngine(t, kv, nil), newEngine(t, kv, nil)
	ctx := context.Background()
	p := mustCreate(t, a, `{"name": "no eth", "effect": "deny", "condition": "intent.chain == \"ethereum\""}`)
	if err := b.Changed(ctx, headKey(p.ID)); err != nil {
		t.Fatal(err)
	}
	if res, _ := b.Evaluate(ctx, ethTx(treasury, nil)); res.Decision != DecisionDeny {
		t.Fatalf("node b: %+v", res)
	}
	if err := a.Delete(ctx, p.ID, Actor{User: "admin"}, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Changed(ctx, ""); err != nil { // "changes may have been missed"
		t.Fatal(err)
	}
	if res, _ := b.Evaluate(ctx, ethTx(treasury, nil)); res.Decision != DecisionAllow {
		t.Fatalf("node b after delete: %+v", res)
	}
	if err := b.Changed(ctx, "wallet/accounts/x/y"); err != nil {
		t.Fatal(err)
	}
}

func TestIntentDocRoundTrip(t *testing.T) {
	in := erc20("approve", stranger, new(big.Int).Set(maxUint256))
	in.Delegates = []string{delegate}
	in.TypedData = typedData("Permit", usdc).TypedData
	in.Outputs = psbt(coldBTC).Outputs
	doc := DescribeIntent(in)
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"amount":"`+maxUint256.String()+`"`) {
		t.Errorf("amount is not a decimal string: %s", raw)
	}
	var back IntentDoc
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	in2, err := back.Intent()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(DescribeIntent(in2), doc) || in2.Token.Amount.Cmp(maxUint256) != 0 {
		t.Fatalf("round trip differs:\n%+v\n%+v", doc, DescribeIntent(in2))
	}
	back.Value = "1e18"
	if _, err := back.Intent(); err == nil {
		t.Fatal("a non-decimal value was accepted")
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		chain string
		v     *big.Int
		want  string
	}{
		{intent.ChainEthereum, eth("2.1"), "2.1 ETH"},
		{intent.ChainEthereum, eth("2"), "2 ETH"},
		{intent.ChainEthereum, eth("0.000001"), "0.000001 ETH"},
		{intent.ChainEthereum, big.NewInt(5000), "5000 wei"},
		{intent.ChainEthereum, new(big.Int), "0 ETH"},
		{intent.ChainBitcoin, big.NewInt(150_000), "0.0015 BTC"},
		{intent.ChainBitcoin, big.NewInt(546), "546 sats"},
		{intent.ChainSolana, big.NewInt(1_500_000_000), "1.5 SOL"},
		{intent.ChainSolana, big.NewInt(5000), "5000 lamports"},
		{"cosmos", big.NewInt(7), "7 base units"},
	} {
		if got := FormatAmount(tc.chain, tc.v); got != tc.want {
			t.Errorf("FormatAmount(%s, %s) = %q, want %q", tc.chain, tc.v, got, tc.want)
		}
	}
}

// TestTokensList: intent.tokens holds every token movement, whichever of
// Token and Tokens the chain package filled, so a rule over the list cannot
// be passed with a harmless first movement (a decoy).
func TestTokensList(t *testing.T) {
	e := newEngine(t, newMemKV(), nil)
	p := mustCreate(t, e, `{"name": "no transfers to stranger", "effect": "deny",
		"condition": "intent.tokens.exists(t, t.to == \"`+stranger+`\")"}`)
	first := intent.Token{Contract: usdc, Method: "transfer", To: treasury, Amount: units("1", 6)}
	bad := intent.Token{Contract: usdc, Method: "transfer", To: strings.ToUpper(stranger[2:]), Amount: units("1", 6)}
	bad.To = "0x" + bad.To
	for _, tc := range []struct {
		name string
		in   *intent.Intent
		want Decision
	}{
		{"decoy first", with(ethTx(usdc, nil), func(in *intent.Intent) {
			in.Token, in.Tokens = &first, []intent.Token{first, bad}
		}), DecisionDeny},
		{"only Tokens filled", with(ethTx(usdc, nil), func(in *intent.Intent) {
			in.Tokens = []intent.Token{first, bad}
		}), DecisionDeny},
		{"only Token filled", with(ethTx(usdc, nil), func(in *intent.Intent) { in.Token = &bad }), DecisionDeny},
		{"harmless", with(ethTx(usdc, nil), func(in *intent.Intent) {
			in.Token, in.Tokens = &first, []intent.Token{first}
		}), DecisionAllow},
		{"none", ethTx(stranger, eth("1")), DecisionAllow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Normalize()
			res, err := e.Evaluate(context.Background(), tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if res.Decision != tc.want {
				t.Fatalf("decision %s, want %s", res.Decision, tc.want)
			}
			if tc.want == DecisionDeny {
				var de *DeniedError
				if err := res.Err(); !errors.As(err, &de) || de.Match.Policy != p.ID || !errors.Is(err, ErrPolicyDenied) {
					t.Fatalf("Err() = %v", err)
				}
			} else if res.Err() != nil {
				t.Fatal("Err() on an allowed result")
			}
		})
	}
	// The dry run's intent document carries the list, and reads back.
	in := with(ethTx(usdc, nil), func(in *intent.Intent) { in.Token, in.Tokens = &first, []intent.Token{first, bad} })
	back, err := DescribeIntent(in).Intent()
	if err != nil || len(back.Tokens) != 2 || back.Tokens[1].To != bad.To || back.Tokens[1].Amount.Cmp(bad.Amount) != 0 {
		t.Fatalf("round trip: %+v %v", back, err)
	}
}

// TestUntrackedOnlyWhenBounded: conditions whose estimated worst case is
// within MaxCost run without the cost tracker (every example of
// docs/policies.md does); looping ones never; and a request with a field
// past the sizes the estimate assumed (here 100 000 outputs) is evaluated
// by the tracked program, so the limit still stops it.
func TestUntrackedOnlyWhenBounded(t *testing.T) {
	e := newEngine(t, newMemKV(), nil)
	for name, doc := range docExamples(t) {
		d, err := Decode([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		p, err := e.c.compile(d.Condition)
		if err != nil {
			t.Fatal(err)
		}
		if p.fast == nil {
			t.Errorf("example %s runs with the cost tracker: its estimate should be bounded", name)
		}
	}
	l := bigList(1000)
	for _, cond := range []string{l + ".exists(x, " + l + ".exists(y, x * y == -1))", "intent.outputs.all(o, intent.outputs.all(p, o.address != p.address || o.script.matches(p.script)))"} {
		p, err := e.c.compile(cond)
		if err != nil {
			t.Fatal(err)
		}
		if p.fast != nil {
			t.Errorf("%.60s… runs untracked", cond)
		}
	}
	deny := mustCreate(t, e, `{"name": "unknown outputs", "effect": "deny",
		"condition": "intent.outputs.exists(o, o.address == \"bc1qnotthere\" && o.value > sats(1))"}`)
	if p := e.set.Load().byID[deny.ID]; p.prg.fast == nil {
		t.Fatal("the outputs rule should be bounded for up to 64 outputs")
	}
	few := psbt(coldBTC, exchBTC)
	if res, err := e.Evaluate(context.Background(), few); err != nil || res.Decision != DecisionAllow {
		t.Fatalf("two outputs: %+v %v", res, err)
	}
	many := psbt()
	for range 100_000 {
		many.Outputs = append(many.Outputs, intent.Output{Address: coldBTC, Value: big.NewInt(600)})
	}
	if withinBounds(many) {
		t.Fatal("100 000 outputs within bounds")
	}
	res, err := e.Evaluate(context.Background(), many)
	if err != nil || res.Decision != DecisionDeny || !strings.Contains(res.Matched[0].Reason, "cost limit") {
		t.Fatalf("100 000 outputs: %+v %v", res, err)
	}
}

// TestGuardSkipsOnlyFalse: a condition skipped for a request's chain or
// kind (prefilter.go) evaluates to false, without error, on that request:
// skipping never changes a decision. The examples of docs/policies.md and
// rules shaped to trip the analysis are checked against intents of every
// chain and kind.
func TestGuardSkipsOnlyFalse(t *testing.T) {
	e := newEngine(t, newMemKV(), nil)
	conds := []string{
		`intent.chain == "ethereum" && intent.value > ether(1)`,
		`"bitcoin" == intent.chain && intent.outputs.size() > 1`,
		`intent.kind == "typed_data" && intent.typed_data.domain.name.size() > 0 && intent.chain == "ethereum"`,
		`intent.chain == "ethereum" || intent.kind == "psbt"`,     // no guard: a disjunction
		`!(intent.chain == "solana") && intent.value > sol("1")`,  // no guard: negated
		`intent.chain == "solana" && [1, 2][5] == 1`,              // errors on Solana, false elsewhere
		`intent.chain == "ethereum" && intent.chain == "bitcoin"`, // never true
		`has(intent.token) && intent.kind == "transaction" && intent.token.amount > units("1", 6)`,
	}
	for _, doc := range docExamples(t) {
		d, err := Decode([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		conds = append(conds, d.Condition)
	}
	intents := []*intent.Intent{
		ethTx(treasury, eth("2")), erc20("transfer", stranger, units("5", 6)), typedData("Permit", usdc),
		psbt(coldBTC, "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"),
		{Chain: intent.ChainEthereum, Kind: intent.KindMessage, Account: "treasury/hot", Owner: "treasury"},
		{Chain: intent.ChainSolana, Kind: intent.KindTransaction, Account: "treasury/sol", Owner: "treasury", Value: big.NewInt(2_000_000_000)},
	}
	guarded := 0
	for _, cond := range conds {
		p, err := e.c.compile(cond)
		if err != nil {
			t.Fatalf("%s: %v", cond, err)
		}
		if p.guard != (guard{}) {
			guarded++
		}
		for _, in := range intents {
			in.Normalize()
			if !p.guard.excludes(in) {
				continue
			}
			ok, err := p.eval(e.c.newActivation(in, e.now()))
			if ok || err != nil {
				t.Errorf("%s on %s/%s: skipped, but evaluates to %v, %v", cond, in.Chain, in.Kind, ok, err)
			}
		}
	}
	if guarded < 8 {
		t.Errorf("only %d conditions have a guard", guarded)
	}
	for cond, want := range map[string]guard{
		`intent.chain == "ethereum" && intent.kind == "transaction" && true`: {"ethereum", "transaction"},
		`intent.chain == "ethereum" || intent.kind == "psbt"`:                {},
		`!(intent.chain == "solana")`:                                        {},
	} {
		p, err := e.c.compile(cond)
		if err != nil {
			t.Fatal(err)
		}
		if p.guard != want {
			t.Errorf("guard of %s = %+v, want %+v", cond, p.guard, want)
		}
	}
}
