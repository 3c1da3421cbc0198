package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/moonvault/moonvault/internal/audit"
	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/fakeclock"
	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/hsm/hsmtest"
	"github.com/moonvault/moonvault/internal/seal/sealtest"
	"github.com/moonvault/moonvault/internal/sealwrap"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/bolt"
	"github.com/moonvault/moonvault/internal/storage/postgres/pgtest"
)

// The attacks of issue 13, run black-box against real servers: HTTPS, the
// SoftHSM2 seal, and storage edited as a storage-only attacker (threat
// model T4) would: the bbolt file, or the PostgreSQL rows.

// rawStore edits the physical storage under a node, as the attacker does.
type rawStore interface {
	get(t *testing.T, key string) []byte
	put(t *testing.T, key string, v []byte)
}

type boltFile struct{ path string }

func (b boltFile) open(t *testing.T) *bolt.Backend {
	t.Helper()
	db, err := bolt.Open(b.path)
	if err != nil {
		t.Fatalf("open the bolt file (the node must be stopped): %v", err)
	}
	return db
}

func (b boltFile) get(t *testing.T, key string) []byte {
	t.Helper()
	db := b.open(t)
	defer db.Close()
	v, err := db.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (b boltFile) put(t *testing.T, key string, v []byte) {
	t.Helper()
	db := b.open(t)
	defer db.Close()
	if err := db.Put(context.Background(), key, v); err != nil {
		t.Fatal(err)
	}
}

// pgRows edits the rows of moonvault_kv with plain SQL, behind the nodes'
// backs.
type pgRows struct{ url string }

func (p pgRows) exec(t *testing.T, sql string, args ...any) pgx.Rows {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), p.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	rows, err := conn.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func (p pgRows) get(t *testing.T, key string) []byte {
	t.Helper()
	rows := p.exec(t, `SELECT value FROM moonvault_kv WHERE key = $1`, key)
	defer rows.Close()
	if !rows.Next() {
		t.Fatalf("no row %s", key)
	}
	var v []byte
	if err := rows.Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func (p pgRows) put(t *testing.T, key string, v []byte) {
	t.Helper()
	rows := p.exec(t, `INSERT INTO moonvault_kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, key, v)
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestStorageAttackerCannotMintRootToken: issue 13 item 2. The attacker
// writes core/recovery-hash = SHA-256(K) and a 1-of-1 core/seal-config,
// then presents K to the unauthenticated generate-root and rekey; both
// are refused, the real recovery shares keep working, and the vault reports
// and repairs the edited config.
func TestStorageAttackerCannotMintRootToken(t *testing.T) {
	for _, backend := range []string{"bolt", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			hc := hsmtest.NewToken(t)
			dir := t.TempDir()
			mutate := withHSM(hc)
			var store rawStore = boltFile{filepath.Join(dir, "moonvault.db")}
			if backend == "postgres" {
				url := pgtest.NewDatabase(t)
				mutate = withPostgres(url, hc)
				store = pgRows{url}
			}
			tn := startNode(t, dir, nodeOpts{mutate: mutate})
			var ir initResp
			tn.mustCall(200, "POST", "/v1/sys/init", map[string]int{"recovery_shares": 3, "recovery_threshold": 2}, &ir)
			if backend == "bolt" {
				tn.stop() // bbolt locks its file: the attacker edits it offline
			}

			forged := make([]byte, 32)
			_, _ = rand.Read(forged)
			sum := sha256.Sum256(forged)
			store.put(t, "core/recovery-hash", sum[:])
			store.put(t, "core/seal-config", []byte(`{"type":"pkcs11","recovery_shares":1,"recovery_threshold":1,"seal_wrap":true}`))
			k := base64.StdEncoding.EncodeToString(forged)

			logs := &lockedBuf{}
			if backend == "bolt" {
				tn = startNode(t, dir, nodeOpts{mutate: mutate, logTo: logs})
				waitUnsealed(t, tn)
			}
			var gr struct {
				RootToken string `json:"root_token"`
			}
			var e apiErr
			if got := tn.call("POST", "/v1/sys/generate-root", map[string]any{"keys": []string{k}}, &e); got != 400 || e.Error.Code != "wrong_shares" && e.Error.Code != "invalid_share" {
				t.Fatalf("generate-root with the attacker's key = %d %+v", got, e)
			}
			var rk struct {
				Nonce    string `json:"nonce"`
				Required int    `json:"required"`
				Complete bool   `json:"complete"`
				Keys     []string
			}
			tn.mustCall(200, "POST", "/v1/sys/rekey/init", map[string]int{"secret_shares": 1, "secret_threshold": 1}, &rk)
			if rk.Required != 2 {
				t.Fatalf("rekey asks for %d shares: the forged config says 1, the vault 2", rk.Required)
			}
			rk2 := rk
			if got := tn.call("POST", "/v1/sys/rekey/update", map[string]string{"nonce": rk.Nonce, "key": k}, &rk2); got == 200 && rk2.Complete {
				t.Fatalf("rekey completed with the attacker's key: %+v", rk2)
			}
			tn.call("DELETE", "/v1/sys/rekey/init", nil, nil)
			// The operators' shares still work.
			tn.mustCall(200, "POST", "/v1/sys/generate-root", map[string]any{"keys": ir.Recovery[1:]}, &gr)
			if gr.RootToken == "" {
				t.Fatal("no root token from the real shares")
			}
			var st sealStatus
			tn.mustCall(200, "GET", "/v1/sys/seal-status", nil, &st)
			if st.T != 2 || st.N != 3 {
				t.Fatalf("seal status shows the forged split: %+v", st)
			}
			if backend == "bolt" {
				// The edit was seen and repaired at unseal.
				if !strings.Contains(logs.String(), "differs from the authenticated seal configuration") {
					t.Fatalf("tampering not reported:\n%s", logs.String())
				}
				tn.stop()
				if got := store.get(t, "core/seal-config"); bytes.Contains(got, []byte(`"recovery_shares":1,`)) {
					t.Fatalf("core/seal-config not repaired: %s", got)
				}
			}
		})
	}
}

// TestStorageAttackerCannotSwapInItsOwnVault: the attacker replaces the
// keyring and seal config of a HSM-sealed vault with those of a Shamir
// vault it made (so it knows the key), hoping the node "migrates" to it.
// The node stays sealed and refuses the migration.
func TestStorageAttackerCannotSwapInItsOwnVault(t *testing.T) {
	hc := hsmtest.NewToken(t)
	url := pgtest.NewDatabase(t)
	rows := pgRows{url}
	tn := startNode(t, t.TempDir(), nodeOpts{mutate: withPostgres(url, hc)})
	tn.mustCall(200, "POST", "/v1/sys/init", map[string]int{"recovery_shares": 1, "recovery_threshold": 1}, nil)
	tn.stop()

	evilDir := t.TempDir()
	evil := startNode(t, evilDir, nodeOpts{})
	var eir initResp
	evil.mustCall(200, "POST", "/v1/sys/init", map[string]int{"secret_shares": 1, "secret_threshold": 1}, &eir)
	evil.stop()
	ef := boltFile{filepath.Join(evilDir, "moonvault.db")}
	rows.put(t, "core/keyring", ef.get(t, "core/keyring"))
	rows.put(t, "core/seal-config", ef.get(t, "core/seal-config"))

	tn = startNode(t, t.TempDir(), nodeOpts{mutate: withPostgres(url, hc)})
	if got := tn.call("GET", "/v1/sys/health", nil, nil); got == 200 {
		t.Fatal("the node unsealed the attacker's vault")
	}
	var e apiErr
	got := tn.call("POST", "/v1/sys/unseal", map[string]any{"key": eir.Keys[0], "migrate": true}, &e)
	if got == 200 {
		t.Fatal("the node migrated to the attacker's vault")
	}
	if e.Error.Code != "unseal_refused" && e.Error.Code != "wrong_shares" {
		t.Fatalf("migration to the attacker's vault = %d %+v", got, e)
	}
	if got := tn.call("GET", "/v1/sys/health", nil, nil); got == 200 {
		t.Fatal("unsealed after the refused migration")
	}
}

// TestConcurrentRotateTwoNodesPostgres: issue 13 item 4. Two nodes over one
// PostgreSQL rotate the keyring at the same time while creating accounts;
// after a restart the vault unseals and every account still signs.
func TestConcurrentRotateTwoNodesPostgres(t *testing.T) {
	cl := newPGCluster(t)
	a, b, root := cl.twoNodes(t)
	a.token, b.token = root, root
	const pw = "correct horse battery staple"
	a.mustCall(201, "POST", "/v1/users", map[string]string{"username": "alice", "password": pw}, nil)
	alice := login(t, a, "alice", pw)

	const rounds = 8
	var wg sync.WaitGroup
	var failures atomic.Int64
	for i, n := range []*testNode{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				if got := n.callTok(root, "POST", "/v1/sys/rotate", nil, nil); got != 200 {
					n.t.Errorf("node %d rotate %d = %d", i, r, got)
					failures.Add(1)
				}
				name := fmt.Sprintf("n%d-r%d", i, r)
				if got := n.callTok(alice, "POST", "/v1/accounts", map[string]string{"name": name}, nil); got != 201 {
					n.t.Errorf("node %d create %s = %d", i, name, got)
					failures.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failures.Load() > 0 {
		t.FailNow()
	}
	var st struct {
		Term int `json:"term"`
	}
	a.mustCall(200, "GET", "/v1/sys/seal-status", nil, &st)
	a.stop()
	b.stop()

	c := cl.start(t)
	waitUnsealed(t, c)
	var st2 struct {
		Term int `json:"term"`
	}
	c.mustCall(200, "GET", "/v1/sys/seal-status", nil, &st2)
	if st2.Term != 2*rounds+1 {
		t.Fatalf("after %d rotations on two nodes the term is %d, want %d (a rotation was lost)", 2*rounds, st2.Term, 2*rounds+1)
	}
	c.token = login(t, c, "alice", pw)
	for i := range 2 {
		for r := range rounds {
			c.mustCall(200, "POST", fmt.Sprintf("/v1/accounts/n%d-r%d/sign-message", i, r), map[string]string{"data": "after restart"}, nil)
		}
	}
}

// countingSink counts audit lines by operation.
type countingSink struct {
	mu    sync.Mutex
	ops   map[string]int
	addrs map[string]bool // remote_addr values seen
}

func (c *countingSink) Write(p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, line := range bytes.Split(p, []byte("\n")) {
		var l struct {
			Body struct {
				Operation  string `json:"operation"`
				RemoteAddr string `json:"remote_addr"`
			} `json:"body"`
			Operation  string `json:"operation"`
			RemoteAddr string `json:"remote_addr"`
		}
		if json.Unmarshal(line, &l) == nil {
			c.ops[l.Operation+l.Body.Operation]++
			if c.addrs == nil {
				c.addrs = map[string]bool{}
			}
			c.addrs[l.RemoteAddr+l.Body.RemoteAddr] = true
		}
	}
	return nil
}
func (c *countingSink) Name() string { return "counting" }
func (c *countingSink) sawAddr(a string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addrs[a]
}

func (c *countingSink) count(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops[op]
}

// TestRequestHardening: the "Also" items of issue 13 through the HTTP API:
// unauthenticated routes are rate-limited per address (429, Retry-After in
// seconds, the audit log not flooded), duplicate JSON keys are refused in
// REST and JSON-RPC bodies, a 1-of-1 unseal key is accepted in hex, and the
// seal status shows the encryption count. The rate limiters' clock is
// stopped, so no bucket refills while the test counts (on a loaded machine
// a real one refills a token every 50 ms between requests).
func TestRequestHardening(t *testing.T) {
	sink := &countingSink{ops: map[string]int{}}
	clock := fakeclock.New(time.Now())
	tn := startNode(t, t.TempDir(), nodeOpts{auditSinks: []audit.Sink{sink}, rateClock: clock.Now})
	var ir initResp
	tn.mustCall(200, "POST", "/v1/sys/init", map[string]int{"secret_shares": 1, "secret_threshold": 1}, &ir)

	// A 1-of-1 key given as 64 hex characters unseals.
	raw, _ := base64.StdEncoding.DecodeString(ir.Keys[0])
	var st struct {
		Sealed      bool `json:"sealed"`
		NonceBudget *struct {
			Term        int    `json:"term"`
			Encryptions uint64 `json:"encryptions"`
			RotateAt    uint64 `json:"rotate_at"`
			Limit       uint64 `json:"limit"`
		} `json:"nonce_budget"`
	}
	tn.mustCall(200, "POST", "/v1/sys/unseal", map[string]string{"key": hex.EncodeToString(raw)}, &st)
	if st.Sealed {
		t.Fatal("still sealed after the hex key")
	}
	tn.token = ir.RootToken
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "a"}, nil)
	tn.mustCall(200, "GET", "/v1/sys/seal-status", nil, &st)
	if st.NonceBudget == nil || st.NonceBudget.Term != 1 || st.NonceBudget.Encryptions == 0 || st.NonceBudget.RotateAt != 1<<30 || st.NonceBudget.Limit >= 1<<32 {
		t.Fatalf("seal status nonce budget: %+v", st.NonceBudget)
	}

	// Duplicate keys: the outer body, REST and JSON-RPC.
	var e apiErr
	if got := tn.call("POST", "/v1/accounts/a/sign-message", `{"data":"shown","data":"signed"}`, &e); got != 400 || !strings.Contains(e.Error.Message, `duplicate key "data"`) {
		t.Fatalf("duplicate key in a sign request = %d %+v", got, e)
	}
	if got := tn.call("POST", "/v1/users", `{"username":"x","password":"correct horse battery","role":"user","role":"admin"}`, &e); got != 400 {
		t.Fatalf("duplicate role = %d %+v", got, e)
	}
	var rpcOut struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	tn.mustCall(200, "POST", "/v1/rpc", `{"jsonrpc":"2.0","id":1,"method":"eth_accounts","method":"eth_sign","params":[]}`, &rpcOut)
	if rpcOut.Error.Code != -32600 || !strings.Contains(rpcOut.Error.Message, "duplicate key") {
		t.Fatalf("duplicate key in JSON-RPC: %+v", rpcOut)
	}

	// Unauthenticated requests are limited per address (20/s, bursts of
	// 100); authenticated ones are not, and the audit log gets one line per
	// 10 s of refusals. Time moves on until the bucket is full again: then
	// exactly the burst passes.
	clock.Advance(10 * time.Second)
	limited := 0
	retry := ""
	for range 300 {
		req, _ := http.NewRequest("GET", tn.url+"/v1/no-such-route", nil)
		resp, err := tn.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 429 {
			limited++
			retry = resp.Header.Get("Retry-After")
		}
	}
	if limited != 200 {
		t.Fatalf("300 unauthenticated requests in a burst of 100: %d limited, want 200", limited)
	}
	if retry != "1" { // the next token comes in 50 ms: whole seconds, rounded up
		t.Fatalf("Retry-After %q, want 1 (whole seconds)", retry)
	}
	if n := sink.count("unknown"); n != 300-limited+1 {
		t.Fatalf("%d audit lines for %d answered and %d refused requests: want one line per answer and one for the refusals", n, 300-limited, limited)
	}
	// Authenticated requests are not limited; the address stays limited
	// (the clock does not move, so no token comes back however slow the
	// machine is).
	tn.mustCall(200, "GET", "/v1/accounts", nil, nil)
	e = apiErr{}
	if got := tn.call("POST", "/v1/sys/unseal", map[string]string{"key": ir.Keys[0]}, &e); got != 429 || e.Error.Code != "rate_limited" {
		t.Fatalf("unseal from a limited address = %d %+v", got, e)
	}
	// After Retry-After the address is served again.
	clock.Advance(time.Second)
	if got := tn.call("POST", "/v1/sys/unseal", map[string]string{"key": ir.Keys[0]}, &e); got != 200 {
		t.Fatalf("unseal after Retry-After = %d %+v", got, e)
	}
}

// TestStorageAttackerCannotForgeRSAOAEPRootKey: with hsm_mechanism =
// rsa_oaep, the HSM wraps with the public half of its key pair, which
// anyone can read from the token. A storage-only attacker (threat model
// T4) replaces the storage by a vault of its own: a root key it chose,
// wrapped with the public key as core/root-key, and a keyring under that
// root key (seal-wrapped the same way, with a recovery key it knows). The
// node must not auto-unseal into it: it stays sealed and says why. The
// real storage, put back, unseals as before.
func TestStorageAttackerCannotForgeRSAOAEPRootKey(t *testing.T) {
	hc := hsmtest.NewToken(t)
	dir := t.TempDir()
	mutate := func(c *config.Server) {
		withHSM(hc)(c)
		c.HSMMechanism, c.HSMRSAOAEPHash = "rsa_oaep", "sha1" // SoftHSM2 2.6: OAEP with SHA-1 only
	}
	tn := startNode(t, dir, nodeOpts{mutate: mutate})
	var ir initResp
	tn.mustCall(200, "POST", "/v1/sys/init", map[string]int{"recovery_shares": 1, "recovery_threshold": 1}, &ir)
	tn.token = ir.RootToken
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "real"}, nil)
	tn.stop()

	// The attacker reads the public key (a public object of the token).
	m, err := hsm.Open(hc, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := m.RSAPublicKey(context.Background(), hc.KeyLabel)
	m.Close()
	if err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dir, "moonvault.db")
	realDB, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}

	for _, unsigned := range []bool{true, false} {
		f := &sealtest.Forger{Pub: pub, KeyLabel: hc.KeyLabel, SignLabel: hc.KeyLabel + "-sign", SHA1: true, Unsigned: unsigned}
		t.Run(f.KeyID(), func(t *testing.T) {
			ctx := context.Background()
			root := make(secret.Bytes, 32)
			_, _ = rand.Read(root)
			recovery := make([]byte, 32)
			_, _ = rand.Read(recovery)
			sum := sha256.Sum256(recovery)
			sealCfg := map[string]any{"type": "pkcs11", "recovery_shares": 1, "recovery_threshold": 1, "seal_wrap": true}
			meta, _ := json.Marshal(map[string]any{"version": 1, "recovery_hash": sum[:], "seal": sealCfg})
			hint, _ := json.Marshal(sealCfg)
			wrapped, err := f.Encrypt(ctx, root, []byte("moonvault root key v1"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(dbPath); err != nil {
				t.Fatal(err)
			}
			db, err := bolt.Open(dbPath)
			if err != nil {
				t.Fatal(err)
			}
			err = barrier.New(db, barrier.Options{Rand: rand.Reader}).InitializeWith(ctx, root, sealwrap.New(f), meta,
				[]storage.Op{{Key: "core/root-key", Value: wrapped}, {Key: "core/seal-config", Value: hint}})
			db.Close()
			if err != nil {
				t.Fatal(err)
			}

			logs := &lockedBuf{}
			tn := startNode(t, dir, nodeOpts{mutate: mutate, logTo: logs})
			var st fullStatus
			waitFor(t, "the node to unseal or say why not", func() bool {
				tn.mustCall(200, "GET", "/v1/sys/seal-status", nil, &st)
				return !st.Sealed || st.SealedReason != ""
			})
			if !st.Sealed || tn.call("GET", "/v1/sys/health", nil, nil) == 200 {
				t.Fatal("the node auto-unsealed the attacker's vault (its root key wrapped with the public key)")
			}
			if !strings.Contains(st.SealedReason, "root key") || !strings.Contains(st.SealedReason, "signature") {
				t.Fatalf("sealed_reason %q: want the wrapped root key refused for its signature", st.SealedReason)
			}
			t.Logf("sealed_reason: %s", st.SealedReason)
			tn.stop()
			if !strings.Contains(logs.String(), "auto-unseal failed") {
				t.Fatalf("the refusal is not logged:\n%s", logs.String())
			}
		})
	}

	// The real storage, put back, unseals the real vault.
	if err := os.WriteFile(dbPath, realDB, 0o600); err != nil {
		t.Fatal(err)
	}
	tn = startNode(t, dir, nodeOpts{mutate: mutate})
	waitUnsealed(t, tn)
	tn.token = ir.RootToken
	tn.mustCall(200, "POST", "/v1/accounts/real/sign-message", map[string]string{"data": "still the real vault"}, nil)
}

// TestCaseVariantKeysRefused: encoding/json fills a field from a member
// whose name differs only in case (and keeps the last), so a body with
// "data" and "Data" would sign what a reader of the first did not see.
// Every body refuses it, REST and JSON-RPC.
func TestCaseVariantKeysRefused(t *testing.T) {
	tn := startNode(t, t.TempDir(), nodeOpts{})
	ir := initShamirKeys(t, tn)
	tn.token = ir.RootToken
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "a"}, nil)
	var e apiErr
	for _, body := range []string{
		`{"data":"shown","Data":"signed"}`,
		`{"data":"shown","DATA":"signed"}`,
		`{"data":"shown","\u0044ata":"signed"}`,
	} {
		if got := tn.call("POST", "/v1/accounts/a/sign-message", body, &e); got != 400 || !strings.Contains(e.Error.Message, "duplicate key") {
			t.Fatalf("%s: %d %+v; want 400 duplicate key", body, got, e)
		}
	}
	var rpcOut struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	tn.mustCall(200, "POST", "/v1/rpc", `{"jsonrpc":"2.0","id":1,"method":"eth_accounts","Method":"eth_sign","params":[]}`, &rpcOut)
	if rpcOut.Error.Code != -32600 || !strings.Contains(rpcOut.Error.Message, "duplicate key") {
		t.Fatalf("case-variant key in JSON-RPC: %+v", rpcOut)
	}
}
