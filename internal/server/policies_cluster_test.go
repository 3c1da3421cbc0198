package server

import (
	"encoding/json"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPolicyLimitAcrossNodes: two nodes over one PostgreSQL and one
// SoftHSM2 key; a 2 ETH / 24 h cap written on node A; 50 parallel
// requests of 0.3 ETH, spread over both nodes. Exactly 6 sign (1.8 ETH)
// and 44 are refused with 403 policy_denied: the reservation is one
// atomic update of the shared total, so no interleaving overshoots.
func TestPolicyLimitAcrossNodes(t *testing.T) {
	a, b, root := newPGCluster(t).twoNodes(t)

	boss := enrolledUser(t, a, root, "boss", "admin")
	treasury := createUser(t, a, root, "treasury", "user")
	var acc account
	a.mustCallTok(treasury, 201, "POST", "/v1/accounts", map[string]string{"name": "hot"}, &acc)
	var p policyAnswer
	a.mustCallTok(boss.token, 201, "POST", "/v1/policies", docPolicies(t)["daily-eth-cap"], &p)

	// Node B learns of the policy written on A (NOTIFY): its dry run of a
	// 2.1 ETH transfer is denied.
	dry := map[string]any{"account": "hot", "operation": "sign-transaction", "request": txBody(strangerAddr, wei(t, "2.1"), 0, 1, "")}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ev struct {
			Decision string `json:"decision"`
		}
		b.mustCallTok(treasury, 200, "POST", "/v1/policies/evaluate", dry, &ev)
		if ev.Decision == "deny" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node B never saw the policy written on node A")
		}
		time.Sleep(20 * time.Millisecond)
	}

	const n = 50
	codes := make([]int, n)
	bodies := make([]deniedErr, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := a
			if i%2 == 1 {
				node = b
			}
			var raw json.RawMessage
			codes[i] = node.callTok(treasury, "POST", "/v1/accounts/hot/sign-transaction", txBody(strangerAddr, wei(t, "0.3"), uint64(i), 1, ""), &raw)
			if codes[i] == 403 {
				_ = json.Unmarshal(raw, &bodies[i])
			}
		}()
	}
	wg.Wait()
	signed, refused := map[string]int{}, 0
	for i, c := range codes {
		node := map[int]string{0: "A", 1: "B"}[i%2]
		switch c {
		case 200:
			signed[node]++
		case 403:
			e := bodies[i].Error
			if e.Code != "policy_denied" || e.Policy == nil || e.Policy.ID != p.ID ||
				e.Policy.Reason != "24 h native spend would reach 2.1007 ETH, limit 2 ETH" { // 7 × (0.3 + 0.0001 of fees)
				t.Fatalf("request %d refused with %+v", i, e)
			}
			refused++
		default:
			t.Fatalf("request %d: status %d", i, c)
		}
	}
	if signed["A"]+signed["B"] != 6 || refused != 44 {
		t.Fatalf("signed %v, refused %d: want exactly 6 signed and 44 refused", signed, refused)
	}
	t.Logf("signed on A %d, on B %d; refused %d", signed["A"], signed["B"], refused)

	// The dry run reads the shared total and consumes nothing: 0.1993 ETH
	// and its 0.0001 of fees still fit (1.8006 + 0.1994 = 2), on either
	// node, as often as asked.
	for _, node := range []*testNode{a, b, a} {
		var ev struct {
			Decision string `json:"decision"`
		}
		dry["request"] = txBody(strangerAddr, wei(t, "0.1993"), 99, 1, "")
		node.mustCallTok(treasury, 200, "POST", "/v1/policies/evaluate", dry, &ev)
		if ev.Decision != "allow" {
			t.Fatalf("dry run of 0.1993 ETH: %s", ev.Decision)
		}
	}
	a.mustCallTok(treasury, 200, "POST", "/v1/accounts/hot/sign-transaction", txBody(strangerAddr, wei(t, "0.1993"), 100, 1, ""), nil)
	var e deniedErr
	if c := b.callTok(treasury, "POST", "/v1/accounts/hot/sign-transaction", txBody(strangerAddr, big.NewInt(1), 101, 1, ""), &e); c != 403 ||
		!strings.Contains(e.Error.Message, "limit 2 ETH") {
		t.Fatalf("one wei past the cap on B: %d %+v", c, e)
	}
}
