package signpolicy

import (
	"context"
	"fmt"
	"testing"

	"github.com/moonvault/moonvault/internal/intent"
)

// benchEngine has 20 stateless policies in scope of every request: the
// stateless examples of docs/policies.md (with the scoped one widened to
// every owner) and a mix of typical rules.
func benchEngine(b *testing.B) *Engine {
	ex := docExamples(&testing.T{})
	e := newEngine(b, newMemKV(), nil)
	n := 0
	for name, doc := range ex {
		if name == "daily-eth-cap" {
			continue
		}
		d, err := Decode([]byte(doc))
		if err != nil {
			b.Fatal(err)
		}
		d.Owners = nil
		if _, err := e.Create(context.Background(), d, Actor{User: "admin"}); err != nil {
			b.Fatal(err)
		}
		n++
	}
	extra := []string{
		`intent.value > ether(%d)`,
		`intent.chain == "solana" && intent.value > sol("%d")`,
		`intent.to in ["0x1111111111111111111111111111111111111111", "0x%040d"]`,
		`intent.selector == "0x%08d"`,
		`"apikey" in intent.amr && intent.value > ether(%d)`,
		`intent.kind == "message" && intent.account == "ops/signer-%d"`,
	}
	for i := 0; n < 20; i++ {
		cond := fmt.Sprintf(extra[i%len(extra)], i+50)
		doc := Document{Name: fmt.Sprint("extra ", i), Effect: EffectDeny, Condition: cond}
		if _, err := e.Create(context.Background(), &doc, Actor{User: "admin"}); err != nil {
			b.Fatal(err)
		}
		n++
	}
	if got := len(e.set.Load().scope(ethTx(treasury, nil))); got != 20 {
		b.Fatalf("%d policies in scope, want 20", got)
	}
	return e
}

// BenchmarkEvaluate20: the policy check the sign path adds, with 20
// stateless policies in scope (target: at most 50 µs).
func BenchmarkEvaluate20(b *testing.B) {
	e := benchEngine(b)
	for _, tc := range []struct {
		name string
		in   *intent.Intent
	}{
		{"eth-transfer", ethTx(treasury, eth("1"))},
		{"erc20-transfer", erc20("transfer", treasury, units("100", 6))},
		{"message", &intent.Intent{Chain: "ethereum", Kind: intent.KindMessage, Account: "treasury/hot", Owner: "treasury", Principal: "treasury"}},
		{"psbt-10-outputs", psbt(coldBTC, exchBTC, coldBTC, exchBTC, coldBTC, exchBTC, coldBTC, exchBTC, coldBTC, exchBTC)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				res, err := e.Authorize(ctx, tc.in, AuthorizeOptions{})
				if err != nil || res.Decision == "" {
					b.Fatal(res, err)
				}
			}
		})
	}
}

// BenchmarkEvaluateNoPolicy: the cost with no policy in scope.
func BenchmarkEvaluateNoPolicy(b *testing.B) {
	e := newEngine(b, newMemKV(), nil)
	in := ethTx(treasury, eth("1"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Authorize(context.Background(), in, AuthorizeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthorizeLimit: one stateful limit over the in-memory store
// (the storage round trip comes on top).
func BenchmarkAuthorizeLimit(b *testing.B) {
	e := newEngine(b, newMemKV(), nil)
	mustCreate(b, e, `{"name": "cap", "effect": "deny", "condition": "true", "limit": {"count": 1000000000000, "window": "24h"}}`)
	in := ethTx(treasury, eth("1"))
	b.ReportAllocs()
	for b.Loop() {
		res, err := e.Authorize(context.Background(), in, AuthorizeOptions{})
		if err != nil || res.Decision != DecisionAllow {
			b.Fatal(res, err)
		}
	}
}

// BenchmarkCompile: writing a policy (parse, check, plan).
func BenchmarkCompile(b *testing.B) {
	c, err := newCompiler()
	if err != nil {
		b.Fatal(err)
	}
	cond := docExamples(&testing.T{})["usdc-transfers"]
	d, _ := Decode([]byte(cond))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.compile(d.Condition); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLimitPostgres: what one stateful limit costs on PostgreSQL (a
// real server, through the barrier), beside the storage operations it is
// made of: a read (one round trip) and a durable write (one round trip
// and a commit). A reservation is one read and one conditional write.
//
//	go test -run '^$' -bench LimitPostgres ./internal/signpolicy
func BenchmarkLimitPostgres(b *testing.B) {
	kv, _ := twoNodes(b, "postgres")
	ctx := context.Background()
	if err := kv.Put(ctx, "bench/key", []byte("value")); err != nil {
		b.Fatal(err)
	}
	b.Run("storage-get", func(b *testing.B) {
		for b.Loop() {
			if _, err := kv.Get(ctx, "bench/key"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("storage-put", func(b *testing.B) {
		for b.Loop() {
			if err := kv.Put(ctx, "bench/key", []byte("value")); err != nil {
				b.Fatal(err)
			}
		}
	})
	in := ethTx(treasury, eth("0.001"))
	b.Run("authorize-no-limit", func(b *testing.B) {
		e := newEngine(b, kv, nil)
		mustCreate(b, e, `{"name": "stateless", "effect": "deny", "condition": "intent.value > ether(100)"}`)
		for b.Loop() {
			if res, err := e.Authorize(ctx, in, AuthorizeOptions{}); err != nil || res.Decision != DecisionAllow {
				b.Fatal(res, err)
			}
		}
	})
	b.Run("authorize-limit", func(b *testing.B) {
		e := newEngine(b, kv, nil)
		mustCreate(b, e, `{"name": "cap", "effect": "deny", "condition": "true", "limit": {"count": 1000000000000, "window": "24h"}}`)
		for b.Loop() {
			if res, err := e.Authorize(ctx, in, AuthorizeOptions{}); err != nil || res.Decision != DecisionAllow {
				b.Fatal(res, err)
			}
		}
	})
}
