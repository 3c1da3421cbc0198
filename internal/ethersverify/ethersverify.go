// Package ethersverify lets tests check what the vault signed with ethers
// v6 in Node.js: an Ethereum implementation independent of the
// go-ethereum code that signs, so that a signature both accept is what
// wallets and nodes accept. It recovers the signer of a transaction, an
// EIP-191 message or EIP-712 typed data.
//
// The Node.js package lives in testdata/ethers (package.json and its
// lock file are committed; `npm ci` there installs it, as scripts/test
// does, and New does it when node_modules is missing). Without node or
// ethers a test is skipped, except with CI=true, where it fails: in CI
// the check must run.
package ethersverify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/moonvault/moonvault/internal/testdeps"
)

// Verifier runs verify.mjs with node.
type Verifier struct {
	node string
	dir  string
}

// Dir is the folder of package.json, package-lock.json and verify.mjs.
func Dir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return filepath.Join("internal", "ethersverify", "testdata", "ethers")
	}
	return filepath.Join(filepath.Dir(file), "testdata", "ethers")
}

var (
	installOnce sync.Once
	installErr  error
)

// New returns a Verifier, installing ethers with `npm ci` first when it is
// missing. When node or ethers cannot be had it skips t, or fails it with
// CI=true.
func New(t testing.TB) *Verifier {
	t.Helper()
	v, err := find()
	if err != nil {
		testdeps.Missing(t, "ethersverify: %v", err)
	}
	return v
}

func find() (*Verifier, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, errors.New("node (Node.js 18 or later) is not installed")
	}
	dir := Dir()
	installOnce.Do(func() { installErr = install(dir) })
	if installErr != nil {
		return nil, installErr
	}
	return &Verifier{node: node, dir: dir}, nil
}

// install runs `npm ci` in dir when ethers is missing, under a file lock
// (test binaries of several packages may start at once).
func install(dir string) error {
	marker := filepath.Join(dir, "node_modules", "ethers", "package.json")
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return fmt.Errorf("ethers is not installed in %s and npm is missing (run npm ci there)", dir)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".install.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()
	if _, err := os.Stat(marker); err == nil {
		return nil // another process installed it meanwhile
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("npm ci in %s: %v: %s", dir, err, bytes.TrimSpace(out))
	}
	return nil
}

// run sends one request to verify.mjs and decodes its answer into out.
func (v *Verifier) run(t testing.TB, req any, out any) {
	t.Helper()
	in, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, v.node, filepath.Join(v.dir, "verify.mjs")) // #nosec G204 -- our own script
	cmd.Dir = v.dir
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var fail struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(stdout.Bytes(), &fail) == nil && fail.Error != "" {
		t.Fatalf("ethers refused it: %s", fail.Error)
	}
	if runErr != nil {
		t.Fatalf("ethersverify: node: %v: %s", runErr, bytes.TrimSpace(stderr.Bytes()))
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		t.Fatalf("ethersverify: answer %q: %v", stdout.Bytes(), err)
	}
}

// Transaction is a signed transaction as ethers decodes it.
type Transaction struct {
	From    string `json:"from"` // the recovered sender, EIP-55
	Hash    string `json:"hash"`
	ChainID string `json:"chainId"` // decimal
	To      string `json:"to"`
	Value   string `json:"value"` // decimal wei
	Type    int    `json:"type"`
	Nonce   uint64 `json:"nonce"`
}

// Transaction decodes a signed raw transaction (0x-hex) and recovers its
// sender; a transaction ethers refuses fails t.
func (v *Verifier) Transaction(t testing.TB, raw string) Transaction {
	t.Helper()
	var out Transaction
	v.run(t, map[string]string{"op": "transaction", "raw": raw}, &out)
	return out
}

// MessageSigner recovers the signer of an EIP-191 personal message.
func (v *Verifier) MessageSigner(t testing.TB, message []byte, signature string) string {
	t.Helper()
	var out struct {
		From string `json:"from"`
	}
	v.run(t, map[string]string{"op": "message", "message": hexutil.Encode(message), "signature": signature}, &out)
	return out.From
}

// TypedDataSigner recovers the signer of EIP-712 typed data (the JSON
// document with types, primaryType, domain and message) and returns it
// with the hash ethers computed.
func (v *Verifier) TypedDataSigner(t testing.TB, typedData json.RawMessage, signature string) (from, hash string) {
	t.Helper()
	var out struct {
		From string `json:"from"`
		Hash string `json:"hash"`
	}
	v.run(t, map[string]any{"op": "typed_data", "typed_data": typedData, "signature": signature}, &out)
	return out.From, out.Hash
}
