package signpolicy

import (
	"context"
	"encoding/json"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/intent"
)

const capDoc = `{"name": "2 ETH a day", "effect": "deny", "condition": "intent.chain == \"ethereum\"",
	"limit": {"amount": "2000000000000000000", "window": "24h"}}`

// parallelSpend runs n concurrent Authorize calls of value each, spread
// over the engines, and returns how many were allowed.
func parallelSpend(t *testing.T, engines []*Engine, n int, value *big.Int) int {
	t.Helper()
	var allowed atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		e := engines[i%len(engines)]
		wg.Go(func() {
			<-start
			res, err := e.Authorize(context.Background(), ethTx(stranger, value), AuthorizeOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			switch res.Decision {
			case DecisionAllow:
				allowed.Add(1)
			case DecisionDeny:
				if d := res.Denial(); d == nil || !strings.HasPrefix(d.Reason, "24 h native spend would reach") {
					t.Errorf("denial %+v", d)
				}
			default:
				t.Errorf("decision %s", res.Decision)
			}
		})
	}
	close(start)
	wg.Wait()
	return int(allowed.Load())
}

func TestLimitConcurrent(t *testing.T) {
	kv := newMemKV()
	e := newEngine(t, kv, nil)
	mustCreate(t, e, capDoc)
	if got := parallelSpend(t, []*Engine{e}, 50, eth("0.3")); got != 6 {
		t.Fatalf("%d of 50 parallel 0.3 ETH requests were allowed under a 2 ETH cap, want 6", got)
	}
}

// TestLimitAcrossNodes: two nodes (two engines, two barriers) over one
// real storage: 50 parallel 0.3 ETH requests against a 2 ETH cap, exactly
// 6 are allowed.
func TestLimitAcrossNodes(t *testing.T) {
	for _, backend := range []string{"bolt", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			a, b := twoNodes(t, backend)
			ea, eb := newEngine(t, a, nil), newEngine(t, b, nil)
			p := mustCreate(t, ea, capDoc)
			if err := eb.Changed(context.Background(), headKey(p.ID)); err != nil {
				t.Fatal(err)
			}
			if got := parallelSpend(t, []*Engine{ea, eb}, 50, eth("0.3")); got != 6 {
				t.Fatalf("%d of 50 allowed, want 6", got)
			}
			res, err := eb.Evaluate(context.Background(), ethTx(stranger, eth("0.2")))
			if err != nil || res.Decision != DecisionAllow {
				t.Fatalf("0.2 more: %+v %v", res, err)
			}
			res, err = ea.Evaluate(context.Background(), ethTx(stranger, eth("0.3")))
			if err != nil || res.Decision != DecisionDeny || res.Matched[0].Reason != "24 h native spend would reach 2.1 ETH, limit 2 ETH" {
				t.Fatalf("0.3 more: %+v %v", res, err)
			}
		})
	}
}

// TestLimitRelease: a reservation released after a failed signing frees
// the spend; released twice, it frees it once.
func TestLimitRelease(t *testing.T) {
	e := newEngine(t, newMemKV(), nil)
	mustCreate(t, e, capDoc)
	ctx := context.Background()
	res, err := e.Authorize(ctx, ethTx(stranger, eth("1.5")), AuthorizeOptions{})
	if err != nil || res.Decision != DecisionAllow || res.Reservation == nil {
		t.Fatalf("%+v %v", res, err)
	}
	if r, _ := e.Authorize(ctx, ethTx(stranger, eth("1")), AuthorizeOptions{}); r.Decision != DecisionDeny {
		t.Fatalf("over the cap: %+v", r)
	}
	if err := res.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := res.Release(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := e.Authorize(ctx, ethTx(stranger, eth("2")), AuthorizeOptions{})
	if err != nil || r.Decision != DecisionAllow {
		t.Fatalf("after release: %+v %v", r, err)
	}
	if r, _ := e.Evaluate(ctx, ethTx(stranger, big.NewInt(1))); r.Decision != DecisionDeny {
		t.Fatalf("released twice counts twice: %+v", r)
	}
}

func TestCountLimit(t *testing.T) {
	e := newEngine(t, newMemKV(), newClock())
	mustCreate(t, e, `{"name": "3 messages an hour", "effect": "deny", "condition": "intent.kind == \"message\"", "limit": {"count": 3, "window": "1h"}}`)
	msg := &intent.Intent{Chain: "ethereum", Kind: intent.KindMessage, Account: "a/b", Owner: "a"}
	for i := range 3 {
		if r, err := e.Authorize(context.Background(), msg, AuthorizeOptions{}); err != nil || r.Decision != DecisionAllow {
			t.Fatalf("message %d: %+v %v", i, r, err)
		}
	}
	r, _ := e.Authorize(context.Background(), msg, AuthorizeOptions{})
	if r.Decision != DecisionDeny || r.Matched[0].Reason != "1 h count would reach 4 signed requests, limit 3" {
		t.Fatalf("fourth: %+v", r)
	}
	// Transactions are outside the condition.
	if r, _ := e.Authorize(context.Background(), ethTx(stranger, nil), AuthorizeOptions{}); r.Decision != DecisionAllow {
		t.Fatalf("transaction: %+v", r)
	}
}

// TestZeroValueNeverExceeds: a request that spends nothing passes an
// amount limit even when the total is already past it.
func TestZeroValueNeverExceeds(t *testing.T) {
	e := newEngine(t, newMemKV(), nil)
	mustCreate(t, e, `{"name": "cap", "effect": "require_approval", "condition": "true",
		"limit": {"amount": "1000", "window": "1h"}, "approvals": {"threshold": 1, "approvers": ["bob"]}}`)
	p := e.set.Load().global[0].pol
	ctx := context.Background()
	r, err := e.Authorize(ctx, ethTx(stranger, big.NewInt(5000)), AuthorizeOptions{Approved: []string{p.ID}})
	if err != nil || r.Decision != DecisionAllow || len(r.Matched) != 1 || !r.Matched[0].Approved {
		t.Fatalf("approved over the limit: %+v %v", r, err)
	}
	if r, _ := e.Authorize(ctx, ethTx(stranger, big.NewInt(0)), AuthorizeOptions{}); r.Decision != DecisionAllow {
		t.Fatalf("zero value: %+v", r)
	}
	if r, _ := e.Authorize(ctx, ethTx(stranger, big.NewInt(1)), AuthorizeOptions{}); r.Decision != DecisionRequireApproval {
		t.Fatalf("one wei more: %+v", r)
	}
}

// TestApprovedRequestRechecksDeny: an approval covers its own policy, not
// a deny limit, which is checked again.
func TestApprovedRequestRechecksDeny(t *testing.T) {
	e := newEngine(t, newMemKV(), nil)
	ctx := context.Background()
	mustCreate(t, e, capDoc)
	big := mustCreate(t, e, `{"name": "over 1 ETH", "effect": "require_approval", "condition": "intent.value > ether(1)",
		"approvals": {"threshold": 1, "approvers": ["bob"]}}`)
	if r, _ := e.Authorize(ctx, ethTx(stranger, eth("1.5")), AuthorizeOptions{}); r.Decision != DecisionRequireApproval {
		t.Fatalf("1.5 ETH: %+v", r)
	}
	r, err := e.Authorize(ctx, ethTx(stranger, eth("1.5")), AuthorizeOptions{Approved: []string{big.ID}})
	if err != nil || r.Decision != DecisionAllow || r.Reservation == nil {
		t.Fatalf("approved 1.5 ETH: %+v %v", r, err)
	}
	r, err = e.Authorize(ctx, ethTx(stranger, eth("1.5")), AuthorizeOptions{Approved: []string{big.ID}})
	if err != nil || r.Decision != DecisionDeny {
		t.Fatalf("approved 1.5 ETH past the daily cap: %+v %v", r, err)
	}
}

// TestLimitReservationsAllOrNothing: when a second limit refuses, the
// reservation already made on the first is released.
func TestLimitReservationsAllOrNothing(t *testing.T) {
	e := newEngine(t, newMemKV(), nil)
	ctx := context.Background()
	mustCreate(t, e, `{"name": "a: 10 ETH", "effect": "deny", "condition": "true", "limit": {"amount": "10000000000000000000", "window": "24h"}}`)
	mustCreate(t, e, `{"name": "b: 2 a day", "effect": "deny", "condition": "true", "limit": {"count": 2, "window": "24h"}}`)
	for range 2 {
		if r, _ := e.Authorize(ctx, ethTx(stranger, eth("1")), AuthorizeOptions{}); r.Decision != DecisionAllow {
			t.Fatalf("%+v", r)
		}
	}
	for range 5 {
		r, _ := e.Authorize(ctx, ethTx(stranger, eth("1")), AuthorizeOptions{})
		if r.Decision != DecisionDeny || r.Matched[0].Name != "b: 2 a day" {
			t.Fatalf("%+v", r)
		}
	}
	// Only the two signed requests count against a: 2 + 8 = 10 fits.
	if r, _ := e.Evaluate(ctx, ethTx(stranger, eth("8"))); len(r.Matched) != 1 || r.Matched[0].Name != "b: 2 a day" {
		t.Fatalf("a counted refused requests: %+v", r)
	}
}

// TestDryRunConsumesNothing: Evaluate reads limits and writes nothing.
func TestDryRunConsumesNothing(t *testing.T) {
	kv := newMemKV()
	e := newEngine(t, kv, nil)
	mustCreate(t, e, capDoc)
	_, u0 := kv.counts()
	for range 20 {
		r, err := e.Evaluate(context.Background(), ethTx(stranger, eth("1.5")))
		if err != nil || r.Decision != DecisionAllow {
			t.Fatalf("%+v %v", r, err)
		}
	}
	if _, u := kv.counts(); u != u0 {
		t.Fatalf("the dry run wrote %d times", u-u0)
	}
}

// TestLimitRecordBounded: a year of traffic every few minutes keeps the
// record at no more than maxBuckets buckets, and changing the window of the
// policy does not let it grow either.
func TestLimitRecordBounded(t *testing.T) {
	kv := newMemKV()
	c := newClock()
	e := newEngine(t, kv, c)
	ctx := context.Background()
	p := mustCreate(t, e, `{"name": "many", "effect": "deny", "condition": "true", "limit": {"count": 1000000000, "window": "24h"}}`)
	key := limitKey(p.ID, "treasury/hot")
	maxSeen := 0
	for i := range 3000 {
		if i == 1500 {
			d := p.Document
			d.Limit = &Limit{Count: 1000000000, Window: "1h"}
			if _, err := e.Update(ctx, p.ID, &d, Actor{User: "admin"}, 0); err != nil {
				t.Fatal(err)
			}
		}
		if r, err := e.Authorize(ctx, ethTx(stranger, big.NewInt(1)), AuthorizeOptions{}); err != nil || r.Decision != DecisionAllow {
			t.Fatalf("%+v %v", r, err)
		}
		c.Advance(7 * time.Minute)
		raw, _ := kv.Get(ctx, key)
		var rec windowRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			t.Fatal(err)
		}
		maxSeen = max(maxSeen, len(rec.Buckets))
	}
	if maxSeen > maxBuckets || maxSeen < 10 {
		t.Fatalf("record held up to %d buckets (bound %d)", maxSeen, maxBuckets)
	}
}

// TestWindowNeverEarly: spend is still counted just before the window has
// passed, and is gone one step after.
func TestWindowNeverEarly(t *testing.T) {
	c := newClock()
	e := newEngine(t, newMemKV(), c)
	mustCreate(t, e, capDoc)
	ctx := context.Background()
	if r, _ := e.Authorize(ctx, ethTx(stranger, eth("2")), AuthorizeOptions{}); r.Decision != DecisionAllow {
		t.Fatal(r)
	}
	c.Advance(24*time.Hour - time.Second)
	if r, _ := e.Evaluate(ctx, ethTx(stranger, big.NewInt(1))); r.Decision != DecisionDeny {
		t.Fatalf("spend left the window early: %+v", r)
	}
	c.Advance(24*time.Minute + 2*time.Second)
	if r, _ := e.Evaluate(ctx, ethTx(stranger, eth("2"))); r.Decision != DecisionAllow {
		t.Fatalf("spend still counted a step after the window: %+v", r)
	}
}

// TestHotLimitNeverGivesUp: 200 concurrent requests on one limit record,
// over two nodes on one bolt file, each reservation one fsynced
// compare-and-swap: none fails for lost races (a node serializes its own
// updates of a record; the compare-and-swap decides between nodes), and
// the count is exact.
func TestHotLimitNeverGivesUp(t *testing.T) {
	a, b := twoNodes(t, "bolt")
	ea, eb := newEngine(t, a, nil), newEngine(t, b, nil)
	p := mustCreate(t, ea, `{"name": "150 a day", "effect": "deny", "condition": "true", "limit": {"count": 150, "window": "24h"}}`)
	if err := eb.Changed(context.Background(), headKey(p.ID)); err != nil {
		t.Fatal(err)
	}
	var allowed, denied atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 200 {
		e := []*Engine{ea, eb}[i%2]
		wg.Go(func() {
			<-start
			res, err := e.Authorize(context.Background(), ethTx(stranger, eth("0.01")), AuthorizeOptions{})
			switch {
			case err != nil:
				t.Error(err)
			case res.Decision == DecisionAllow:
				allowed.Add(1)
			case res.Decision == DecisionDeny && strings.HasPrefix(res.Denial().Reason, "24 h count would reach 151"):
				denied.Add(1)
			default:
				t.Errorf("%+v", res)
			}
		})
	}
	close(start)
	wg.Wait()
	if allowed.Load() != 150 || denied.Load() != 50 {
		t.Fatalf("allowed %d, denied %d; want 150 and 50", allowed.Load(), denied.Load())
	}
}
