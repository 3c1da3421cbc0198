package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts"

	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/hsm"
	"github.com/moonvault/moonvault/internal/hsm/hsmtest"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/snapshot"
	"github.com/moonvault/moonvault/internal/storage/postgres/pgtest"
)

const testPW = "correct horse battery staple"

// raw sends a request with a byte body and returns the status and body.
func (tn *testNode) raw(method, path, tok string, body []byte) (int, []byte) {
	tn.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, tn.url+path, rd)
	if err != nil {
		tn.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := tn.client.Do(req)
	if err != nil {
		tn.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		tn.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, out
}

func (tn *testNode) snapshot(tok string) []byte {
	tn.t.Helper()
	code, body := tn.raw("GET", "/v1/sys/storage/snapshot", tok, nil)
	if code != 200 {
		tn.t.Fatalf("snapshot: %d %s", code, body)
	}
	return body
}

func (tn *testNode) restore(tok string, snap []byte, query string) (int, string) {
	tn.t.Helper()
	code, body := tn.raw("POST", "/v1/sys/storage/restore"+query, tok, snap)
	return code, string(body)
}

// vaultUser is a user with accounts and the addresses they must sign as.
type vaultUser struct {
	name  string
	addrs map[string]string // account name -> address
}

// populate creates a user with n accounts on tn (root token tok).
func populate(t *testing.T, tn *testNode, root, user string, n int) vaultUser {
	t.Helper()
	tn.token = root
	tn.mustCall(201, "POST", "/v1/users", map[string]string{"username": user, "password": testPW}, nil)
	tn.token = login(t, tn, user, testPW)
	u := vaultUser{name: user, addrs: map[string]string{}}
	for i := range n {
		var a account
		tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": fmt.Sprintf("acct-%d", i)}, &a)
		u.addrs[a.Name] = a.Address
	}
	return u
}

// checkSigns logs in as u on tn and checks every account is listed with
// its address and signs as it (ecrecover of the EIP-191 hash).
func checkSigns(t *testing.T, tn *testNode, u vaultUser) {
	t.Helper()
	tn.token = login(t, tn, u.name, testPW)
	var list struct {
		Accounts []account `json:"accounts"`
	}
	tn.mustCall(200, "GET", "/v1/accounts?limit=1000", nil, &list)
	if len(list.Accounts) != len(u.addrs) {
		t.Fatalf("%s has %d accounts after the restore, want %d", u.name, len(list.Accounts), len(u.addrs))
	}
	for name, addr := range u.addrs {
		msg := "restored " + name
		var sm struct {
			Signature string `json:"signature"`
		}
		tn.mustCall(200, "POST", "/v1/accounts/"+name+"/sign-message", map[string]string{"data": msg}, &sm)
		if got := recoverSigner(t, accounts.TextHash([]byte(msg)), sm.Signature); got.Hex() != addr {
			t.Fatalf("%s/%s signs as %s, want %s", u.name, name, got.Hex(), addr)
		}
	}
}

func withBoltHSM(hc hsm.Config) func(*config.Server) { return withHSM(hc) }

// TestSnapshotAcrossBackends: bolt -> snapshot -> restore into a new
// PostgreSQL vault -> it auto-unseals with the same SoftHSM2 key and every
// account signs as before; then PostgreSQL -> bolt the same way.
func TestSnapshotAcrossBackends(t *testing.T) {
	hc := hsmtest.NewToken(t)
	src := startNode(t, t.TempDir(), nodeOpts{mutate: withBoltHSM(hc)})
	var ir initResp
	src.mustCall(200, "POST", "/v1/sys/init", map[string]int{"recovery_shares": 1, "recovery_threshold": 1}, &ir)
	alice := populate(t, src, ir.RootToken, "alice", 3)
	bob := populate(t, src, ir.RootToken, "bob", 2)
	snap := src.snapshot(ir.RootToken)

	var hdr *snapshot.Header
	hdr, err := snapshot.Read(context.Background(), bytes.NewReader(snap), snapshot.Handler{})
	if err != nil {
		t.Fatalf("the snapshot served does not verify: %v", err)
	}
	if hdr.Storage != "bolt" || hdr.Seal != "pkcs11" || hdr.Records < 10 || hdr.Term == 0 {
		t.Fatalf("header %+v", hdr)
	}
	// Storage as stored: no private key or password material in the clear.
	if bytes.Contains(snap, []byte(testPW)) {
		t.Fatal("the snapshot holds a password in the clear")
	}

	pg := startNode(t, t.TempDir(), nodeOpts{mutate: withPostgres(pgtest.NewDatabase(t), hc)})
	if body := restoreInto(t, pg, snap, false); !strings.Contains(body, `"snapshot_storage":"bolt"`) {
		t.Fatalf("restore into PostgreSQL: %s", body)
	}
	waitUnsealed(t, pg)
	checkSigns(t, pg, alice)
	checkSigns(t, pg, bob)

	// And back: PostgreSQL -> a new bolt vault.
	pg.token = ir.RootToken // the root token's session came with the data
	back := pg.snapshot(pg.token)
	dst := startNode(t, t.TempDir(), nodeOpts{mutate: withBoltHSM(hc)})
	if body := restoreInto(t, dst, back, false); !strings.Contains(body, `"snapshot_storage":"postgres"`) {
		t.Fatalf("restore into bolt: %s", body)
	}
	waitUnsealed(t, dst)
	checkSigns(t, dst, alice)
	checkSigns(t, dst, bob)
}

// TestSnapshotShamir: a Shamir vault's snapshot restores into a new node,
// which stays sealed until the source's key shares unseal it.
func TestSnapshotShamir(t *testing.T) {
	src := startNode(t, t.TempDir(), nodeOpts{})
	var ir initResp
	src.mustCall(200, "POST", "/v1/sys/init", map[string]int{"secret_shares": 3, "secret_threshold": 2}, &ir)
	unsealAll(t, src, ir.Keys[:2])
	alice := populate(t, src, ir.RootToken, "alice", 2)
	snap := src.snapshot(ir.RootToken)

	dst := startNode(t, t.TempDir(), nodeOpts{mutate: func(c *config.Server) { c.Storage, c.PostgresURL = "postgres", secret.String(pgtest.NewDatabase(t)) }})
	if body := restoreInto(t, dst, snap, true); !strings.Contains(body, `"sealed":true`) {
		t.Fatalf("restore: %s", body)
	}
	if got := dst.call("GET", "/v1/sys/health", nil, nil); got != 503 {
		t.Fatalf("health after restore = %d, want 503 (sealed)", got)
	}
	unsealAll(t, dst, ir.Keys[1:])
	checkSigns(t, dst, alice)
}

func initHSM(t testing.TB, tn *testNode) string {
	t.Helper()
	var ir initResp
	tn.mustCall(200, "POST", "/v1/sys/init", map[string]int{"recovery_shares": 1, "recovery_threshold": 1}, &ir)
	return ir.RootToken
}

// TestRestoreRefusesDamagedSnapshots: a truncated file, a flipped byte and
// a wrong header are refused with 400 invalid_snapshot, and the target, new
// or in use, is unchanged.
func TestRestoreRefusesDamagedSnapshots(t *testing.T) {
	hc := hsmtest.NewToken(t)
	src := startNode(t, t.TempDir(), nodeOpts{mutate: withBoltHSM(hc)})
	root := initHSM(t, src)
	populate(t, src, root, "alice", 2)
	good := src.snapshot(root)

	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x01
	wrongVersion := bytes.Clone(good)
	wrongVersion[7] = 9
	wrongHeader := bytes.Replace(bytes.Clone(good), []byte(`"storage":"bolt"`), []byte(`"storage":"xolt"`), 1)
	bad := map[string]struct {
		data []byte
		says string
	}{
		"truncated":      {good[:len(good)-100], "truncated"},
		"half":           {good[:len(good)/2], "truncated"},
		"flipped byte":   {flipped, "snapshot refused"},
		"wrong version":  {wrongVersion, "format version 9"},
		"wrong header":   {wrongHeader, "SHA-256 mismatch"},
		"empty":          {[]byte{}, "not a Moon Vault snapshot"},
		"not a snapshot": {[]byte(`{"hello":"world"}`), "not a Moon Vault snapshot"},
	}

	// A vault just initialised, and one in use, keep their data and stay
	// unsealed (force: the refusal is for the damage, not the origin).
	fresh := startNode(t, t.TempDir(), nodeOpts{mutate: withPostgres(pgtest.NewDatabase(t), hc)})
	freshRoot := initHSM(t, fresh)
	inUse := startNode(t, t.TempDir(), nodeOpts{mutate: withBoltHSM(hc)})
	inUseRoot := initHSM(t, inUse)
	bob := populate(t, inUse, inUseRoot, "bob", 1)

	for name, tc := range bad {
		for _, target := range []struct {
			tn  *testNode
			tok string
		}{{fresh, freshRoot}, {inUse, inUseRoot}} {
			var e apiErr
			code, body := target.tn.restore(target.tok, tc.data, "?force=true")
			_ = jsonUnmarshal(body, &e)
			if code != 400 || e.Error.Code != "invalid_snapshot" || !strings.Contains(e.Error.Message, tc.says) {
				t.Errorf("%s: %d %s; want 400 invalid_snapshot saying %q", name, code, body, tc.says)
			}
		}
	}
	if got := fresh.call("GET", "/v1/sys/health", nil, nil); got != 200 {
		t.Fatalf("the new vault was sealed by refused restores: health %d", got)
	}
	if got := inUse.call("GET", "/v1/sys/health", nil, nil); got != 200 {
		t.Fatalf("the vault in use was sealed by a refused restore: health %d", got)
	}
	checkSigns(t, inUse, bob)

	// Over an initialised vault: no token is refused; another vault's
	// snapshot needs force.
	if code, _ := inUse.restore("", good, ""); code != 401 {
		t.Fatalf("restore over an initialised vault without a token: %d, want 401", code)
	}
	var e apiErr
	code, body := inUse.restore(inUseRoot, good, "")
	_ = jsonUnmarshal(body, &e)
	if code != 409 || e.Error.Code != "snapshot_from_other_vault" {
		t.Fatalf("foreign snapshot: %d %s", code, body)
	}
	checkSigns(t, inUse, bob)
	if code, body := inUse.restore(inUseRoot, good, "?force=true"); code != 200 {
		t.Fatalf("forced restore: %d %s", code, body)
	}
	waitUnsealed(t, inUse)
	inUse.token = inUseRoot
	if got := inUse.call("POST", "/v1/auth/login", map[string]string{"username": "bob", "password": testPW}, nil); got == 200 {
		t.Fatal("bob, who only existed before the forced restore, can still log in")
	}
}

func jsonUnmarshal(s string, v any) error {
	return json.Unmarshal([]byte(s), v)
}

// TestRestoreRefusesResignedSnapshot: a snapshot rewritten and signed with
// another key passes the file checks (it verifies under the key it names),
// but the restored vault does not hold that key, so it refuses to unseal.
func TestRestoreRefusesResignedSnapshot(t *testing.T) {
	src := startNode(t, t.TempDir(), nodeOpts{})
	root := initShamirKeys(t, src)
	populate(t, src, root.RootToken, "alice", 1)
	good := src.snapshot(root.RootToken)
	records := map[string][]byte{}
	hdr, err := snapshot.Read(context.Background(), bytes.NewReader(good), snapshot.Handler{Record: func(k string, v []byte) error {
		records[k] = bytes.Clone(v)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	// The attacker drops a record (alice's only account) and re-signs.
	for k := range records {
		if strings.HasPrefix(k, "wallet/accounts/") {
			delete(records, k)
		}
	}
	attacker := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	var forged bytes.Buffer
	if _, err := snapshot.Write(context.Background(), &forged, *hdr, mapView(records), attacker); err != nil {
		t.Fatal(err)
	}
	dst := startNode(t, t.TempDir(), nodeOpts{})
	restoreInto(t, dst, forged.Bytes(), true)
	var e apiErr
	code := dst.call("POST", "/v1/sys/unseal", map[string]string{"key": root.Keys[0]}, &e)
	if code == 200 {
		t.Fatal("a vault restored from a re-signed snapshot unsealed")
	}
	if got := dst.call("GET", "/v1/sys/health", nil, nil); got != 503 {
		t.Fatalf("health = %d, want 503 sealed", got)
	}
}

// initShamirKeys initialises a one-share vault and unseals it.
func initShamirKeys(t testing.TB, tn *testNode) initResp {
	t.Helper()
	var ir initResp
	tn.mustCall(200, "POST", "/v1/sys/init", map[string]int{"secret_shares": 1, "secret_threshold": 1}, &ir)
	unsealAll(t, tn, ir.Keys)
	return ir
}

type mapView map[string][]byte

func (m mapView) Count() int64 { return int64(len(m)) }
func (m mapView) Close() error { return nil }
func (m mapView) Each(_ context.Context, fn func(string, []byte) error) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn(k, m[k]); err != nil {
			return err
		}
	}
	return nil
}

// TestSnapshotUnderWriteLoad: writers keep creating accounts, each writer
// one after another, while a snapshot streams. The restored vault holds,
// for every writer, exactly a prefix of its sequence, and every account it
// holds signs with its key: no torn record.
func TestSnapshotUnderWriteLoad(t *testing.T) {
	hc := hsmtest.NewToken(t)
	src := startNode(t, t.TempDir(), nodeOpts{mutate: withPostgres(pgtest.NewDatabase(t), hc)})
	root := initHSM(t, src)
	u := populate(t, src, root, "loader", 0)
	tok := src.token
	const writers = 4
	var mu sync.Mutex
	acked := make([]int, writers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var a account
				if code := src.callTok(tok, "POST", "/v1/accounts", map[string]string{"name": fmt.Sprintf("w%d-%05d", w, i)}, &a); code != 201 {
					t.Errorf("writer %d: create %d: %d", w, i, code)
					return
				}
				mu.Lock()
				acked[w] = i + 1
				mu.Unlock()
			}
		}()
	}
	waitFor := func(n int) {
		for {
			mu.Lock()
			done := true
			for _, c := range acked {
				done = done && c >= n
			}
			mu.Unlock()
			if done || t.Failed() {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(5)
	mu.Lock()
	before := append([]int(nil), acked...)
	mu.Unlock()
	snap := src.snapshot(root)
	mu.Lock()
	after := append([]int(nil), acked...)
	mu.Unlock()
	waitFor(after[0] + 3) // writes went on after the snapshot too
	close(stop)
	wg.Wait()

	dst := startNode(t, t.TempDir(), nodeOpts{mutate: withBoltHSM(hc)})
	restoreInto(t, dst, snap, false)
	waitUnsealed(t, dst)
	dst.token = login(t, dst, u.name, testPW)
	var list struct {
		Accounts []account `json:"accounts"`
	}
	dst.mustCall(200, "GET", "/v1/accounts?limit=1000", nil, &list)
	got := make([][]int, writers)
	for _, a := range list.Accounts {
		var w, i int
		if _, err := fmt.Sscanf(a.Name, "w%d-%05d", &w, &i); err != nil {
			t.Fatalf("unexpected account %q", a.Name)
		}
		got[w] = append(got[w], i)
		// Every record restored is whole: the key is there and matches.
		msg := "x"
		var sm struct {
			Signature string `json:"signature"`
		}
		dst.mustCall(200, "POST", "/v1/accounts/"+a.Name+"/sign-message", map[string]string{"data": msg}, &sm)
		if s := recoverSigner(t, accounts.TextHash([]byte(msg)), sm.Signature); s.Hex() != a.Address {
			t.Fatalf("%s signs as %s, want %s", a.Name, s.Hex(), a.Address)
		}
	}
	for w := range writers {
		sort.Ints(got[w])
		n := len(got[w])
		for i, v := range got[w] {
			if v != i {
				t.Fatalf("writer %d: restored accounts %v are not a prefix of its writes", w, got[w])
			}
		}
		// Acknowledged before the snapshot started: in it; not yet made
		// when it ended: not in it.
		if n < before[w] || n > after[w]+1 {
			t.Fatalf("writer %d: %d accounts restored; %d were acknowledged before the snapshot and %d after it", w, n, before[w], after[w])
		}
	}
	t.Logf("restored prefixes %v of writers that had %v before and %v after the snapshot", lens(got), before, after)
}

func lens(s [][]int) []int {
	out := make([]int, len(s))
	for i := range s {
		out[i] = len(s[i])
	}
	return out
}

// TestRestoreReloadsOtherNodes: a restore through node A over the shared
// PostgreSQL makes node B seal and auto-unseal on the restored data: B no
// longer knows accounts made after the snapshot and signs with the
// restored ones.
func TestRestoreReloadsOtherNodes(t *testing.T) {
	a, b, root := newPGCluster(t).twoNodes(t)
	alice := populate(t, a, root, "alice", 2)
	snap := a.snapshot(root)
	tok := login(t, b, "alice", testPW)
	b.token = tok
	b.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "after-snapshot"}, nil)
	b.mustCall(200, "GET", "/v1/accounts/after-snapshot", nil, nil)

	if code, body := a.restore(root, snap, "?force=true"); code != 200 { // a rollback: force
		t.Fatalf("restore: %d %s", code, body)
	}
	waitUnsealed(t, a)
	// B notices (NOTIFY), seals and unseals on the restored data.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var lr struct {
			AccessToken string `json:"access_token"`
		}
		if b.callTok("", "POST", "/v1/auth/login", map[string]string{"username": "alice", "password": testPW}, &lr) == 200 &&
			b.callTok(lr.AccessToken, "GET", "/v1/accounts/after-snapshot", nil, nil) == 404 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node B still serves an account the restore removed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	checkSigns(t, b, alice)
}
