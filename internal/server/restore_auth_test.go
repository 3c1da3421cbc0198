package server

import (
	"strings"
	"testing"

	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/hsm/hsmtest"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/postgres/pgtest"
)

// restoreInto brings snap into the new node dst the documented way: init
// dst (it gets its own root token, which counts as step-up for minutes),
// unseal it when it uses the Shamir seal, then restore with force (the
// snapshot is another vault's). It returns the restore's answer.
func restoreInto(t testing.TB, dst *testNode, snap []byte, shamir bool) string {
	t.Helper()
	root := ""
	if shamir {
		root = initShamir(t, dst)
	} else {
		root = initHSM(t, dst)
	}
	code, body := dst.restore(root, snap, "?force=true")
	if code != 200 {
		t.Fatalf("restore into the new vault: %d %s", code, body)
	}
	return body
}

// TestRestoreNeedsAnInitialisedVault: there is no unauthenticated restore.
// A node that is not initialised refuses a restore, however genuine the
// snapshot (review H1: an attacker's upload, begun while the storage was
// empty, finished after the operator initialised the vault elsewhere and
// replaced it), and stays new.
func TestRestoreNeedsAnInitialisedVault(t *testing.T) {
	hc := hsmtest.NewToken(t)
	src := startNode(t, t.TempDir(), nodeOpts{mutate: withBoltHSM(hc)})
	root := initHSM(t, src)
	populate(t, src, root, "alice", 1)
	snap := src.snapshot(root)

	fresh := startNode(t, t.TempDir(), nodeOpts{mutate: withPostgres(pgtest.NewDatabase(t), hc)})
	for _, q := range []string{"", "?force=true"} {
		var e apiErr
		code, body := fresh.restore("", snap, q)
		_ = jsonUnmarshal(body, &e)
		if code != 503 || e.Error.Code != "sealed" {
			t.Fatalf("an unauthenticated restore%s into a new vault: %d %s; want 503 sealed (as every data route before init)", q, code, body)
		}
	}
	if got := fresh.call("GET", "/v1/sys/health", nil, nil); got != 501 {
		t.Fatalf("the new vault changed after refused restores: health %d", got)
	}
}

// TestRestoreNeedsStepUpAndForce: over a vault in use a restore needs an
// admin with a recent second factor (or a root token minutes old, made
// from the unseal or recovery shares), and force for a snapshot of
// another vault or an older state of this one (review M4, rollback).
func TestRestoreNeedsStepUpAndForce(t *testing.T) {
	hc := hsmtest.NewToken(t)
	tn := startNode(t, t.TempDir(), nodeOpts{mutate: withBoltHSM(hc)})
	root := initHSM(t, tn)
	alice := populate(t, tn, root, "alice", 1)
	own := tn.snapshot(root)
	tn.token = root
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "after-snapshot"}, nil)

	other := startNode(t, t.TempDir(), nodeOpts{mutate: withBoltHSM(hc)})
	otherRoot := initHSM(t, other)
	foreign := other.snapshot(otherRoot)

	// An admin who logged in with a password only.
	tn.token = root
	tn.mustCall(201, "POST", "/v1/users", map[string]string{"username": "ops", "password": testPW, "role": "admin"}, nil)
	ops := login(t, tn, "ops", testPW)
	var e apiErr
	for _, snap := range [][]byte{own, foreign} {
		code, body := tn.restore(ops, snap, "?force=true")
		_ = jsonUnmarshal(body, &e)
		if code != 403 || e.Error.Code != "mfa_required" {
			t.Fatalf("restore by an admin without step-up: %d %s; want 403 mfa_required", code, body)
		}
	}
	// Without force: a rollback and a foreign snapshot are refused, naming
	// what the restore would do.
	code, body := tn.restore(root, own, "")
	_ = jsonUnmarshal(body, &e)
	if code != 409 || e.Error.Code != "snapshot_rollback" || !strings.Contains(e.Error.Message, "revoked") {
		t.Fatalf("rollback without force: %d %s", code, body)
	}
	code, body = tn.restore(root, foreign, "")
	_ = jsonUnmarshal(body, &e)
	if code != 409 || e.Error.Code != "snapshot_from_other_vault" {
		t.Fatalf("foreign snapshot without force: %d %s", code, body)
	}
	tn.token = root
	tn.mustCall(200, "GET", "/v1/accounts/after-snapshot", nil, nil)

	// Root, minutes old, with force: the vault rolls back, and keeps the
	// replaced data.
	if code, body := tn.restore(root, own, "?force=true"); code != 200 || !strings.Contains(body, `"rollback":true`) || !strings.Contains(body, `"replaced_copy"`) {
		t.Fatalf("forced rollback: %d %s", code, body)
	}
	waitUnsealed(t, tn)
	checkSigns(t, tn, alice)
	tn.token = root
	if got := tn.call("GET", "/v1/accounts/after-snapshot", nil, nil); got != 404 {
		t.Fatalf("an account made after the snapshot survived the rollback: %d", got)
	}
	copies, err := tn.node.store.(storage.Restorer).ReplacedCopies(t.Context())
	if err != nil || len(copies) != 1 {
		t.Fatalf("replaced copies after one restore: %v %v", copies, err)
	}
}

// TestRestoreRechecksAtCommit: a restore is authorised against the vault
// as it was when it began; if another node changes that vault while the
// snapshot uploads (here: rotates its keyring; equally a restore or a new
// initialisation), the switch refuses and nothing changes.
func TestRestoreRechecksAtCommit(t *testing.T) {
	a, b, root := newPGCluster(t).twoNodes(t)
	populate(t, a, root, "alice", 1)
	snap := a.snapshot(root)
	a.token = root
	a.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "after-snapshot"}, nil)

	a.node.testRestoreStaged = func() {
		b.token = root
		b.mustCall(200, "POST", "/v1/sys/rotate", nil, nil)
	}
	var e apiErr
	code, body := a.restore(root, snap, "?force=true")
	a.node.testRestoreStaged = nil
	_ = jsonUnmarshal(body, &e)
	if code != 409 || e.Error.Code != "vault_changed" {
		t.Fatalf("restore over a vault changed meanwhile: %d %s; want 409 vault_changed", code, body)
	}
	waitUnsealed(t, a)
	a.token = root
	a.mustCall(200, "GET", "/v1/accounts/after-snapshot", nil, nil)
	copies, err := a.node.store.(storage.Restorer).ReplacedCopies(t.Context())
	if err != nil || len(copies) != 0 {
		t.Fatalf("a refused restore kept a copy: %v %v", copies, err)
	}
}

// TestRestoreRetentionAndLimits: replaced copies older than
// restore_retention go at the next restore; an upload over
// restore_max_bytes is refused with 413 and changes nothing.
func TestRestoreRetentionAndLimits(t *testing.T) {
	hc := hsmtest.NewToken(t)
	tn := startNode(t, t.TempDir(), nodeOpts{mutate: func(c *config.Server) {
		withBoltHSM(hc)(c)
		c.RestoreRetention = "1ns"
	}})
	root := initHSM(t, tn)
	snap := tn.snapshot(root)
	for range 2 {
		if code, body := tn.restore(root, snap, "?force=true"); code != 200 {
			t.Fatalf("restore: %d %s", code, body)
		}
		waitUnsealed(t, tn)
	}
	copies, err := tn.node.store.(storage.Restorer).ReplacedCopies(t.Context())
	if err != nil || len(copies) != 1 {
		t.Fatalf("with a retention of 1ns, copies after two restores: %v %v; want only the last", copies, err)
	}

	small := startNode(t, t.TempDir(), nodeOpts{mutate: func(c *config.Server) {
		withBoltHSM(hc)(c)
		c.RestoreMaxBytes = int64(len(snap) - 1)
	}})
	sroot := initHSM(t, small)
	var e apiErr
	code, body := small.restore(sroot, snap, "?force=true")
	_ = jsonUnmarshal(body, &e)
	if code != 413 || e.Error.Code != "payload_too_large" {
		t.Fatalf("restore over restore_max_bytes: %d %s", code, body)
	}
	if got := small.call("GET", "/v1/sys/health", nil, nil); got != 200 {
		t.Fatalf("a refused upload sealed the vault: health %d", got)
	}
}
