package approval

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/barrier/barriertest"
	"github.com/moonvault/moonvault/internal/fakeclock"
	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/storage/inmem"
)

// memKV is the in-memory storage backend, with a look at every record.
type memKV struct{ *inmem.Backend }

func newMemKV() *memKV { return &memKV{inmem.New()} }

// all returns every record, for tests that look for what was left behind.
func (k *memKV) all(t testing.TB) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	keys, err := k.List(ctx, "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string][]byte, len(keys))
	for _, key := range keys {
		if out[key], err = k.Get(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// fakeDir is the user directory of the tests: every name exists with a
// second factor unless listed otherwise; admins are listed.
type fakeDir struct {
	mu                       sync.Mutex
	admins                   map[string]bool
	missing, noMFA, disabled map[string]bool
}

func newFakeDir() *fakeDir {
	return &fakeDir{admins: map[string]bool{"root-admin": true, "ada": true, "grace": true, "mallory": true, "a": true},
		missing: map[string]bool{}, noMFA: map[string]bool{}, disabled: map[string]bool{}}
}

func (d *fakeDir) Members(_ context.Context, names []string) ([]Member, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if names == nil {
		for n := range d.admins {
			names = append(names, n)
		}
	}
	var out []Member
	for _, n := range names {
		if !d.missing[n] {
			out = append(out, Member{Name: n, Admin: d.admins[n], MFA: !d.noMFA[n], Disabled: d.disabled[n]})
		}
	}
	return out, nil
}

func (d *fakeDir) set(f func(d *fakeDir)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

func newClock() *fakeclock.Clock { return fakeclock.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)) }

// user is a principal who logged in with a password and a TOTP code at
// authTime.
func user(name string, authTime time.Time) *identity.Principal {
	return &identity.Principal{Subject: name, Owner: name, Role: identity.RoleUser,
		AMR: []string{"pwd", "otp"}, AuthTime: authTime, SessionID: "sid-" + name}
}

func admin(name string, authTime time.Time) *identity.Principal {
	p := user(name, authTime)
	p.Role = identity.RoleAdmin
	return p
}

func apiKey(owner string) *identity.Principal {
	return &identity.Principal{Subject: "apikey:0123456789abcdef0123456789abcdef", APIKeyID: "0123456789abcdef0123456789abcdef",
		Owner: owner, Role: identity.RoleUser, AMR: []string{"apikey"}}
}

// twoNodes returns two barriers ("nodes") over one real storage backend.
func twoNodes(t testing.TB, backend string) (*barrier.Barrier, *barrier.Barrier) {
	n := barriertest.Nodes(t, backend, 2)
	return n[0], n[1]
}
