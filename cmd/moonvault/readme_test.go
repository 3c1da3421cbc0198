package main

// The README's examples, run as written: the shell blocks are read from
// README.md and run by a shell interpreter (mvdan.cc/sh), so the document
// and the test cannot drift apart. The commands run for real (moonvault,
// softhsm2-util, openssl, createdb, go build); only what a test may not
// touch is redirected, each in one place below (shellEnv.fix):
//
//   - fixed ports: a server started on a README address listens on
//     127.0.0.1:0 instead, and later commands naming that address get the
//     real one, once the server listens (as a person waits for it);
//   - the shared PostgreSQL: the README's database name becomes a fresh
//     one, dropped at the end;
//   - the placeholders a person fills in from what the dev server printed
//     (address, certificate path, password);
//   - build output: `go build -o moonvault` writes into the test's
//     directory, not the repository;
//   - the placeholders a person fills in from their authenticator app, from
//     what an earlier command printed, or from their own files (one-time
//     codes, the API key, a mnemonic, a PSBT, a Solana transaction): see
//     readme_cli_test.go.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/jackc/pgx/v5"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"

	"github.com/moonvault/moonvault/internal/hsm/softhsm"
	"github.com/moonvault/moonvault/internal/storage/postgres/pgtest"
)

// readmeBlocks returns the ```sh blocks of the README section whose heading
// line is heading, up to the next heading of the same or a higher level.
func readmeBlocks(t *testing.T, heading string) []string {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	level := strings.IndexFunc(heading, func(r rune) bool { return r != '#' })
	var blocks []string
	var cur *strings.Builder
	in := false
	for _, line := range strings.Split(string(raw), "\n") {
		switch {
		case cur != nil && line == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		case line == heading:
			in = true
		case in && strings.HasPrefix(line, "#"):
			if l := strings.IndexFunc(line, func(r rune) bool { return r != '#' }); l > 0 && l <= level {
				in = false
			}
		case in && line == "```sh":
			cur = &strings.Builder{}
		}
	}
	if len(blocks) == 0 {
		t.Fatalf("README.md has no sh block under %q", heading)
	}
	return blocks
}

// shellEnv runs README shell blocks and keeps what their commands printed.
type shellEnv struct {
	t   *testing.T
	dir string // where the script runs
	env []string
	// fix adjusts one command before it runs (the redirections listed at
	// the top of this file); it may change the arguments and the directory.
	fix func(args []string, dir string) ([]string, string)
	// values maps a whole argument or environment value to what it stands
	// for here (placeholders); subst maps substrings, also in written files.
	values map[string]string
	subst  []string
	// lookup, when set, gives a placeholder's value from what earlier
	// commands printed (a code from an enrolled secret, a key shown once).
	lookup func(v string) (string, bool)

	mu      sync.Mutex
	servers map[string]*serverSlot // README listen address -> server
	procs   []runningProc
	ran     []ranCommand
}

type serverSlot struct {
	ready chan struct{} // closed when addr is known or the server died
	addr  string
	out   *syncBuffer
}

type runningProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been waited for
}

type ranCommand struct {
	args   []string
	stdout string
}

var listenFlagRE = regexp.MustCompile(`-(?:dev-)?listen-address[ =]([0-9.]+:[0-9]+)`)

func newShellEnv(t *testing.T) *shellEnv {
	t.Helper()
	home, bin := t.TempDir(), t.TempDir()
	if err := os.Symlink(binary, filepath.Join(bin, "moonvault")); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "MOONVAULT_") || strings.HasPrefix(k, "PG") || k == "SOFTHSM2_CONF" || k == "HOME" || k == "PATH" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+home, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	// A fresh HOME must not mean a fresh Go module and build cache.
	goenv, err := exec.Command("go", "env", "GOPATH", "GOMODCACHE", "GOCACHE").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	for i, v := range strings.Fields(string(goenv)) {
		env = append(env, []string{"GOPATH", "GOMODCACHE", "GOCACHE"}[i]+"="+v)
	}
	sh := &shellEnv{t: t, dir: t.TempDir(), env: env, values: map[string]string{}, servers: map[string]*serverSlot{}}
	t.Cleanup(sh.stopAll)
	return sh
}

// run runs script; the servers it starts in the background keep running
// until the test ends.
func (sh *shellEnv) run(name, script string) {
	sh.t.Helper()
	for _, m := range listenFlagRE.FindAllStringSubmatch(script, -1) {
		sh.slot(m[1])
	}
	file, err := syntax.NewParser().Parse(strings.NewReader(script), name)
	if err != nil {
		sh.t.Fatalf("%s: %v", name, err)
	}
	out := &syncBuffer{}
	r, err := interp.New(
		interp.Dir(sh.dir),
		interp.Env(expand.ListEnviron(sh.env...)),
		interp.StdIO(nil, out, out),
		interp.ExecHandlers(func(interp.ExecHandlerFunc) interp.ExecHandlerFunc { return sh.exec }),
		interp.OpenHandler(sh.open),
		interp.Params("-e"), // stop at the first failing command, as a careful reader would
	)
	if err != nil {
		sh.t.Fatal(err)
	}
	// A hang guard, not a timing assertion. The context outlives this call:
	// the commands the script started with & run in it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	sh.t.Cleanup(cancel)
	if err := r.Run(ctx, file); err != nil {
		sh.t.Fatalf("%s failed: %v\n%s", name, err, out.String())
	}
	sh.t.Logf("%s:\n%s", name, out.String())
	// The next block runs in the same terminal: what this one exported
	// stays exported.
	for k, vr := range r.Vars {
		if vr.Exported && vr.Kind == expand.String && vr.IsSet() {
			sh.env = slices.DeleteFunc(sh.env, func(kv string) bool { return strings.HasPrefix(kv, k+"=") })
			sh.env = append(sh.env, k+"="+vr.String())
		}
	}
}

func (sh *shellEnv) slot(readmeAddr string) *serverSlot {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s := sh.servers[readmeAddr]
	if s == nil {
		s = &serverSlot{ready: make(chan struct{}), out: &syncBuffer{}}
		sh.servers[readmeAddr] = s
	}
	return s
}

// rewrite applies the placeholders and substitutions to one value; a value
// naming a server's README address waits until that server listens.
func (sh *shellEnv) rewrite(ctx context.Context, v string) (string, error) {
	if r, ok := sh.values[v]; ok {
		return r, nil
	}
	if sh.lookup != nil {
		if r, ok := sh.lookup(v); ok {
			return r, nil
		}
	}
	for i := 0; i+1 < len(sh.subst); i += 2 {
		v = strings.ReplaceAll(v, sh.subst[i], sh.subst[i+1])
	}
	sh.mu.Lock()
	addrs := make(map[string]*serverSlot, len(sh.servers))
	for k, s := range sh.servers {
		addrs[k] = s
	}
	sh.mu.Unlock()
	for readme, s := range addrs {
		if !strings.Contains(v, readme) {
			continue
		}
		select {
		case <-s.ready:
		case <-ctx.Done():
			return "", ctx.Err()
		}
		if s.addr == "" {
			return "", fmt.Errorf("the server for %s exited:\n%s", readme, s.out.String())
		}
		v = strings.ReplaceAll(v, readme, s.addr)
	}
	return v, nil
}

func (sh *shellEnv) exec(ctx context.Context, args []string) error {
	hc := interp.HandlerCtx(ctx)
	var env []string
	for name, vr := range hc.Env.Each {
		if vr.Exported && vr.Kind == expand.String && vr.IsSet() {
			val, err := sh.rewrite(ctx, vr.String())
			if err != nil {
				return err
			}
			env = append(env, name+"="+val)
		}
	}
	dir := hc.Dir
	if filepath.Base(args[0]) == "moonvault" && len(args) > 1 && args[1] == "server" {
		return sh.server(args, env, dir)
	}
	args = slices.Clone(args)
	for i := range args {
		v, err := sh.rewrite(ctx, args[i])
		if err != nil {
			return err
		}
		args[i] = v
	}
	if sh.fix != nil {
		args, dir = sh.fix(args, dir)
	}
	path, err := interp.LookPathDir(dir, expand.ListEnviron(env...), args[0])
	if err != nil {
		fmt.Fprintln(hc.Stderr, err)
		return interp.ExitStatus(127)
	}
	var stdout bytes.Buffer
	cmd := exec.Command(path, args[1:]...) // #nosec G204 G702 -- the README's own commands
	cmd.Env, cmd.Dir = env, dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = hc.Stdin, io.MultiWriter(hc.Stdout, &stdout), hc.Stderr
	err = cmd.Run()
	sh.mu.Lock()
	sh.ran = append(sh.ran, ranCommand{args: args, stdout: stdout.String()})
	sh.mu.Unlock()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return interp.ExitStatus(uint8(ee.ExitCode())) // #nosec G115 -- exit codes are 0-255
	}
	return err
}

// server starts `moonvault server` on a free port instead of the README's,
// and runs until the process ends (the script starts it with &).
func (sh *shellEnv) server(args, env []string, dir string) error {
	args = slices.Clone(args)
	readme := "127.0.0.1:8200" // the default listen address
	for i, a := range args {
		if (a == "-listen-address" || a == "-dev-listen-address") && i+1 < len(args) {
			readme, args[i+1] = args[i+1], anyPort
		}
	}
	s := sh.slot(readme)
	cmd := exec.Command(binary, args[1:]...) // #nosec G204 G702 -- the binary built by TestMain
	cmd.Env, cmd.Dir = env, dir
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		close(s.ready)
		return err
	}
	done := make(chan struct{})
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); close(done) }()
	sh.mu.Lock()
	sh.procs = append(sh.procs, runningProc{cmd: cmd, done: done})
	sh.mu.Unlock()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for s.addr == "" {
		select {
		case err := <-exited:
			close(s.ready)
			return err
		case <-tick.C:
			if a := listenAddrOf(cmd.Process.Pid); a != "" {
				s.addr = a
				close(s.ready)
			}
		}
	}
	return <-exited
}

// stopAll ends the servers the scripts started (SIGTERM: they shut down
// gracefully and dev mode removes its data dir).
func (sh *shellEnv) stopAll() {
	sh.mu.Lock()
	procs := slices.Clone(sh.procs)
	sh.mu.Unlock()
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	timeout := time.After(30 * time.Second)
	for _, p := range procs {
		select {
		case <-p.done:
		case <-timeout:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	if sh.t.Failed() {
		for readme, s := range sh.servers {
			sh.t.Logf("server for %s:\n%s", readme, s.out.String())
		}
	}
}

// open applies the substitutions to files the script writes.
func (sh *shellEnv) open(ctx context.Context, path string, flag int, perm os.FileMode) (io.ReadWriteCloser, error) {
	f, err := interp.DefaultOpenHandler()(ctx, path, flag, perm)
	if err != nil || flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		return f, err
	}
	return &rewritingFile{ReadWriteCloser: f, sh: sh}, nil
}

type rewritingFile struct {
	io.ReadWriteCloser
	sh  *shellEnv
	buf bytes.Buffer
}

func (w *rewritingFile) Write(p []byte) (int, error) { return w.buf.Write(p) }

func (w *rewritingFile) Close() error {
	s := w.buf.String()
	for i := 0; i+1 < len(w.sh.subst); i += 2 {
		s = strings.ReplaceAll(s, w.sh.subst[i], w.sh.subst[i+1])
	}
	_, err := io.WriteString(w.ReadWriteCloser, s)
	return errors.Join(err, w.ReadWriteCloser.Close())
}

// output returns the stdout of the first command run whose arguments
// contain all of words.
func (sh *shellEnv) output(words ...string) (ranCommand, bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, r := range sh.ran {
		ok := true
		for _, w := range words {
			ok = ok && slices.Contains(r.args, w)
		}
		if ok {
			return r, true
		}
	}
	return ranCommand{}, false
}

var tableLine = func(key string) *regexp.Regexp { return regexp.MustCompile(`(?m)^` + key + `\s+(\S+)`) }

// TestREADMEMultiNode runs the README's "Several nodes over PostgreSQL"
// example: SoftHSM2 token, certificate, node.hcl, database, two nodes,
// init; then checks that the nodes are one vault.
func TestREADMEMultiNode(t *testing.T) {
	lib, ok := softhsm.FindLibrary()
	if !ok {
		t.Fatalf("SoftHSM2 not found in %v: the README example needs it", softhsm.Libraries)
	}
	for _, tool := range []string{"softhsm2-util", "openssl", "createdb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: the README example needs it", tool)
		}
	}
	base, err := url.Parse(pgtest.BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	db := "mvtest_readme_" + hex.EncodeToString(rnd[:])
	t.Cleanup(func() { dropDatabase(t, base, db) })

	sh := newShellEnv(t)
	sh.subst = []string{
		"/moonvault?sslmode=", "/" + db + "?sslmode=",
		"127.0.0.1:5432", base.Host,
		"/usr/lib/softhsm/libsofthsm2.so", lib,
	}
	sh.fix = func(args []string, dir string) ([]string, string) {
		if filepath.Base(args[0]) == "createdb" && args[len(args)-1] == "moonvault" {
			args = []string{args[0], "-h", base.Hostname(), "-p", base.Port(), "-U", base.User.Username(), db}
		}
		return args, dir
	}
	if p, ok := base.User.Password(); ok {
		sh.env = append(sh.env, "PGPASSWORD="+p)
	}
	for i, block := range readmeBlocks(t, "### Several nodes over PostgreSQL") {
		sh.run(fmt.Sprintf("README.md multi-node block %d", i+1), block)
	}

	// Both nodes are unsealed; an account made on one is used on the other.
	init, ok := sh.output("operator", "init")
	if !ok {
		t.Fatal("the README never ran operator init")
	}
	m := regexp.MustCompile(`Root Token[^:]*:\s*(\S+)`).FindStringSubmatch(init.stdout)
	if m == nil {
		t.Fatalf("no root token in the init output:\n%s", init.stdout)
	}
	a, b := sh.slot("127.0.0.1:8200").addr, sh.slot("127.0.0.1:8201").addr
	client := httpsClient(t, filepath.Join(sh.dir, "tls.crt"))
	do := func(method, addr, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "https://"+addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+m[1])
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(raw)
	}
	for _, addr := range []string{a, b} {
		if code, body := do("GET", addr, "/v1/sys/seal-status", ""); code != 200 || !strings.Contains(body, `"sealed":false`) || !strings.Contains(body, `"type":"pkcs11"`) {
			t.Fatalf("%s seal status: %d %s", addr, code, body)
		}
	}
	code, created := do("POST", a, "/v1/accounts", `{"name":"shared"}`)
	if code != 201 {
		t.Fatalf("create on node A: %d %s", code, created)
	}
	code, got := do("GET", b, "/v1/accounts/shared", "")
	var ca, gb struct{ Address string }
	_ = json.Unmarshal([]byte(created), &ca)
	_ = json.Unmarshal([]byte(got), &gb)
	if code != 200 || ca.Address == "" || gb.Address != ca.Address {
		t.Fatalf("node B does not see node A's account: %d %s (A made %s)", code, got, created)
	}
}

func dropDatabase(t *testing.T, base *url.URL, db string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base.String())
	if err != nil {
		t.Errorf("drop %s: %v", db, err)
		return
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"); err != nil {
		t.Errorf("drop %s: %v", db, err)
	}
}

// TestREADMEQuickStart runs the README's quick start: the dev server
// (`moonvault server -dev`, what ./scripts/dev builds and execs, which
// TestScriptsDevExecsTheServer runs), then the CLI block as written, with
// the values the dev server printed; then checks
// what the commands answered: the signature and the transaction recover
// the account, and the transaction is the one the README asked for. Then
// the credentials and the chains blocks, in the same session
// (readme_cli_test.go).
func TestREADMEQuickStart(t *testing.T) {
	blocks := readmeBlocks(t, "## Quick start")
	if len(blocks) < 2 || !strings.Contains(blocks[0], "./scripts/dev") || !strings.Contains(blocks[1], "login -username admin") {
		t.Fatalf("the quick start should be ./scripts/dev, then the CLI block: %q", blocks)
	}
	sh := newShellEnv(t)
	sh.run("dev server", "moonvault server -dev -dev-listen-address 127.0.0.1:8200 &\n")
	dev := sh.slot("127.0.0.1:8200")
	select {
	case <-dev.ready:
	case <-time.After(2 * time.Minute): // a hang guard
	}
	if dev.addr == "" {
		t.Fatalf("dev server did not start:\n%s", dev.out.String())
	}
	// The server listens before it prints its banner (dev setup runs in
	// between); wait for the banner as a person would. A hang guard.
	printed := func(label string) string {
		re := regexp.MustCompile(`(?m)^\s*` + label + `:\s+(\S+)`)
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
			if m := re.FindStringSubmatch(dev.out.String()); m != nil {
				return m[1]
			}
			if time.Now().After(deadline) {
				t.Fatalf("the dev server did not print %s:\n%s", label, dev.out.String())
			}
		}
	}
	caPath := printed("TLS certificate")
	// The README's web console section names the address the banner prints.
	if got, want := printed("Web console"), "https://"+dev.addr+"/ui/"; got != want {
		t.Errorf("the dev banner prints the console at %s, want %s", got, want)
	}
	if readme, err := os.ReadFile("../../README.md"); err != nil || !strings.Contains(string(readme), "`Web console: https://127.0.0.1:8200/ui/`") {
		t.Errorf("README.md does not show the banner's console line (%v)", err)
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	// The README's placeholders for what the dev server printed.
	sh.values["..."] = printed("Admin password")
	sh.subst = []string{"/tmp/moonvault-dev-XXXX/dev-ca.pem", caPath}
	sh.fix = func(args []string, dir string) ([]string, string) {
		switch {
		case args[0] == "bin/moonvault":
			// What ./scripts/dev built in the repository: the same binary.
			args[0] = binary
		case args[0] == "go" && slices.Contains(args, "build"):
			// From the repository root, as the README says; the binary goes
			// to the test's directory.
			for i := range args {
				if args[i] == "-o" && i+1 < len(args) {
					args[i+1] = filepath.Join(dir, args[i+1])
				}
			}
			return args, repo
		}
		return args, dir
	}
	sh.run("README.md quick start block 2", blocks[1])

	created, ok := sh.output("account", "create")
	if !ok {
		t.Fatal("the quick start never created an account")
	}
	m := tableLine("address").FindStringSubmatch(created.stdout)
	if m == nil || !common.IsHexAddress(m[1]) {
		t.Fatalf("account create printed no address:\n%s", created.stdout)
	}
	account := common.HexToAddress(m[1])

	signed, ok := sh.output("account", "sign-message")
	if !ok {
		t.Fatal("the quick start never signed a message")
	}
	m = tableLine("signature").FindStringSubmatch(signed.stdout)
	if m == nil {
		t.Fatalf("sign-message printed no signature:\n%s", signed.stdout)
	}
	msg := signed.args[len(signed.args)-1]
	if got := recoverEIP191(t, []byte(msg), m[1]); got != account {
		t.Fatalf("sign-message of %q recovers %s, want %s", msg, got.Hex(), account.Hex())
	}

	txRun, ok := sh.output("account", "sign-transaction")
	if !ok {
		t.Fatal("the quick start never signed a transaction")
	}
	m = tableLine("raw_transaction").FindStringSubmatch(txRun.stdout)
	if m == nil {
		t.Fatalf("sign-transaction printed no raw_transaction:\n%s", txRun.stdout)
	}
	var tx types.Transaction
	if err := tx.UnmarshalBinary(hexutil.MustDecode(m[1])); err != nil {
		t.Fatal(err)
	}
	var asked map[string]string
	if err := json.Unmarshal([]byte(txRun.args[len(txRun.args)-1]), &asked); err != nil {
		t.Fatalf("the README's transaction: %v", err)
	}
	q := func(k string) *big.Int { return hexutil.MustDecodeBig(asked[k]) }
	if tx.ChainId().Cmp(q("chainId")) != 0 || tx.Nonce() != q("nonce").Uint64() || tx.To() == nil || *tx.To() != common.HexToAddress(asked["to"]) ||
		tx.Value().Cmp(q("value")) != 0 || tx.Gas() != q("gas").Uint64() || tx.GasFeeCap().Cmp(q("maxFeePerGas")) != 0 || tx.GasTipCap().Cmp(q("maxPriorityFeePerGas")) != 0 {
		t.Fatalf("signed transaction %s is not the README's %v", m[1], asked)
	}
	if from, err := types.Sender(types.LatestSignerForChainID(tx.ChainId()), &tx); err != nil || from != account {
		t.Fatalf("transaction sender %s (%v), want %s", from.Hex(), err, account.Hex())
	}

	status, ok := sh.output("operator", "status")
	if !ok || !tableLine("sealed").MatchString(status.stdout) || tableLine("sealed").FindStringSubmatch(status.stdout)[1] != "false" {
		t.Fatalf("operator status:\n%s", status.stdout)
	}

	// The two blocks that go on from there: credentials, then chains.
	if len(blocks) != 4 || !strings.Contains(blocks[2], "mfa enroll") || !strings.Contains(blocks[3], "wallet create") {
		t.Fatalf("the quick start should go on with the credentials and the chains blocks: %q", blocks[2:])
	}
	ph := &readmePlaceholders{t: t, sh: sh}
	sh.lookup = ph.lookup
	sh.fix = readmeFix(ph, sh.fix)
	runREADMECredentials(t, sh, blocks[2], httpsClient(t, caPath), "https://"+dev.addr, sh.values["..."], account)
	runREADMEChains(t, sh, blocks[3], ph)
}
