package server

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/entropy"
	"github.com/moonvault/moonvault/internal/hsm/hsmtest"
)

// TestEntropyFailsClosed: a fault-injecting wrapper around the real
// SoftHSM2 generator returns stuck bytes (the SP 800-90B health test trips)
// and then errors; account creation answers 503 entropy_unavailable and
// creates nothing; once the source heals, creation resumes by itself.
func TestEntropyFailsClosed(t *testing.T) {
	const (
		healthy = iota
		stuck
		failing
	)
	var mode atomic.Int32
	wrap := func(next HSMRandom) HSMRandom {
		return func(ctx context.Context, n int) ([]byte, error) {
			switch mode.Load() {
			case stuck:
				return make([]byte, n), nil
			case failing:
				return nil, errors.New("injected: CKR_DEVICE_ERROR")
			}
			return next(ctx, n)
		}
	}
	hc := hsmtest.NewToken(t)
	tn := startNode(t, t.TempDir(), nodeOpts{mutate: withHSM(hc), wrapRandom: wrap})
	var ir initResp
	tn.mustCall(200, "POST", "/v1/sys/init", map[string]int{"recovery_shares": 1, "recovery_threshold": 1}, &ir)
	tn.token = ir.RootToken
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "before"}, nil)

	for _, m := range []int32{stuck, failing} {
		mode.Store(m)
		var e apiErr
		if got := tn.call("POST", "/v1/accounts", map[string]string{"name": "during"}, &e); got != 503 || e.Error.Code != "entropy_unavailable" {
			t.Fatalf("mode %d: create = %d %+v, want 503 entropy_unavailable", m, got, e)
		}
		if got := tn.call("GET", "/v1/accounts/during", nil, nil); got != 404 {
			t.Fatalf("mode %d: a half-created account exists (%d)", m, got)
		}
	}
	var st entropy.Stats
	tn.mustCall(200, "GET", "/v1/sys/entropy", nil, &st)
	if st.HealthFailures == 0 {
		t.Fatalf("health failures not counted: %+v", st)
	}
	mode.Store(healthy)
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "after"}, nil)
}

// TestRequireTEE: outside a TEE, require_tee keeps the vault sealed (health
// 503) and says why; init still returns the shares, which are the only copy.
func TestRequireTEE(t *testing.T) {
	logs := &lockedBuf{}
	tn := startNode(t, t.TempDir(), nodeOpts{logTo: logs, mutate: func(c *config.Server) { c.RequireTEE = true }})
	var ir initResp
	tn.mustCall(200, "POST", "/v1/sys/init", map[string]int{"secret_shares": 1, "secret_threshold": 1}, &ir)
	if len(ir.Keys) != 1 || ir.RootToken != "" {
		t.Fatalf("init under require_tee: %+v", ir)
	}
	var e apiErr
	if got := tn.call("POST", "/v1/sys/unseal", map[string]string{"key": ir.Keys[0]}, &e); got != 503 || e.Error.Code != "unseal_refused" {
		t.Fatalf("unseal outside a TEE = %d %+v", got, e)
	}
	if got := tn.call("GET", "/v1/sys/health", nil, nil); got != 503 {
		t.Fatalf("health = %d, want 503", got)
	}
	if !strings.Contains(logs.String(), "a TEE is required") {
		t.Fatalf("log does not say a TEE is required:\n%s", logs.String())
	}

	// Dev mode too: it serves, sealed. (The token comes from hsmtest: dev
	// mode's own SoftHSM2 directory would replace the process-wide one the
	// other tests of this package share.)
	hc := hsmtest.NewToken(t)
	dev := startNode(t, t.TempDir(), nodeOpts{dev: true, mutate: func(c *config.Server) { withHSM(hc)(c); c.RequireTEE = true }})
	if got := dev.call("GET", "/v1/sys/health", nil, nil); got != 503 {
		t.Fatalf("dev health under require_tee = %d, want 503", got)
	}
}
