package approval

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/bolt"
	"github.com/moonvault/moonvault/internal/storage/postgres"
	"github.com/moonvault/moonvault/internal/storage/postgres/pgtest"
)

// memKV is an in-memory Storage whose Update holds one mutex.
type memKV struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newMemKV() *memKV { return &memKV{m: map[string][]byte{}} }

func (k *memKV) Get(_ context.Context, key string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[key]
	if !ok {
		return nil, fmt.Errorf("memkv %q: %w", key, storage.ErrNotFound)
	}
	return bytes.Clone(v), nil
}

func (k *memKV) Put(_ context.Context, key string, v []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.m[key] = bytes.Clone(v)
	return nil
}

func (k *memKV) Delete(_ context.Context, key string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, key)
	return nil
}

func (k *memKV) List(_ context.Context, prefix, after string, limit int) ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for key := range k.m {
		if strings.HasPrefix(key, prefix) && (after == "" || key > after) {
			out = append(out, key)
		}
	}
	slices.Sort(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (k *memKV) Update(_ context.Context, key string, fn func([]byte, bool) ([]byte, bool, error)) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	cur, found := k.m[key]
	next, del, err := fn(bytes.Clone(cur), found)
	switch {
	case err != nil:
		return err
	case del:
		delete(k.m, key)
	default:
		k.m[key] = bytes.Clone(next)
	}
	return nil
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

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

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

// twoNodes returns two barriers over one real storage backend.
func twoNodes(t testing.TB, backend string) (*barrier.Barrier, *barrier.Barrier) {
	t.Helper()
	var sa, sb storage.Backend
	switch backend {
	case "bolt":
		db, err := bolt.Open(filepath.Join(t.TempDir(), "vault.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		sa, sb = db, db
	case "postgres":
		url := pgtest.NewDatabase(t)
		for _, p := range []*storage.Backend{&sa, &sb} {
			pg, err := postgres.Open(context.Background(), url, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = pg.Close() })
			*p = pg
		}
	}
	root := make(secret.Bytes, 32)
	if _, err := rand.Read(root); err != nil {
		t.Fatal(err)
	}
	a := barrier.New(sa, barrier.Options{Rand: rand.Reader})
	if err := a.Initialize(context.Background(), root, nil); err != nil {
		t.Fatal(err)
	}
	out := [2]*barrier.Barrier{a, barrier.New(sb, barrier.Options{Rand: rand.Reader})}
	for _, b := range out {
		if err := b.Unseal(context.Background(), root, nil); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Seal)
	}
	return out[0], out[1]
}
