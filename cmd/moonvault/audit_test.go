package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// runCLI runs the binary and returns stdout, stderr and the exit code.
func runCLI(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(append(os.Environ(), "HOME="+t.TempDir()), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return stdout.String(), stderr.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), 0
}

var seqRe = regexp.MustCompile(`^\{"seq":(\d+),"prev":"([0-9a-f]{64})","type":"([a-z]+)"`)

// forge edits the first request line from line index `from` on (replacing
// old with new), recomputes the hash chain after it and replaces every later
// checkpoint with an unsigned one: an insider without the signing key.
func forge(t *testing.T, log []byte, from int, old, new string) []byte {
	t.Helper()
	lines := strings.SplitAfter(strings.TrimSuffix(string(log), "\n"), "\n")
	var out []string
	var prev [32]byte
	edited := false
	for i, l := range lines {
		l = strings.TrimSuffix(l, "\n")
		m := seqRe.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line %d is not an audit line: %q", i+1, l)
		}
		if i >= from && !edited && m[3] == "request" && strings.Contains(l, old) {
			l = strings.Replace(l, old, new, 1)
			edited = true
		} else if edited {
			if m[3] == "checkpoint" {
				l = fmt.Sprintf(`{"seq":%s,"prev":"%s","type":"checkpoint","key_id":"","sig":""}`, m[1], hex.EncodeToString(prev[:]))
			} else {
				l = strings.Replace(l, `"prev":"`+m[2]+`"`, `"prev":"`+hex.EncodeToString(prev[:])+`"`, 1)
			}
		}
		prev = sha256.Sum256([]byte(l))
		out = append(out, l+"\n")
	}
	if !edited {
		t.Fatalf("no request line after line %d holds %q", from, old)
	}
	return []byte(strings.Join(out, ""))
}

// TestAuditVerifyCLI runs `moonvault audit verify` as a user does, against
// a real server's log: it must exit 0 only for an intact, fully verified
// log, 1 for a tampered, forged or truncated one, and 3 for an intact log
// it cannot vouch for; a CLI that ignored the verification error fails here
// (issue 21, mutation 8; issue 13 item 1).
func TestAuditVerifyCLI(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTLS(t, t.TempDir())
	// No audit setting: audit.log in the data directory (on by default).
	sp := startServer(t, anyPort, cert, nil, "-listen-address", anyPort, "-data-dir", dir, "-tls-cert-file", cert, "-tls-key-file", key)
	addr := sp.addr
	out, _ := sp.cli(nil, "operator", "init", "-key-shares", "1", "-key-threshold", "1", "-format", "json")
	var ir struct {
		Keys      []string `json:"unseal_keys_b64"`
		RootToken string   `json:"root_token"`
	}
	if err := json.Unmarshal([]byte(out), &ir); err != nil || len(ir.Keys) != 1 {
		t.Fatalf("init: %q %v", out, err)
	}
	sp.cli(nil, "operator", "unseal", ir.Keys[0])
	env := []string{"MOONVAULT_ADDR=https://" + addr, "MOONVAULT_CACERT=" + cert, "MOONVAULT_TOKEN=" + ir.RootToken}
	for _, name := range []string{"alpha", "beta", "gamma"} {
		if _, code := sp.cli(env[2:], "account", "create", name); code != 0 {
			t.Fatalf("account create %s: exit %d", name, code)
		}
		if _, code := sp.cli(env[2:], "account", "sign-message", name, "hello "+name); code != 0 {
			t.Fatalf("sign-message %s: exit %d", name, code)
		}
	}
	logPath := filepath.Join(dir, "audit.log")
	copyLog := func(name string, data []byte) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mustVerify := func(wantCode int, wantErr string, args ...string) string {
		t.Helper()
		stdout, stderr, code := runCLI(t, env, append([]string{"audit", "verify"}, args...)...)
		if code != wantCode || !strings.Contains(stderr, wantErr) {
			t.Fatalf("audit verify %s: exit %d, want %d with %q\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, wantErr, stdout, stderr)
		}
		return stdout
	}

	// Live server: -fetch-key brings the trusted key and the head anchor.
	// The CLI's own request is recorded before it gets its answer, so the
	// file ends at a batch boundary when each command returns.
	readLive := func() []byte {
		t.Helper()
		b, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mustVerify(0, "", "-fetch-key", copyLog("live.log", readLive()))
	forgedLive := forge(t, readLive(), 0, `"operation":"accounts.create"`, `"operation":"accounts.get"`)
	mustVerify(1, "does not match the anchor", "-fetch-key", copyLog("forged-live.log", forgedLive))
	// A copy cut short of the server's head (its last batch removed).
	live := readLive()
	cut := live[:bytes.LastIndex(live[:len(live)-1], []byte("\n"))+1]
	mustVerify(1, "truncated", "-fetch-key", copyLog("cut-live.log", cut))

	var pk struct {
		KeyID     string `json:"key_id"`
		PublicKey string `json:"public_key"`
		HeadSeq   uint64 `json:"head_seq"`
		HeadHash  string `json:"head_hash"`
	}
	resp, err := sp.client.Get("https://" + addr + "/v1/sys/audit/public-key")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(resp.Body).Decode(&pk); err != nil || pk.PublicKey == "" {
		t.Fatalf("public key: %+v %v", pk, err)
	}
	resp.Body.Close()
	sp.stop(syscall.SIGTERM) // the final checkpoint is signed before the keys go

	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	pub := "-public-key=" + pk.KeyID + ":" + pk.PublicKey
	minSeq := "-min-seq=" + strconv.FormatUint(pk.HeadSeq, 10)
	minHash := "-min-hash=" + pk.HeadHash
	good := copyLog("good.log", data)

	out = mustVerify(0, "", pub, minSeq, minHash, good)
	if !strings.Contains(out, "CoveredSeq") {
		t.Fatalf("no report printed: %s", out)
	}
	mustVerify(0, "no anchor", pub, good)
	// Without a trusted key the log's own key proves nothing: exit 3.
	mustVerify(3, "no trusted key was given", good)

	// Tampered: one field edited, nothing recomputed.
	tampered := bytes.Replace(data, []byte(`"operation":"accounts.sign_message"`), []byte(`"operation":"accounts.sign_messagX"`), 1)
	mustVerify(1, "NOT intact", pub, copyLog("tampered.log", tampered))

	// Forged: edited, chain recomputed, later checkpoints unsigned. Against
	// the key alone it is reported unverified (exit 3); against the head
	// hash it fails outright.
	forged := forge(t, data, 0, `"operation":"accounts.create"`, `"operation":"accounts.get"`)
	f := copyLog("forged.log", forged)
	mustVerify(3, "covered by no checkpoint signed by a trusted key", pub, minSeq, f)
	mustVerify(1, "does not match the anchor", pub, minSeq, minHash, f)

	// Truncated mid-line, and cut exactly after a checkpoint before the head.
	mustVerify(1, "does not end with a checkpoint", pub, copyLog("torn.log", data[:len(data)-20]))
	lines := bytes.SplitAfter(data, []byte("\n"))
	var boundary []byte
	for i := len(lines) - 1; i > 0; i-- {
		prefix := bytes.Join(lines[:i], nil)
		if bytes.Contains(lines[i-1], []byte(`"type":"checkpoint"`)) && i < int(pk.HeadSeq) {
			boundary = prefix
			break
		}
	}
	if boundary == nil {
		t.Fatal("no checkpoint before the head")
	}
	mustVerify(1, "truncated", pub, minSeq, copyLog("boundary.log", boundary))

	// Bad flags are usage errors (exit 2).
	mustVerify(2, "-min-hash needs -min-seq", pub, minHash, good)
	mustVerify(2, "-public-key must be hex", "-public-key=zz", good)
}
