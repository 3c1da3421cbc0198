package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"

	"github.com/moonvault/moonvault/internal/policy"
	"github.com/moonvault/moonvault/internal/secret"
)

func TestCreateUserValidation(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.user("alice", "user")
	tests := []struct {
		name, user, pw, role string
		want                 error
		field                string
	}{
		{"ok admin", "carol.admin", string(testPassword), "admin", nil, ""},
		{"exists", "alice", string(testPassword), "user", ErrUserExists, ""},
		{"reserved", "root", string(testPassword), "admin", ErrUserExists, ""},
		{"uppercase", "Alice", string(testPassword), "user", ErrInvalidInput, "username"},
		{"leading dot", ".alice", string(testPassword), "user", ErrInvalidInput, "username"},
		{"slash", "a/b", string(testPassword), "user", ErrInvalidInput, "username"},
		{"too long", strings.Repeat("a", 65), string(testPassword), "user", ErrInvalidInput, "username"},
		{"empty", "", string(testPassword), "user", ErrInvalidInput, "username"},
		{"short password", "dave", "elevenchars", "user", ErrWeakPassword, "password"},
		{"long password", "dave", strings.Repeat("x", 1025), "user", ErrWeakPassword, "password"},
		{"12 runes multibyte", "erin", "ééééééééééé", "user", ErrWeakPassword, "password"},
		{"bad role", "dave", string(testPassword), "root", ErrInvalidInput, "role"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := e.svc.CreateUser(ctx, tt.user, secret.String(tt.pw), tt.role)
			if tt.want == nil {
				if err != nil || u.Username != tt.user || u.Role != tt.role {
					t.Fatalf("CreateUser = %+v, %v", u, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("CreateUser = %v, want %v", err, tt.want)
			}
			var ie *InvalidInputError
			if tt.field != "" && (!errors.As(err, &ie) || ie.Name != tt.field) {
				t.Fatalf("error %v does not name field %s", err, tt.field)
			}
			if strings.Contains(err.Error(), tt.pw) {
				t.Fatal("error leaks the password")
			}
		})
	}
	users, err := e.svc.ListUsers(ctx)
	if err != nil || len(users) != 2 {
		t.Fatalf("ListUsers = %v %v", users, err)
	}
	if err := e.svc.DeleteUser(ctx, "carol.admin"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.GetUser(ctx, "carol.admin"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}

func TestPasswordPHC(t *testing.T) {
	svc, err := New(Config{}, newMemKV(), newTestSealer(t), &switchReader{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	phc, err := svc.hashPassword(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(phc, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("PHC %s", phc)
	}
	if ok, err := svc.verifyPassword(phc, testPassword); !ok || err != nil {
		t.Fatalf("verify good: %v %v", ok, err)
	}
	if ok, _ := svc.verifyPassword(phc, "wrong password!!"); ok {
		t.Fatal("verify wrong password")
	}
	if _, err := svc.verifyPassword(dummyPHC, "x"); err != nil {
		t.Fatalf("dummy PHC must parse: %v", err)
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"} {
		if _, err := svc.verifyPassword(bad, "x"); err == nil {
			t.Errorf("accepted PHC %q", bad)
		}
	}
}

func TestLoginUnknownUserRunsHasher(t *testing.T) {
	e := newEnv(t, nil)
	e.user("alice", "user")
	ctx := context.Background()
	for _, in := range []LoginInput{
		{Username: "nobody", Password: testPassword},
		{Username: "alice", Password: "wrong password here"},
		{Username: "Not A Valid Name", Password: testPassword},
		{Username: "alice", Password: secret.String(strings.Repeat("x", 2000))},
	} {
		before := e.svc.hashCalls.Load()
		_, err := e.svc.Login(ctx, in)
		if !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("Login(%s) = %v", in.Username, err)
		}
		if calls := e.svc.hashCalls.Load() - before; calls != 1 {
			t.Fatalf("Login(%s) ran argon2 %d times, want 1", in.Username, calls)
		}
	}
}

func TestLoginRateLimited(t *testing.T) {
	var logs bytes.Buffer
	e := newEnv(t, nil)
	e.svc.log = slog.New(slog.NewTextHandler(&logs, nil))
	e.user("alice", "user")
	ctx := context.Background()
	bad := LoginInput{Username: "alice", Password: "not the password", RemoteAddr: "203.0.113.5:1111"}
	for i := range 10 {
		if _, err := e.svc.Login(ctx, bad); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	// The address that failed ten times is throttled for that user.
	_, err := e.svc.Login(ctx, LoginInput{Username: "alice", Password: testPassword, RemoteAddr: "203.0.113.5:2"})
	var rl *RateLimitError
	if !errors.As(err, &rl) || !errors.Is(err, ErrRateLimited) || rl.RetryAfter <= 0 || rl.RetryAfter > 15*time.Minute {
		t.Fatalf("11th attempt from the failing address = %v", err)
	}
	if !strings.Contains(logs.String(), "login throttled") || strings.Contains(logs.String(), "not the password") ||
		strings.Contains(logs.String(), string(testPassword)) {
		t.Fatalf("logs: %s", logs.String())
	}
	// Per address: spraying usernames from one address is throttled too.
	e.user("bob", "user")
	for i := range 10 {
		_, _ = e.svc.Login(ctx, LoginInput{Username: fmt.Sprintf("u%d", i), Password: "whatever12345", RemoteAddr: "203.0.113.9:1"})
	}
	if _, err := e.svc.Login(ctx, LoginInput{Username: "bob", Password: testPassword, RemoteAddr: "203.0.113.9:2"}); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("per-address limit: %v", err)
	}
	// The window passes.
	e.clock.Advance(16 * time.Minute)
	if _, err := e.svc.Login(ctx, LoginInput{Username: "alice", Password: testPassword, RemoteAddr: "203.0.113.5:1"}); err != nil {
		t.Fatalf("after window: %v", err)
	}
}

// TestLoginNoUserEnumeration: whether a name exists never changes the
// answer to a failed login, however many came before, on any node, from
// any address (review L2: the failure count shared by the nodes answered
// 429 for existing users only).
func TestLoginNoUserEnumeration(t *testing.T) {
	e := newEnv(t, nil)
	e.user("alice", "user")
	nodeB := e.start(nil)
	ctx := context.Background()
	answers := func(svc *Service, name, addr string, n int) []string {
		var out []string
		for range n {
			_, err := svc.Login(ctx, LoginInput{Username: name, Password: "not the password", RemoteAddr: addr})
			switch {
			case errors.Is(err, ErrRateLimited):
				out = append(out, "429")
			case errors.Is(err, ErrInvalidCredentials):
				out = append(out, "401")
			default:
				out = append(out, err.Error())
			}
		}
		svc.bg.Wait() // the shared count is written in the background
		return out
	}
	// Each name from its own addresses (the per-address limit counts
	// every name).
	for _, addr := range [][2]string{{"203.0.113.1", "203.0.113.101"}, {"203.0.113.2", "203.0.113.102"}, {"2001:db8::1", "2001:db8:9::1"}} {
		a, g := answers(e.svc, "alice", addr[0], 12), answers(e.svc, "ghost", addr[1], 12)
		if fmt.Sprint(a) != fmt.Sprint(g) {
			t.Fatalf("node A, from %s: an existing user gets %v, an unknown one %v", addr, a, g)
		}
	}
	// Node B has seen neither name; the count in alice's record says she
	// is under attack.
	for _, addr := range [][2]string{{"198.51.100.9", "198.51.100.109"}, {"2001:db8:1::1", "2001:db8:8::1"}} {
		if a, g := answers(nodeB, "alice", addr[0], 3), answers(nodeB, "ghost", addr[1], 3); fmt.Sprint(a) != fmt.Sprint(g) {
			t.Fatalf("node B, from %s: an existing user gets %v, an unknown one %v", addr, a, g)
		}
	}
}

// TestLoginLockoutNotRemote: failures from other addresses cannot lock a
// user (an admin) out everywhere; while the account is under attack an
// address that already failed for it gets no more real guesses.
func TestLoginLockoutNotRemote(t *testing.T) {
	e := newEnv(t, nil)
	e.user("admin1", "admin")
	ctx := context.Background()
	for i := range 12 {
		addr := fmt.Sprintf("203.0.113.%d:1", i%4)
		if _, err := e.svc.Login(ctx, LoginInput{Username: "admin1", Password: "not the password", RemoteAddr: addr}); err == nil {
			t.Fatal("a wrong password logged in")
		}
	}
	e.svc.bg.Wait()
	if _, err := e.svc.Login(ctx, LoginInput{Username: "admin1", Password: testPassword, RemoteAddr: "198.51.100.1:1"}); err != nil {
		t.Fatalf("the admin, from its own address, after failures elsewhere: %v", err)
	}
	// The attack goes on: the count is shared, and an attacking address
	// that found the password is refused like a wrong guess.
	for i := range 12 {
		_, _ = e.svc.Login(ctx, LoginInput{Username: "admin1", Password: "not the password", RemoteAddr: fmt.Sprintf("203.0.113.%d:1", i%4)})
	}
	e.svc.bg.Wait() // the shared count is written in the background
	if _, err := e.svc.Login(ctx, LoginInput{Username: "admin1", Password: testPassword, RemoteAddr: "203.0.113.1:1"}); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("an address that failed during an attack, with the right password = %v, want invalid credentials", err)
	}
	if _, err := e.svc.Login(ctx, LoginInput{Username: "admin1", Password: testPassword, RemoteAddr: "198.51.100.1:1"}); err != nil {
		t.Fatalf("the admin's own address during the attack: %v", err)
	}
}

func TestDisabledUser(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.user("alice", "user")
	tok := e.login("alice")
	_, key, err := e.svc.CreateAPIKey(ctx, "alice", "ci", []string{"*"}, []string{"*"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.AuthenticateAPIKey(ctx, key.Reveal()); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetDisabled(ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.auth(tok.AccessToken); !errors.Is(err, ErrUnauthenticated) {
		t.Fatal(err)
	}
	if _, err := e.svc.AuthenticateAPIKey(ctx, key.Reveal()); !errors.Is(err, ErrUserDisabled) {
		t.Fatal(err)
	}
	if _, err := e.svc.Login(ctx, LoginInput{Username: "alice", Password: testPassword}); !errors.Is(err, ErrUserDisabled) {
		t.Fatal(err)
	}
	if _, err := e.svc.Refresh(ctx, secret.String(tok.RefreshToken), "", ""); !errors.Is(err, ErrUnauthenticated) {
		t.Fatal(err)
	}
	if err := e.svc.SetDisabled(ctx, "alice", false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.AuthenticateAPIKey(ctx, key.Reveal()); err != nil {
		t.Fatal(err)
	}
	e.login("alice")
}

// rfc6238Secret is the SHA-1 seed of RFC 6238 Appendix B, base32.
var rfc6238Secret = b32.EncodeToString([]byte("12345678901234567890"))

func TestTOTPRFC6238Vectors(t *testing.T) {
	// RFC 6238 Appendix B, SHA-1 rows, 8 digits.
	vectors := []struct {
		unix int64
		code string
	}{
		{59, "94287082"},
		{1111111109, "07081804"},
		{1111111111, "14050471"},
		{1234567890, "89005924"},
		{2000000000, "69279037"},
		{20000000000, "65353130"},
	}
	for _, v := range vectors {
		at := time.Unix(v.unix, 0)
		step, ok := validateTOTP(v.code, rfc6238Secret, at, -1, otp.DigitsEight)
		if !ok || step != v.unix/30 {
			t.Errorf("T=%d code %s: ok=%v step=%d", v.unix, v.code, ok, step)
		}
		// Replay: the same step is refused once accepted.
		if _, ok := validateTOTP(v.code, rfc6238Secret, at, step, otp.DigitsEight); ok {
			t.Errorf("T=%d: replay accepted", v.unix)
		}
		// Outside the ±1 window.
		if _, ok := validateTOTP(v.code, rfc6238Secret, at.Add(2*time.Minute), -1, otp.DigitsEight); ok {
			t.Errorf("T=%d: accepted two minutes later", v.unix)
		}
	}
}

func enrollTOTP(t testing.TB, e *env, user string) (string, []string) {
	t.Helper()
	ctx := context.Background()
	sec, url, err := e.svc.EnrollTOTP(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(url, "otpauth://totp/") || !strings.Contains(url, "secret="+sec.Reveal()) ||
		!strings.Contains(url, "digits=6") || !strings.Contains(url, "period=30") {
		t.Fatalf("otpauth URL %s", url)
	}
	if raw, _ := b32.DecodeString(sec.Reveal()); len(raw) != 20 {
		t.Fatalf("secret of %d bytes", len(raw))
	}
	stored := e.kv.keys(prefixTOTPSecrets + user + "/")
	if len(stored) != 1 {
		t.Fatalf("TOTP secrets stored after one enrolment: %q", stored)
	}
	env, _ := e.kv.Get(ctx, stored[0])
	if len(env) == 0 || bytes.Contains(env, []byte(sec.Reveal())) || bytes.Contains(env, []byte(strings.ToLower(sec.Reveal()))) {
		t.Fatal("TOTP secret stored unwrapped")
	}
	code, _ := totpCode(sec.Reveal(), e.clock.Now())
	if _, err := e.svc.ConfirmTOTP(ctx, user, "000000"); !errors.Is(err, ErrInvalidInput) && code != "000000" {
		t.Fatalf("confirm with a wrong code: %v", err)
	}
	codes, err := e.svc.ConfirmTOTP(ctx, user, secret.String(code))
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != 10 {
		t.Fatalf("%d recovery codes", len(codes))
	}
	return sec.Reveal(), codes
}

func TestTOTPLogin(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.user("alice", "user")
	sec, codes := enrollTOTP(t, e, "alice")
	if u, _ := e.svc.GetUser(ctx, "alice"); !u.MFAEnabled {
		t.Fatal("MFA not enabled")
	}
	if _, _, err := e.svc.EnrollTOTP(ctx, "alice"); !errors.Is(err, ErrConflict) {
		t.Fatalf("re-enrol: %v", err)
	}
	in := LoginInput{Username: "alice", Password: testPassword}
	if _, err := e.svc.Login(ctx, in); !errors.Is(err, ErrMFARequired) {
		t.Fatalf("no code: %v", err)
	}
	// The confirmation code's step is used: wait for the next one.
	e.clock.Advance(30 * time.Second)
	code, _ := totpCode(sec, e.clock.Now())
	in.TOTP = secret.String(code)
	tok, err := e.svc.Login(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.auth(tok.AccessToken)
	if err != nil || !p.HasMFA() || parsedClaims(t, tok.AccessToken).ACR != "mfa" {
		t.Fatalf("principal %+v %v", p, err)
	}
	// Replay of the same code: refused.
	if _, err := e.svc.Login(ctx, in); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("replayed code: %v", err)
	}
	in.TOTP = "123456"
	if c, _ := totpCode(sec, e.clock.Now()); c != "123456" {
		if _, err := e.svc.Login(ctx, in); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("wrong code: %v", err)
		}
	}
	// Wrong password with a right code: same error as any bad login.
	e.clock.Advance(30 * time.Second)
	code, _ = totpCode(sec, e.clock.Now())
	if _, err := e.svc.Login(ctx, LoginInput{Username: "alice", Password: "wrong password!", TOTP: secret.String(code)}); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatal(err)
	}
	// A recovery code works once, in any case and with or without dashes.
	rc := strings.ToLower(strings.ReplaceAll(codes[3], "-", ""))
	in.TOTP = secret.String(rc)
	tok, err = e.svc.Login(ctx, in)
	if err != nil {
		t.Fatalf("recovery code: %v", err)
	}
	if p, _ := e.auth(tok.AccessToken); !p.HasMFA() {
		t.Fatal("recovery login lacks MFA")
	}
	if _, err := e.svc.Login(ctx, in); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("recovery code reused: %v", err)
	}
	if err := e.svc.DisableTOTP(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if len(e.kv.keys(prefixTOTP)) != 0 {
		t.Fatal("TOTP secret left behind")
	}
	e.login("alice")
}

func TestStepUp(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.user("alice", "user")
	_, _, tok := e.totpLogin("alice")
	rules := policy.Rules{}
	p, _ := e.auth(tok.AccessToken)
	if err := rules.Authorize(p, policy.ActionAccountImport, nil, e.clock.Now()); err != nil {
		t.Fatalf("fresh MFA import: %v", err)
	}
	// Refresh keeps auth_time: after 11 minutes the step-up is stale.
	e.clock.Advance(11 * time.Minute)
	tok, err := e.svc.Refresh(ctx, secret.String(tok.RefreshToken), "", "")
	if err != nil {
		t.Fatal(err)
	}
	p, _ = e.auth(tok.AccessToken)
	if err := rules.Authorize(p, policy.ActionAccountImport, nil, e.clock.Now()); !errors.Is(err, policy.ErrStepUpRequired) {
		t.Fatalf("stale MFA import: %v", err)
	}
	if err := rules.Authorize(p, policy.ActionSign, &policy.Resource{Owner: "alice", Name: "a"}, e.clock.Now()); err != nil {
		t.Fatalf("sign: %v", err)
	}
	// Password only: never enough.
	e.user("bob", "user")
	pb, _ := e.auth(e.login("bob").AccessToken)
	if err := rules.Authorize(pb, policy.ActionAPIKeyCreate, &policy.Resource{Owner: "bob"}, e.clock.Now()); !errors.Is(err, policy.ErrStepUpRequired) {
		t.Fatal(err)
	}
}

func TestAPIKeys(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.user("alice", "user")
	e.user("bob", "user")
	id, key, err := e.svc.CreateAPIKey(ctx, "alice", "ci signer", []string{"account.sign", "account.read"}, []string{"hot"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key.Reveal(), "mvk_"+id+".") {
		t.Fatalf("key format %s", key.Reveal())
	}
	stored, _ := e.kv.Get(ctx, prefixAPIKeys+id)
	if bytes.Contains(stored, []byte(strings.SplitN(key.Reveal(), ".", 2)[1])) {
		t.Fatal("secret stored in clear")
	}
	p, err := e.svc.AuthenticateAPIKey(ctx, key.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	if p.APIKeyID != id || p.Owner != "alice" || p.Subject != "apikey:"+id || p.SessionID != "" || len(p.Actions) != 2 || p.Accounts[0] != "hot" {
		t.Fatalf("principal %+v", p)
	}
	rules := policy.Rules{}
	if err := rules.Authorize(p, policy.ActionSign, &policy.Resource{Owner: "alice", Name: "hot"}, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if err := rules.Authorize(p, policy.ActionSign, &policy.Resource{Owner: "alice", Name: "cold"}, e.clock.Now()); !errors.Is(err, policy.ErrDenied) {
		t.Fatal(err)
	}
	if err := e.svc.Logout(ctx, p); !errors.Is(err, ErrInvalidInput) {
		t.Fatal(err)
	}
	// Wrong secret with a real id; garbage; other prefix.
	wrong := "mvk_" + id + ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	for _, bad := range []string{wrong, "", "mvk_", "mvk_" + id, "xyz", strings.Repeat("a", 300)} {
		if _, err := e.svc.AuthenticateAPIKey(ctx, bad); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("AuthenticateAPIKey(%q) = %v", bad, err)
		}
	}
	keys, err := e.svc.ListAPIKeys(ctx, "alice")
	if err != nil || len(keys) != 1 || keys[0].Name != "ci signer" {
		t.Fatalf("list %v %v", keys, err)
	}
	if k, _ := e.svc.ListAPIKeys(ctx, "bob"); len(k) != 0 {
		t.Fatal("bob sees alice's key")
	}
	if err := e.svc.RevokeAPIKey(ctx, "bob", id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bob revokes alice's key: %v", err)
	}
	if err := e.svc.RevokeAPIKey(ctx, "alice", id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.AuthenticateAPIKey(ctx, key.Reveal()); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("revoked key: %v", err)
	}
	// Scope validation names the field.
	for _, c := range []struct {
		name              string
		actions, accounts []string
		field             string
	}{
		{"ok", nil, []string{"*"}, "actions"},
		{"ok", []string{"user.manage"}, []string{"*"}, "actions"},
		{"ok", []string{"sys"}, []string{"*"}, "actions"},
		{"ok", []string{"apikey.create"}, []string{"*"}, "actions"},
		{"ok", []string{"*"}, nil, "accounts"},
		{"ok", []string{"*"}, []string{"a/b"}, "accounts"},
		{"", []string{"*"}, []string{"*"}, "name"},
	} {
		_, _, err := e.svc.CreateAPIKey(ctx, "alice", c.name, c.actions, c.accounts)
		var ie *InvalidInputError
		if !errors.As(err, &ie) || ie.Name != c.field {
			t.Errorf("CreateAPIKey(%v, %v) = %v, want field %s", c.actions, c.accounts, err, c.field)
		}
	}
	if _, _, err := e.svc.CreateAPIKey(ctx, "nobody", "k", []string{"*"}, []string{"*"}); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	// Deleting the owner removes its keys.
	_, key2, _ := e.svc.CreateAPIKey(ctx, "bob", "k", []string{"*"}, []string{"*"})
	if err := e.svc.DeleteUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.AuthenticateAPIKey(ctx, key2.Reveal()); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("key of deleted user: %v", err)
	}
}
