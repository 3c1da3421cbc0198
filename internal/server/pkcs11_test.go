package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/entropy"
	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/hsm/hsmtest"
	"github.com/moonvault/moonvault/internal/seal"
	"github.com/moonvault/moonvault/internal/sealwrap"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage/bolt"
)

func withHSM(hc hsm.Config) func(*config.Server) {
	return func(c *config.Server) {
		c.HSMLib, c.HSMTokenLabel, c.HSMPIN, c.HSMKeyLabel = hc.Lib, hc.TokenLabel, hc.PIN, hc.KeyLabel
		if hc.Slot != nil {
			c.HSMSlot = fmt.Sprint(*hc.Slot)
		}
	}
}

// sealConfig is the seal a node configured withHSM(hc) uses (aes_gcm).
func sealConfig(hc hsm.Config) seal.Config {
	return seal.Config{HSM: hc, KeyLabel: hc.KeyLabel}
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func waitUnsealed(t testing.TB, tn *testNode) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if tn.call("GET", "/v1/sys/health", nil, nil) == 200 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("vault did not auto-unseal")
}

func TestPKCS11AutoUnsealSealWrapEntropy(t *testing.T) {
	hc := hsmtest.NewToken(t)
	dir := t.TempDir()
	tn := startNode(t, dir, nodeOpts{mutate: withHSM(hc)})
	var ir initResp
	tn.mustCall(200, "POST", "/v1/sys/init", map[string]int{"recovery_shares": 3, "recovery_threshold": 2}, &ir)
	if len(ir.Recovery) != 3 || len(ir.Keys) != 0 || ir.RootToken == "" {
		t.Fatalf("pkcs11 init: %+v", ir)
	}
	var st sealStatus
	tn.mustCall(200, "GET", "/v1/sys/seal-status", nil, &st)
	if st.Type != "pkcs11" || st.Sealed {
		t.Fatalf("seal status: %+v", st)
	}
	attrs, err := func() (hsm.KeyAttributes, error) {
		m, err := hsm.Open(hc, nil)
		if err != nil {
			return hsm.KeyAttributes{}, err
		}
		defer m.Close()
		return m.KeyAttributes(context.Background(), hc.KeyLabel)
	}()
	if err != nil || !attrs.Sensitive || attrs.Extractable || !attrs.Token {
		t.Fatalf("HSM key attributes %+v, %v", attrs, err)
	}

	tn.token = ir.RootToken
	var e1, e2 entropy.Stats
	tn.mustCall(200, "GET", "/v1/sys/entropy", nil, &e1)
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "a1"}, nil)
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "a2"}, nil)
	tn.mustCall(200, "GET", "/v1/sys/entropy", nil, &e2)
	if e2.Mode != "augmentation" || e2.Source != "pkcs11" || e2.HSMBytesRead <= e1.HSMBytesRead {
		t.Fatalf("entropy stats did not grow: %+v -> %+v", e1, e2)
	}
	// An imported key whose bytes we know, to search storage for them.
	known := make(secret.Bytes, 32)
	_, _ = rand.Read(known)
	known[0] = 0x01
	if _, err := tn.node.Wallet.Create(context.Background(), "root", "imported", known.Clone()); err != nil {
		t.Fatal(err)
	}
	// Recovery shares authorize a new root token.
	var gr struct {
		RootToken string `json:"root_token"`
	}
	tn.mustCall(200, "POST", "/v1/sys/generate-root", map[string]any{"keys": ir.Recovery[:2]}, &gr)
	if gr.RootToken == "" {
		t.Fatal("no root token from recovery shares")
	}
	tn.stop()

	// Seal wrap: with the storage file and the barrier key (the unwrapped
	// root key), no CSP is in the clear.
	checkNoCSPInClear(t, dir, hc, known, 4)

	// Restart: the vault unseals by itself.
	tn = startNode(t, dir, nodeOpts{mutate: withHSM(hc)})
	waitUnsealed(t, tn)
	tn.token = ir.RootToken
	tn.mustCall(200, "POST", "/v1/accounts/imported/sign-message", map[string]string{"data": "hi"}, nil)
	// operator rewrap: every CSP already under the current HSM key is left
	// alone (only the keyring is rewritten), and everything still works.
	var rw struct{ Rewrapped int }
	tn.mustCall(200, "POST", "/v1/sys/rewrap", nil, &rw)
	if rw.Rewrapped != 1 {
		t.Fatalf("rewrapped %d values, want 1 (the keyring)", rw.Rewrapped)
	}
	tn.mustCall(200, "POST", "/v1/accounts/imported/sign-message", map[string]string{"data": "hi"}, nil)
	tn.stop()
	checkNoCSPInClear(t, dir, hc, known, 4)

	// A wrong PIN: sealed, the log names the PKCS#11 code, never the PIN.
	logs := &lockedBuf{}
	bad := hc
	bad.PIN = "000000-wrong-pin"
	tn = startNode(t, dir, nodeOpts{mutate: withHSM(bad), logTo: logs})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "CKR_PIN_INCORRECT") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "CKR_PIN_INCORRECT") {
		t.Fatalf("log does not name CKR_PIN_INCORRECT:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "000000-wrong-pin") || strings.Contains(logs.String(), hc.PIN.Reveal()) {
		t.Fatal("a PIN appears in the log")
	}
	if got := tn.call("GET", "/v1/sys/health", nil, nil); got != 503 {
		t.Fatalf("health with wrong PIN = %d, want 503", got)
	}
	tn.stop()
	// Configuration fixed: unseals again.
	tn = startNode(t, dir, nodeOpts{mutate: withHSM(hc)})
	waitUnsealed(t, tn)
}

func checkNoCSPInClear(t *testing.T, dir string, hc hsm.Config, known secret.Bytes, minWrapped int) {
	t.Helper()
	checkCSPsWrapped(t, dir, sealConfig(hc), known, minWrapped, "")
}

// checkCSPsWrapped opens the bolt file in dir directly, with the seal sc
// (the root key and seal wrap), and checks that no CSP is stored in the
// clear and every CSP is seal-wrapped, under keyID when it is not empty.
func checkCSPsWrapped(t *testing.T, dir string, sc seal.Config, known secret.Bytes, minWrapped int, keyID string) {
	t.Helper()
	ctx := context.Background()
	store, err := bolt.Open(dir + "/moonvault.db")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ps, err := seal.NewPKCS11(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	wrapped, err := store.Get(ctx, "core/root-key")
	if err != nil {
		t.Fatal(err)
	}
	root, err := ps.Decrypt(ctx, wrapped, []byte("moonvault root key v1"))
	if err != nil {
		t.Fatal(err)
	}
	b := barrier.New(store, barrier.Options{Rand: rand.Reader})
	sw := sealwrap.New(ps)
	if err := b.Unseal(ctx, secret.Bytes(root), sw); err != nil {
		t.Fatalf("unseal barrier directly: %v", err)
	}
	defer b.Seal()
	keys, err := b.List(ctx, "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	cspPrefixes := []string{"wallet/keys/", "wallet/seeds/", "sys/provenance/", "auth/jwt-seeds/", "auth/totp/", "auth/totp-secrets/", "audit/keys/"}
	wrappedCSPs := 0
	for _, k := range keys {
		v, err := b.Get(ctx, k)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if len(known) > 0 && bytes.Contains(v, known) {
			t.Fatalf("%s holds the private key in the clear behind the barrier", k)
		}
		for _, p := range cspPrefixes {
			if strings.HasPrefix(k, p) {
				isWrapped, id, err := sealwrap.Inspect(v)
				if err != nil || !isWrapped {
					t.Fatalf("CSP %s is not seal-wrapped (%v)", k, err)
				}
				if keyID != "" && id != keyID {
					t.Fatalf("CSP %s is wrapped under %q, want %q", k, id, keyID)
				}
				wrappedCSPs++
			}
		}
	}
	raw, _ := store.List(ctx, "", "", 0)
	for _, k := range raw {
		v, _ := store.Get(ctx, k)
		if len(known) > 0 && bytes.Contains(v, known) {
			t.Fatalf("physical %s holds the private key in the clear", k)
		}
	}
	if wrappedCSPs < minWrapped {
		t.Fatalf("only %d seal-wrapped CSPs found in %v", wrappedCSPs, keys)
	}
}
