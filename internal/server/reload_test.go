package server

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/config"
)

// eventually retries cond until it holds; cross-node changes arrive by
// NOTIFY or are read on demand, so B may need a moment.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen on the second node within 10 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSecondNodePicksUpChanges: users, accounts, the keyring and the JWT
// signing keys made or changed on node A are used on node B without a
// restart (one PostgreSQL, one HSM key). Policies arrive with the policy
// engine (issue 16) and are read from the same storage.
func TestSecondNodePicksUpChanges(t *testing.T) {
	a, b, root := newPGCluster(t).twoNodes(t)

	// A user made on A logs in on B; an account made on A signs on B.
	carol := populate(t, a, root, "carol", 1)
	eventually(t, "user created on A", func() bool {
		return b.callTok("", "POST", "/v1/auth/login", map[string]string{"username": "carol", "password": testPW}, nil) == 200
	})
	checkSigns(t, b, carol)

	// The keyring rotated on A: B reads what A writes with the new term.
	a.token = root
	a.mustCall(200, "POST", "/v1/sys/rotate", nil, nil)
	a.token = login(t, a, "carol", testPW)
	var acc account
	a.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "after-rotate"}, &acc)
	carol.addrs[acc.Name] = acc.Address
	checkSigns(t, b, carol)

	// JWT keys rotated on A: a token signed with the new key works on B.
	a.token = root
	a.mustCall(204, "POST", "/v1/auth/keys/rotate", nil, nil)
	fresh := login(t, a, "carol", testPW)
	eventually(t, "JWT key rotated on A", func() bool { return b.callTok(fresh, "GET", "/v1/accounts", nil, nil) == 200 })

	// A user disabled on A can no longer log in or use a session on B.
	a.token = root
	a.mustCall(204, "POST", "/v1/users/carol/disable", nil, nil)
	eventually(t, "user disabled on A", func() bool {
		return b.callTok("", "POST", "/v1/auth/login", map[string]string{"username": "carol", "password": testPW}, nil) != 200 &&
			b.callTok(fresh, "GET", "/v1/accounts", nil, nil) == 401
	})
}

// TestReloadConfig: the settings that can change safely are applied to a
// running node; the others are named as needing a restart; an invalid
// configuration changes nothing.
func TestReloadConfig(t *testing.T) {
	level := new(slog.LevelVar)
	audit := t.TempDir() + "/audit.log"
	tn := startNode(t, t.TempDir(), nodeOpts{mutate: func(c *config.Server) { c.AuditFile = audit }})
	tn.node.opts.LogLevel = level
	root := initShamir(t, tn)
	tn.token = root
	big := `{"username":"` + strings.Repeat("u", 3000) + `","password":"x"}`
	if got := tn.call("POST", "/v1/users", big, nil); got == 413 {
		t.Fatal("3 kB refused before the limit was lowered")
	}

	next := tn.node.settings
	next.LogLevel = "debug"
	next.MaxRequestBytes = 2048
	next.AuditMaxBytes = 4096
	next.ListenAddress = "127.0.0.1:1"
	applied, restart, err := tn.node.ReloadConfig(next)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(applied, ",") != "audit_max_bytes,log_level,max_request_bytes" || strings.Join(restart, ",") != "listen_address" {
		t.Fatalf("applied %v, restart %v", applied, restart)
	}
	if level.Level() != slog.LevelDebug {
		t.Fatalf("log level %v after reload", level.Level())
	}
	if got := tn.call("POST", "/v1/users", big, nil); got != 413 {
		t.Fatalf("3 kB body after lowering max_request_bytes to 2 kB: %d, want 413", got)
	}

	bad := tn.node.settings
	bad.MaxRequestBytes = -1
	bad.LogLevel = "error"
	if _, _, err := tn.node.ReloadConfig(bad); err == nil {
		t.Fatal("an invalid configuration was applied")
	}
	if level.Level() != slog.LevelDebug {
		t.Fatal("an invalid reload changed the log level")
	}
	// The audit file now rotates at 4 kB.
	for range 20 {
		tn.call("GET", "/v1/auth/sessions", nil, nil)
	}
	if rotated, _ := filepath.Glob(audit + ".*"); len(rotated) == 0 {
		t.Fatal("the audit file did not rotate at the reloaded audit_max_bytes")
	}
}
