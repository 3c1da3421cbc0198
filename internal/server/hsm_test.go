package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/entropy"
	"github.com/moonvault/moonvault/internal/fips"
	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/hsm/hsmtest"
	"github.com/moonvault/moonvault/internal/seal"
	"github.com/moonvault/moonvault/internal/sealwrap"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/shamir"
	"github.com/moonvault/moonvault/internal/storage/bolt"
)

type fullStatus struct {
	Sealed       bool   `json:"sealed"`
	Initialized  bool   `json:"initialized"`
	Type         string `json:"type"`
	SealedReason string `json:"sealed_reason"`
	FIPS140      string `json:"fips140"`
}

// waitFor polls cond (no timing is asserted; the deadline only bounds a
// hang).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOpenCryptokiServer: a vault on the opencryptoki software token (no
// token label: chosen by hsm_slot), with each mechanism that token offers,
// initialises, creates and signs, keeps every CSP seal-wrapped under the
// token, and auto-unseals after a restart.
func TestOpenCryptokiServer(t *testing.T) {
	for _, mech := range []seal.Mechanism{seal.AESCBCPadHMAC, seal.RSAOAEP} {
		t.Run(string(mech), func(t *testing.T) {
			hc := hsmtest.OpenCryptoki(t)
			sc := seal.Config{HSM: hc, Mechanism: mech, KeyLabel: hc.KeyLabel}
			mutate := func(c *config.Server) {
				withHSM(hc)(c)
				c.HSMMechanism = string(mech)
			}
			dir := t.TempDir()
			tn := startNode(t, dir, nodeOpts{mutate: mutate})
			var ir initResp
			tn.mustCall(200, "POST", "/v1/sys/init", map[string]int{"recovery_shares": 1, "recovery_threshold": 1}, &ir)
			tn.token = ir.RootToken
			var st fullStatus
			tn.mustCall(200, "GET", "/v1/sys/seal-status", nil, &st)
			if st.Sealed || st.Type != "pkcs11" || st.FIPS140 != fips.Mode() {
				t.Fatalf("seal status %+v", st)
			}
			var e1, e2 entropy.Stats
			tn.mustCall(200, "GET", "/v1/sys/entropy", nil, &e1)
			tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "ock"}, nil)
			tn.mustCall(200, "POST", "/v1/accounts/ock/sign-message", map[string]string{"data": "hello"}, nil)
			// Entropy augmentation needs only C_GenerateRandom: it works on
			// a token without AES-GCM.
			tn.mustCall(200, "GET", "/v1/sys/entropy", nil, &e2)
			if e2.Mode != "augmentation" || e2.Source != "pkcs11" || e2.HSMBytesRead <= e1.HSMBytesRead {
				t.Fatalf("entropy from the opencryptoki token: %+v -> %+v", e1, e2)
			}
			known := make(secret.Bytes, 32)
			_, _ = rand.Read(known)
			known[0] = 0x03
			if _, err := tn.node.Wallet.Create(context.Background(), "root", "imported", known.Clone()); err != nil {
				t.Fatal(err)
			}
			tn.stop()

			s, err := seal.NewPKCS11(sc, nil)
			if err != nil {
				t.Fatal(err)
			}
			keyID := s.KeyID()
			s.Close()
			checkCSPsWrapped(t, dir, sc, known, 3, keyID)

			tn = startNode(t, dir, nodeOpts{mutate: mutate})
			waitUnsealed(t, tn)
			tn.token = ir.RootToken
			tn.mustCall(200, "POST", "/v1/accounts/ock/sign-message", map[string]string{"data": "after restart"}, nil)
			tn.mustCall(200, "POST", "/v1/accounts/imported/sign-message", map[string]string{"data": "after restart"}, nil)
			tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "ock-2"}, nil)
		})
	}
}

// TestHSMDisappearsMidOperation: the token goes away in the middle of a
// PKCS#11 call (fault injection around the real SoftHSM2 calls: every
// handle of the old connection stays dead, as on real hardware). The seal
// (init's root-key wrap), seal wrap (a new account's key) and the RNG
// each answer 503 and write nothing; once the token is back, the node
// opens it again by itself and the same requests succeed.
func TestHSMDisappearsMidOperation(t *testing.T) {
	hc := hsmtest.NewToken(t)
	f := hsmtest.NewFaults()
	dir := t.TempDir()
	tn := startNode(t, dir, nodeOpts{mutate: withHSM(hc), wrapAPI: f.Wrap})

	// The seal: wrapping the root key at init.
	f.UnplugAt("Encrypt")
	var e apiErr
	if got := tn.call("POST", "/v1/sys/init", map[string]int{"recovery_shares": 1, "recovery_threshold": 1}, &e); got != 503 || e.Error.Code != "hsm_unavailable" {
		t.Fatalf("init while the HSM goes away = %d %+v, want 503 hsm_unavailable", got, e)
	}
	var st fullStatus
	tn.mustCall(200, "GET", "/v1/sys/seal-status", nil, &st)
	if st.Initialized {
		t.Fatal("a failed init left the vault initialised")
	}
	if got := tn.call("GET", "/v1/sys/health", nil, nil); got != 501 {
		t.Fatalf("health after a failed init = %d, want 501", got)
	}
	opens := f.Opens()
	f.Plug()
	var ir initResp
	tn.mustCall(200, "POST", "/v1/sys/init", map[string]int{"recovery_shares": 1, "recovery_threshold": 1}, &ir)
	if f.Opens() <= opens {
		t.Fatal("init succeeded without reopening the token")
	}
	tn.token = ir.RootToken
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "before"}, nil)

	for _, tc := range []struct {
		name, at, code string
	}{
		// Seal wrap of the new key fails: the HSM is the cause.
		{"seal wrap", "Encrypt", "hsm_unavailable"},
		// The RNG fails: no key can be generated (entropy_unavailable is
		// the answer for a failed CSP generation, whatever the cause; the
		// log names the PKCS#11 code).
		{"rng", "GenerateRandom", "entropy_unavailable"},
	} {
		opens := f.Opens()
		f.UnplugAt(tc.at)
		name := "during-" + tc.at
		var e apiErr
		if got := tn.call("POST", "/v1/accounts", map[string]string{"name": name}, &e); got != 503 || e.Error.Code != tc.code {
			t.Fatalf("%s: create = %d %+v, want 503 %s", tc.name, got, e, tc.code)
		}
		if got := tn.call("GET", "/v1/accounts/"+name, nil, nil); got != 404 {
			t.Fatalf("%s: a half-created account exists (%d)", tc.name, got)
		}
		// Still away: still 503.
		if got := tn.call("POST", "/v1/accounts", map[string]string{"name": name}, &e); got != 503 {
			t.Fatalf("%s: create while away = %d %+v", tc.name, got, e)
		}
		f.Plug()
		tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": name}, nil)
		tn.mustCall(200, "POST", "/v1/accounts/"+name+"/sign-message", map[string]string{"data": "x"}, nil)
		if f.Opens() <= opens {
			t.Fatalf("%s: the token was not opened again", tc.name)
		}
	}
	tn.stop()

	// Auto-unseal (the seal's decrypt) while the token is away: sealed,
	// and the status says why; back: it unseals by itself.
	f.Unplug()
	logs := &lockedBuf{}
	tn = startNode(t, dir, nodeOpts{mutate: withHSM(hc), wrapAPI: f.Wrap, logTo: logs})
	waitFor(t, "the sealed reason", func() bool {
		st = fullStatus{}
		tn.mustCall(200, "GET", "/v1/sys/seal-status", nil, &st)
		return st.SealedReason != ""
	})
	if !st.Sealed || !strings.Contains(st.SealedReason, "waiting for the HSM") || !strings.Contains(st.SealedReason, hc.TokenLabel) {
		t.Fatalf("seal status while the HSM is away: %+v", st)
	}
	if got := tn.call("GET", "/v1/sys/health", nil, nil); got != 503 {
		t.Fatalf("health while the HSM is away = %d, want 503", got)
	}
	f.Plug()
	waitUnsealed(t, tn)
	tn.token = ir.RootToken
	tn.mustCall(200, "POST", "/v1/accounts/before/sign-message", map[string]string{"data": "x"}, nil)
}

// TestHSMTokenNotFound: a configured token that is not there may be an
// outage: the node serves, sealed (health 503), names the token label and
// slot it waits for in the log and in the seal status, and unseals once
// the token appears.
func TestHSMTokenNotFound(t *testing.T) {
	hc := hsmtest.NewToken(t)
	dir := t.TempDir()
	tn := startNode(t, dir, nodeOpts{mutate: withHSM(hc)})
	var ir initResp
	tn.mustCall(200, "POST", "/v1/sys/init", map[string]int{"recovery_shares": 1, "recovery_threshold": 1}, &ir)
	tn.stop()

	// The token is absent: an empty slot list.
	f := hsmtest.NewFaults()
	f.Unplug()
	logs := &lockedBuf{}
	tn = startNode(t, dir, nodeOpts{mutate: withHSM(hc), wrapAPI: f.Wrap, logTo: logs})
	var st fullStatus
	waitFor(t, "the sealed reason", func() bool {
		st = fullStatus{}
		tn.mustCall(200, "GET", "/v1/sys/seal-status", nil, &st)
		return st.SealedReason != ""
	})
	if !st.Sealed || !strings.Contains(st.SealedReason, `token label "`+hc.TokenLabel+`"`) || !strings.Contains(st.SealedReason, "slot any") {
		t.Fatalf("seal status: %+v", st)
	}
	if got := tn.call("GET", "/v1/sys/health", nil, nil); got != 503 {
		t.Fatalf("health = %d, want 503", got)
	}
	log := logs.String()
	if !strings.Contains(log, "HSM token not found") || !strings.Contains(log, "token_label="+hc.TokenLabel) || !strings.Contains(log, "slot=any") {
		t.Fatalf("the log does not name the token it waits for:\n%s", log)
	}
	f.Plug()
	waitUnsealed(t, tn)
	st = fullStatus{}
	tn.mustCall(200, "GET", "/v1/sys/seal-status", nil, &st)
	if st.SealedReason != "" || st.Sealed {
		t.Fatalf("sealed reason after unseal: %q", st.SealedReason)
	}
}

// TestWrongPINNotRetried: a wrong PIN is tried once: the node stays sealed,
// stops retrying at once (a real HSM locks after a few wrong PINs), says
// so in the log and the seal status, and never shows the PIN.
func TestWrongPINNotRetried(t *testing.T) {
	hc := hsmtest.NewToken(t)
	dir := t.TempDir()
	tn := startNode(t, dir, nodeOpts{mutate: withHSM(hc)})
	tn.mustCall(200, "POST", "/v1/sys/init", map[string]int{"recovery_shares": 1, "recovery_threshold": 1}, nil)
	tn.stop()

	bad := hc
	bad.PIN = "000000-wrong-pin"
	f := hsmtest.NewFaults()
	logs := &lockedBuf{}
	tn = startNode(t, dir, nodeOpts{mutate: withHSM(bad), wrapAPI: f.Wrap, logTo: logs})
	waitFor(t, "the auto-unseal loop to give up", func() bool {
		return strings.Contains(logs.String(), "will not be retried")
	})
	logins := f.Calls("Login")
	var st fullStatus
	tn.mustCall(200, "GET", "/v1/sys/seal-status", nil, &st)
	if !st.Sealed || !strings.Contains(st.SealedReason, "CKR_PIN_INCORRECT") || !strings.Contains(st.SealedReason, "hsm_pin") {
		t.Fatalf("seal status: %+v", st)
	}
	if got := tn.call("GET", "/v1/sys/health", nil, nil); got != 503 {
		t.Fatalf("health = %d, want 503", got)
	}
	// Nothing logs in again: not the seal, not the RNG.
	var e apiErr
	if got := tn.call("POST", "/v1/sys/init", map[string]int{"recovery_shares": 1, "recovery_threshold": 1}, &e); got != 400 {
		t.Fatalf("init = %d %+v", got, e)
	}
	if logins != 1 || f.Calls("Login") != logins || f.Opens() != 1 {
		t.Fatalf("%d logins then %d, %d opens: a refused PIN was tried again", logins, f.Calls("Login"), f.Opens())
	}
	for _, secretPIN := range []string{"000000-wrong-pin", hc.PIN.Reveal()} {
		if strings.Contains(logs.String(), secretPIN) || strings.Contains(st.SealedReason, secretPIN) {
			t.Fatal("a PIN appears in the log or the seal status")
		}
	}
}

// TestHSMKeyRotationAndMechanismChange: the HSM key rotation that operator
// rewrap is for, with a change of mechanism on the way. A vault under
// aes_gcm with key "k1" is restarted with hsm_key_label "k2" and
// hsm_mechanism aes_cbc_pad_hmac: it auto-unseals (the stored root key
// records k1), serves old and new accounts, and operator rewrap moves the
// root key, the keyring and every CSP to k2; then k1 is retired (deleted
// from the token) and the vault still unseals and signs.
func TestHSMKeyRotationAndMechanismChange(t *testing.T) {
	hc := hsmtest.NewToken(t)
	hc.KeyLabel = "k1"
	dir := t.TempDir()
	tn := startNode(t, dir, nodeOpts{mutate: withHSM(hc)})
	var ir initResp
	tn.mustCall(200, "POST", "/v1/sys/init", map[string]int{"recovery_shares": 1, "recovery_threshold": 1}, &ir)
	tn.token = ir.RootToken
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "old"}, nil)
	tn.stop()

	rotated := func(c *config.Server) {
		withHSM(hc)(c)
		c.HSMKeyLabel, c.HSMMechanism = "k2", string(seal.AESCBCPadHMAC)
	}
	tn = startNode(t, dir, nodeOpts{mutate: rotated})
	waitUnsealed(t, tn)
	tn.token = ir.RootToken
	tn.mustCall(200, "POST", "/v1/accounts/old/sign-message", map[string]string{"data": "x"}, nil)
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "new"}, nil)
	var rw struct{ Rewrapped int }
	tn.mustCall(200, "POST", "/v1/sys/rewrap", nil, &rw)
	// The old account's key, the provenance signing key, the JWT seed, the
	// audit HMAC and signing keys (audit is on by default), the keyring.
	if rw.Rewrapped != 6 {
		t.Fatalf("rewrapped %d values, want 6", rw.Rewrapped)
	}
	tn.stop()

	next := seal.Config{HSM: hc, Mechanism: seal.AESCBCPadHMAC, KeyLabel: "k2"}
	s, err := seal.NewPKCS11(next, nil)
	if err != nil {
		t.Fatal(err)
	}
	keyID := s.KeyID()
	s.Close()
	m, err := hsm.Open(hc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.DestroyKey(context.Background(), "k1"); err != nil {
		t.Fatal(err)
	}
	m.Close()
	checkCSPsWrapped(t, dir, next, nil, 3, keyID)

	tn = startNode(t, dir, nodeOpts{mutate: rotated})
	waitUnsealed(t, tn)
	tn.token = ir.RootToken
	tn.mustCall(200, "POST", "/v1/accounts/old/sign-message", map[string]string{"data": "x"}, nil)
	tn.mustCall(200, "POST", "/v1/accounts/new/sign-message", map[string]string{"data": "x"}, nil)
}

// TestSealMigrationRetiresOldShares (issue 13 item 10): after a Shamir ->
// HSM migration, the old unseal shares and a copy of the storage recover
// nothing: the keyring is under a new root key.
func TestSealMigrationRetiresOldShares(t *testing.T) {
	dir := t.TempDir()
	tn := startNode(t, dir, nodeOpts{})
	var ir initResp
	tn.mustCall(200, "POST", "/v1/sys/init", map[string]int{"secret_shares": 3, "secret_threshold": 2}, &ir)
	unsealAll(t, tn, ir.Keys[:2])
	tn.token = ir.RootToken
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "a"}, nil)
	tn.stop()

	hc := hsmtest.NewToken(t)
	tn = startNode(t, dir, nodeOpts{mutate: withHSM(hc)})
	var out struct {
		Sealed bool `json:"sealed"`
	}
	tn.mustCall(200, "POST", "/v1/sys/unseal", map[string]any{"key": ir.Keys[0], "migrate": true}, &out)
	tn.mustCall(200, "POST", "/v1/sys/unseal", map[string]any{"key": ir.Keys[1], "migrate": true}, &out)
	if out.Sealed {
		t.Fatal("still sealed after the migration")
	}
	tn.token = ir.RootToken
	tn.mustCall(200, "POST", "/v1/accounts/a/sign-message", map[string]string{"data": "x"}, nil)
	tn.stop()

	// The attacker: a copy of the storage and the old shares.
	stolen := filepath.Join(t.TempDir(), "copy.db")
	raw, err := os.ReadFile(filepath.Join(dir, "moonvault.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stolen, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := bolt.Open(stolen)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var parts [][]byte
	for _, k := range ir.Keys[:2] {
		parts = append(parts, mustB64(t, k))
	}
	oldRoot, err := shamir.Combine(parts)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := seal.NewPKCS11(sealConfig(hc), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	for _, w := range []barrier.Wrapper{nil, sealwrap.New(ps)} {
		b := barrier.New(store, barrier.Options{Rand: rand.Reader})
		if err := b.Unseal(context.Background(), secret.Bytes(oldRoot), w); err == nil {
			b.Seal()
			t.Fatal("the old unseal shares still open the keyring after the migration")
		}
	}
	// The vault itself still unseals by itself.
	tn = startNode(t, dir, nodeOpts{mutate: withHSM(hc)})
	waitUnsealed(t, tn)
	tn.token = ir.RootToken
	tn.mustCall(200, "POST", "/v1/accounts/a/sign-message", map[string]string{"data": "x"}, nil)
}

// TestFIPSMode: fips_mode refuses to start unless Go's FIPS 140-3 mode is
// on (this runs in both; CI runs the suite with GODEBUG=fips140=only too).
func TestFIPSMode(t *testing.T) {
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.FIPSMode = true
	cfg.ListenAddress = "127.0.0.1:0"
	certFile, keyFile, _ := testCert(t, t.TempDir())
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	n, err := Build(context.Background(), Options{Config: cfg, Out: nil})
	if fips.Mode() == "off" {
		if err == nil || !strings.Contains(err.Error(), "fips_mode") || !strings.Contains(err.Error(), "GODEBUG=fips140") {
			t.Fatalf("fips_mode without FIPS 140-3 mode: %v", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("fips_mode in FIPS 140-3 mode %s: %v", fips.Mode(), err)
	}
	n.close()
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
