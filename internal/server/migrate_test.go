package server

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/moonvault/moonvault/internal/hsm/hsmtest"
	"github.com/moonvault/moonvault/internal/secret"
)

// TestSealMigrationShamirToHSM: a Shamir vault restarted with an HSM in its
// configuration stays sealed and asks for a migration; the operators'
// shares with migrate move the root key to the HSM, seal-wrap every CSP and
// return recovery shares; from then on the vault unseals by itself.
func TestSealMigrationShamirToHSM(t *testing.T) {
	dir := t.TempDir()
	tn := startNode(t, dir, nodeOpts{})
	var ir initResp
	tn.mustCall(200, "POST", "/v1/sys/init", map[string]int{"secret_shares": 3, "secret_threshold": 2}, &ir)
	unsealAll(t, tn, ir.Keys[:2])
	known := make(secret.Bytes, 32)
	_, _ = rand.Read(known)
	known[0] = 0x02
	if _, err := tn.node.Wallet.Create(context.Background(), "root", "imported", known.Clone()); err != nil {
		t.Fatal(err)
	}
	tn.token = ir.RootToken
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "generated"}, nil)
	// An HD wallet's seed and the provenance key are CSPs too.
	tn.mustCall(201, "POST", "/v1/wallets", map[string]string{"name": "hd"}, nil)
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "derived", "chain": "solana", "wallet": "hd"}, nil)
	tn.stop()

	hc := hsmtest.NewToken(t)
	tn = startNode(t, dir, nodeOpts{mutate: withHSM(hc)})
	var st struct {
		sealStatus
		Migration bool `json:"migration"`
	}
	tn.mustCall(200, "GET", "/v1/sys/seal-status", nil, &st)
	if !st.Sealed || !st.Migration {
		t.Fatalf("seal status before migration: %+v", st)
	}
	var e apiErr
	if got := tn.call("POST", "/v1/sys/unseal", map[string]string{"key": ir.Keys[0]}, &e); got != 400 || e.Error.Code != "migration_required" {
		t.Fatalf("plain unseal = %d %+v", got, e)
	}
	var out struct {
		Sealed       bool     `json:"sealed"`
		Type         string   `json:"type"`
		RecoveryKeys []string `json:"recovery_keys_b64"`
	}
	tn.mustCall(200, "POST", "/v1/sys/unseal", map[string]any{"key": ir.Keys[1], "migrate": true}, &out)
	tn.mustCall(200, "POST", "/v1/sys/unseal", map[string]any{"key": ir.Keys[2], "migrate": true}, &out)
	if out.Sealed || out.Type != "pkcs11" || len(out.RecoveryKeys) != 3 {
		t.Fatalf("after migration: %+v", out)
	}
	tn.token = ir.RootToken
	tn.mustCall(200, "POST", "/v1/accounts/imported/sign-message", map[string]string{"data": "x"}, nil)
	tn.mustCall(200, "POST", "/v1/accounts/generated/sign-message", map[string]string{"data": "x"}, nil)
	tn.mustCall(200, "POST", "/v1/accounts/derived/sign-message", map[string]string{"data": "x"}, nil)
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "derived2", "chain": "bitcoin", "wallet": "hd"}, nil)
	tn.mustCall(200, "GET", "/v1/accounts/derived2/provenance", nil, nil)
	tn.mustCall(200, "POST", "/v1/sys/generate-root", map[string]any{"keys": out.RecoveryKeys[:2]}, nil)
	tn.stop()

	checkNoCSPInClear(t, dir, hc, known, 3)
	tn = startNode(t, dir, nodeOpts{mutate: withHSM(hc)})
	waitUnsealed(t, tn)
	tn.token = ir.RootToken
	tn.mustCall(200, "POST", "/v1/accounts/imported/sign-message", map[string]string{"data": "after restart"}, nil)
}
