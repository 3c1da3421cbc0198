package main

// TestRunbook runs docs/operations.md as written, with the real binary: back
// up (snapshot + the SoftHSM2 token directory), restore onto a new machine,
// migrate bolt -> PostgreSQL, rotate keys, reload the configuration, and
// scrape the metrics.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/moonvault/moonvault/internal/hsm/softhsm"
	"github.com/moonvault/moonvault/internal/storage/postgres/pgtest"
)

const runbookPW = "correct horse battery staple"

// machine is one host of the runbook: its own data directory, SoftHSM2
// configuration and server process.
type machine struct {
	t       *testing.T
	dir     string
	conf    string // SOFTHSM2_CONF
	tokens  string
	cfgFile string
	addr    string
	cert    string
	sp      *serverProc
}

func newMachine(t *testing.T, name string) *machine {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	m := &machine{t: t, dir: dir, tokens: filepath.Join(dir, "softhsm", "tokens"), conf: filepath.Join(dir, "softhsm", "softhsm2.conf")}
	if err := os.MkdirAll(filepath.Dir(m.tokens), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := "directories.tokendir = " + m.tokens + "\nobjectstore.backend = file\nlog.level = ERROR\n"
	if err := os.WriteFile(m.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	m.cert, _ = writeTLS(t, dir)
	return m
}

func (m *machine) env() []string { return []string{"SOFTHSM2_CONF=" + m.conf} }

// run runs a shell-level command of the runbook (softhsm2-util, cp).
func (m *machine) run(name string, args ...string) {
	m.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), m.env()...)
	if out, err := cmd.CombinedOutput(); err != nil {
		m.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// start writes the configuration and starts the server.
func (m *machine) start(extra string) {
	m.t.Helper()
	lib, ok := softhsm.FindLibrary()
	if !ok {
		m.t.Fatal("SoftHSM2 not installed (apt-get install softhsm2)")
	}
	m.addr = anyPort // the server picks; startServer learns it
	m.cfgFile = filepath.Join(m.dir, "moonvault.hcl")
	hcl := fmt.Sprintf(`listen_address  = %q
data_dir        = %q
tls_cert_file   = %q
tls_key_file    = %q
hsm_lib         = %q
hsm_token_label = "moonvault"
hsm_pin         = "1234"
hsm_key_label   = "moonvault-root"
audit_file      = %q
metrics_unauthenticated = true
%s`, m.addr, filepath.Join(m.dir, "data"), m.cert, filepath.Join(m.dir, "tls.key"), lib, filepath.Join(m.dir, "audit.log"), extra)
	if err := os.WriteFile(m.cfgFile, []byte(hcl), 0o600); err != nil {
		m.t.Fatal(err)
	}
	m.sp = startServer(m.t, m.addr, m.cert, m.env(), "-config", m.cfgFile)
	m.addr = m.sp.addr
}

// cli runs the moonvault CLI against this machine; it fails the test on a
// non-zero exit.
func (m *machine) cli(env []string, args ...string) string {
	m.t.Helper()
	out, code := m.sp.cli(env, args...)
	if code != 0 {
		m.t.Fatalf("moonvault %s: exit %d: %s", strings.Join(args, " "), code, out)
	}
	return out
}

// initRoot initialises the machine's new vault as the runbook says
// (shares of a vault about to be replaced) and returns its root token.
func (m *machine) initRoot() string {
	m.t.Helper()
	var ir struct {
		RootToken string `json:"root_token"`
	}
	if err := json.Unmarshal([]byte(m.cli(nil, "operator", "init", "-key-shares", "1", "-key-threshold", "1", "-format", "json")), &ir); err != nil || ir.RootToken == "" {
		m.t.Fatalf("init: %v", err)
	}
	return ir.RootToken
}

func (m *machine) waitUnsealed() {
	m.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, code := m.sp.cli(nil, "operator", "status"); code == 0 {
			return
		}
		if time.Now().After(deadline) {
			m.t.Fatal("the vault did not unseal")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// signsAs logs alice in and checks that account treasury signs as addr.
func (m *machine) signsAs(addr string) {
	m.t.Helper()
	home := m.t.TempDir()
	m.cli([]string{"HOME=" + home, "MOONVAULT_PASSWORD=" + runbookPW}, "login", "-username", "alice")
	out := m.cli([]string{"HOME=" + home}, "account", "sign-message", "treasury", "runbook", "-format", "json")
	var sm struct {
		Signature string `json:"signature"`
	}
	if err := json.Unmarshal([]byte(out), &sm); err != nil {
		m.t.Fatalf("sign-message output %q: %v", out, err)
	}
	sig, err := hexutil.Decode(sm.Signature)
	if err != nil || len(sig) != 65 {
		m.t.Fatalf("signature %q", sm.Signature)
	}
	sig[64] -= 27
	pub, err := crypto.SigToPub(accounts.TextHash([]byte("runbook")), sig)
	if err != nil {
		m.t.Fatal(err)
	}
	if got := crypto.PubkeyToAddress(*pub).Hex(); got != addr {
		m.t.Fatalf("treasury signs as %s, want %s", got, addr)
	}
}

func TestRunbook(t *testing.T) {
	backup := t.TempDir()
	snap := filepath.Join(backup, "moonvault.snap")

	// The vault in service: bolt, SoftHSM2 seal.
	a := newMachine(t, "a")
	a.run("mkdir", "-p", a.tokens)
	a.run("softhsm2-util", "--init-token", "--free", "--label", "moonvault", "--pin", "1234", "--so-pin", "5678")
	a.start("")
	var ir struct {
		RootToken string `json:"root_token"`
	}
	if err := json.Unmarshal([]byte(a.cli(nil, "operator", "init", "-key-shares", "1", "-key-threshold", "1", "-format", "json")), &ir); err != nil || ir.RootToken == "" {
		t.Fatalf("init: %v", err)
	}
	root := []string{"MOONVAULT_TOKEN=" + ir.RootToken}
	a.cli(append(root, "MOONVAULT_NEW_PASSWORD="+runbookPW), "user", "create", "alice")
	home := t.TempDir()
	a.cli([]string{"HOME=" + home, "MOONVAULT_PASSWORD=" + runbookPW}, "login", "-username", "alice")
	var acc struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal([]byte(a.cli([]string{"HOME=" + home}, "account", "create", "treasury", "-format", "json")), &acc); err != nil {
		t.Fatal(err)
	}
	a.signsAs(acc.Address)

	// Back up: a snapshot, checked offline, and the SoftHSM2 token directory.
	a.cli(root, "operator", "snapshot", "save", snap)
	if out := a.cli(nil, "operator", "snapshot", "inspect", snap, "-format", "json"); !strings.Contains(out, `"verified": true`) || !strings.Contains(out, `"storage": "bolt"`) {
		t.Fatalf("inspect: %s", out)
	}
	a.run("cp", "-a", a.tokens, filepath.Join(backup, "softhsm-tokens"))

	// A damaged copy is refused before anything is sent.
	raw, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(backup, "damaged.snap")
	if err := os.WriteFile(bad, raw[:len(raw)-50], 0o600); err != nil {
		t.Fatal(err)
	}

	// Restore onto a new machine (bolt), with only the backups.
	b := newMachine(t, "b")
	b.run("cp", "-a", filepath.Join(backup, "softhsm-tokens"), b.tokens)
	b.start("")
	if out, code := b.sp.cli(nil, "operator", "snapshot", "restore", bad); code == 0 {
		t.Fatalf("a damaged snapshot was restored: %d %s", code, out)
	}
	if code := healthCode(t, b); code != 501 {
		t.Fatalf("the new machine changed after a refused restore: health %d", code)
	}
	// No token, no restore: a new machine is initialised first, and its
	// root token (minutes old: step-up) restores with -force.
	if out, code := b.sp.cli(nil, "operator", "snapshot", "restore", "-force", snap); code == 0 {
		t.Fatalf("a restore without a token was accepted: %s", out)
	}
	bRoot := b.initRoot()
	b.cli([]string{"MOONVAULT_TOKEN=" + bRoot}, "operator", "snapshot", "restore", "-force", snap)
	b.waitUnsealed()
	b.signsAs(acc.Address)

	// Migrate bolt -> PostgreSQL.
	c := newMachine(t, "c")
	c.run("cp", "-a", filepath.Join(backup, "softhsm-tokens"), c.tokens)
	db := pgtest.NewDatabase(t)
	c.start(fmt.Sprintf("storage = \"postgres\"\npostgres_url = %q\n", db))
	c.cli([]string{"MOONVAULT_TOKEN=" + c.initRoot()}, "operator", "snapshot", "restore", "-force", snap)
	c.waitUnsealed()
	c.signsAs(acc.Address)

	// Rotate the keyring, the JWT keys, and rewrap under the HSM key.
	c.cli(root, "operator", "rotate")
	c.cli(root, "operator", "rotate-jwt")
	if out := c.cli(root, "operator", "rewrap", "-format", "json"); !strings.Contains(out, "rewrapped") {
		t.Fatalf("rewrap: %s", out)
	}
	c.signsAs(acc.Address)

	// Reload the configuration: SIGHUP applies the new log level.
	cfg, err := os.ReadFile(c.cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.cfgFile, append(cfg, []byte("log_level = \"debug\"\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.sp.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(c.sp.out.String(), `"msg":"configuration reloaded"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no reload after SIGHUP:\n%s", c.sp.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(c.sp.out.String(), `"applied":["log_level"]`) {
		t.Fatalf("reload did not apply log_level:\n%s", c.sp.out.String())
	}

	// Monitor: Prometheus scrapes the metrics (metrics_unauthenticated).
	resp, err := c.sp.client.Get("https://" + c.addr + "/v1/sys/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	for _, name := range []string{"moonvault_sealed", "moonvault_signatures_total", "moonvault_http_requests_total", "moonvault_audit_lines_total", "moonvault_entropy_hsm_bytes_total"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("metric %s missing", name)
		}
	}
	// Undo a restore, bolt: with the node stopped, the replaced file goes
	// back; the node then holds the vault it had before the restore (the
	// one just initialised: alice is not in it).
	b.sp.stop(syscall.SIGTERM)
	data := filepath.Join(b.dir, "data")
	kept, err := filepath.Glob(filepath.Join(data, "moonvault.db.replaced-*"))
	if err != nil || len(kept) != 1 {
		t.Fatalf("replaced copies beside the bolt database: %v %v", kept, err)
	}
	b.run("mv", filepath.Join(data, "moonvault.db"), filepath.Join(data, "moonvault.db.undone"))
	b.run("mv", kept[0], filepath.Join(data, "moonvault.db"))
	b.start("")
	b.waitUnsealed()
	b.notInVault("alice")

	// Undo a restore, PostgreSQL: the statements of the runbook.
	c.sp.stop(syscall.SIGTERM)
	undoPostgres(t, db)
	c.start(fmt.Sprintf("storage = \"postgres\"\npostgres_url = %q\n", db))
	c.waitUnsealed()
	c.notInVault("alice")

	for _, m := range []*machine{a, b, c} {
		m.sp.stop(syscall.SIGTERM)
	}
}

// notInVault checks that user cannot log in.
func (m *machine) notInVault(user string) {
	m.t.Helper()
	if out, code := m.sp.cli([]string{"HOME=" + m.t.TempDir(), "MOONVAULT_PASSWORD=" + runbookPW}, "login", "-username", user); code == 0 {
		m.t.Fatalf("%s logs in: the restore was not undone: %s", user, out)
	}
}

// undoPostgres runs the runbook's "Undo a restore" SQL on the only
// replaced table.
func undoPostgres(t *testing.T, url string) {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var kept []string
	rows, err := conn.Query(ctx, `SELECT tablename FROM pg_tables WHERE tablename LIKE 'moonvault\_kv\_replaced\_%'`)
	if err == nil {
		kept, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil || len(kept) != 1 {
		t.Fatalf("replaced tables: %v %v", kept, err)
	}
	name := kept[0]
	sql := `BEGIN;
ALTER TABLE moonvault_kv RENAME CONSTRAINT moonvault_kv_pkey TO moonvault_kv_undone_pkey;
ALTER TABLE moonvault_kv RENAME TO moonvault_kv_undone;
ALTER TABLE ` + name + ` RENAME CONSTRAINT ` + name + `_pkey TO moonvault_kv_pkey;
ALTER TABLE ` + name + ` RENAME TO moonvault_kv;
COMMIT;`
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("undo SQL: %v", err)
	}
}

func healthCode(t *testing.T, m *machine) int {
	t.Helper()
	resp, err := m.sp.client.Get("https://" + m.addr + "/v1/sys/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
