package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/moonvault/moonvault/internal/entropy"
)

// parsedClaims decodes a token's claims without verification (test only).
func parsedClaims(t *testing.T, tok string) accessClaims {
	t.Helper()
	var c accessClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) signerKey() (string, ed25519.PrivateKey) {
	e.svc.keysMu.RLock()
	defer e.svc.keysMu.RUnlock()
	return e.svc.signer.kid, e.svc.signer.priv
}

func sign(t *testing.T, m jwt.SigningMethod, c jwt.Claims, hdr map[string]any, key any) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	for k, v := range hdr {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAccessTokenShape(t *testing.T) {
	e := newEnv(t, nil)
	e.user("alice", "user")
	tok := e.login("alice")
	if tok.TokenType != "Bearer" || tok.ExpiresIn != 300 || tok.RefreshToken == "" {
		t.Fatalf("tokens = %+v", tok)
	}
	p, _, err := jwt.NewParser().ParseUnverified(tok.AccessToken, &accessClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := e.signerKey()
	if p.Header["alg"] != "EdDSA" || p.Header["typ"] != "at+jwt" || p.Header["kid"] != kid {
		t.Fatalf("header = %v", p.Header)
	}
	c := parsedClaims(t, tok.AccessToken)
	if c.Issuer != "moonvault" || c.Audience[0] != "moonvault-api" || c.Subject != "alice" || c.SID == "" ||
		c.ID == "" || c.ACR != "pwd" || c.Role != "user" || len(c.AMR) != 1 || c.AMR[0] != "pwd" ||
		c.AuthTime != e.clock.Now().Unix() || c.NotBefore == nil || c.IssuedAt == nil {
		t.Fatalf("claims = %+v", c)
	}
	pr, err := e.auth(tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Subject != "alice" || pr.Owner != "alice" || pr.SessionID != c.SID || pr.TokenID != c.ID || pr.Role != "user" || pr.HasMFA() {
		t.Fatalf("principal = %+v", pr)
	}
}

func TestTokenAttacks(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Leeway = 10 * time.Second })
	ctx := context.Background()
	e.user("alice", "user")
	e.user("bob", "user")
	good := e.login("alice")
	base := parsedClaims(t, good.AccessToken)
	kid, priv := e.signerKey()
	var set struct {
		Keys []struct{ X, Kid string }
	}
	if err := json.Unmarshal(e.svc.JWKS(), &set); err != nil || len(set.Keys) != 1 || set.Keys[0].Kid != kid {
		t.Fatalf("jwks %s: %v", e.svc.JWKS(), err)
	}
	pubBytes, _ := base64.RawURLEncoding.DecodeString(set.Keys[0].X)
	_, foreign, _ := ed25519.GenerateKey(rand.Reader)
	hdr := map[string]any{"kid": kid, "typ": "at+jwt"}
	now := e.clock.Now()
	with := func(f func(c *accessClaims)) *accessClaims {
		c := base
		c.Audience = append(jwt.ClaimStrings(nil), base.Audience...)
		f(&c)
		return &c
	}
	same := func(*accessClaims) {}

	// Tampered: payload edited (role admin), signature kept.
	parts := strings.Split(good.AccessToken, ".")
	var payload map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	_ = json.Unmarshal(raw, &payload)
	payload["role"] = "admin"
	edited, _ := json.Marshal(payload)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(edited) + "." + parts[2]

	bobTok := e.login("bob")
	bobClaims := parsedClaims(t, bobTok.AccessToken)
	if err := e.svc.RevokeSession(ctx, bobClaims.SID); err != nil {
		t.Fatal(err)
	}
	e.user("carol", "user")
	carolTok := e.login("carol")
	if _, err := e.auth(carolTok.AccessToken); err != nil { // cache it first
		t.Fatal(err)
	}
	if err := e.svc.SetDisabled(ctx, "carol", true); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		token string
		check string
	}{
		{"empty", "", "malformed"},
		{"garbage", "not.a.jwt", "malformed"},
		{"alg none", sign(t, jwt.SigningMethodNone, with(same), hdr, jwt.UnsafeAllowNoneSignatureType), "signature"},
		{"HS256 with public key bytes", sign(t, jwt.SigningMethodHS256, with(same), hdr, pubBytes), "signature"},
		{"foreign key, real kid", sign(t, jwt.SigningMethodEdDSA, with(same), hdr, foreign), "signature"},
		{"tampered payload", tampered, "signature"},
		{"expired", sign(t, jwt.SigningMethodEdDSA, with(func(c *accessClaims) {
			c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Minute))
		}), hdr, priv), "expired"},
		{"not yet valid", sign(t, jwt.SigningMethodEdDSA, with(func(c *accessClaims) {
			c.NotBefore = jwt.NewNumericDate(now.Add(time.Minute))
		}), hdr, priv), "not valid yet"},
		{"issued in the future", sign(t, jwt.SigningMethodEdDSA, with(func(c *accessClaims) {
			c.IssuedAt = jwt.NewNumericDate(now.Add(time.Minute))
		}), hdr, priv), "future"},
		{"no exp", sign(t, jwt.SigningMethodEdDSA, with(func(c *accessClaims) { c.ExpiresAt = nil }), hdr, priv), "missing"},
		{"wrong aud", sign(t, jwt.SigningMethodEdDSA, with(func(c *accessClaims) { c.Audience = jwt.ClaimStrings{"other"} }), hdr, priv), "audience"},
		{"wrong iss", sign(t, jwt.SigningMethodEdDSA, with(func(c *accessClaims) { c.Issuer = "evil" }), hdr, priv), "issuer"},
		{"wrong typ", sign(t, jwt.SigningMethodEdDSA, with(same), map[string]any{"kid": kid, "typ": "JWT"}, priv), "typ"},
		{"no typ", sign(t, jwt.SigningMethodEdDSA, with(same), map[string]any{"kid": kid, "typ": nil}, priv), "typ"},
		{"unknown kid", sign(t, jwt.SigningMethodEdDSA, with(same), map[string]any{"kid": "nope", "typ": "at+jwt"}, priv), "unknown kid"},
		{"no kid", sign(t, jwt.SigningMethodEdDSA, with(same), map[string]any{"typ": "at+jwt"}, priv), "kid missing"},
		{"no sid", sign(t, jwt.SigningMethodEdDSA, with(func(c *accessClaims) { c.SID = "" }), hdr, priv), "missing"},
		{"unknown session", sign(t, jwt.SigningMethodEdDSA, with(func(c *accessClaims) { c.SID = "AAAAAAAAAAAAAAAAAAAAAA" }), hdr, priv), "session not found"},
		{"subject not the session's", sign(t, jwt.SigningMethodEdDSA, with(func(c *accessClaims) { c.Subject = "bob" }), hdr, priv), "subject"},
		{"revoked session", bobTok.AccessToken, "revoked"},
		{"disabled user (cached token)", carolTok.AccessToken, "disabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := e.auth(tt.token)
			if p != nil || !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("Authenticate = %v, %v; want ErrUnauthenticated", p, err)
			}
			if !strings.Contains(err.Error(), tt.check) {
				t.Errorf("error %q does not name the check %q", err, tt.check)
			}
			if tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Errorf("error leaks the token")
			}
		})
	}
	// The good token still works after all that.
	if _, err := e.auth(good.AccessToken); err != nil {
		t.Fatal(err)
	}
}

func TestRevocationCheckedOnCacheHit(t *testing.T) {
	e := newEnv(t, nil)
	e.user("alice", "user")
	tok := e.login("alice")
	p, err := e.auth(tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.auth(tok.AccessToken); err != nil { // cache hit
		t.Fatal(err)
	}
	if err := e.svc.Logout(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if _, err := e.auth(tok.AccessToken); !errors.Is(err, ErrSessionRevoked) {
		t.Fatalf("after logout: %v", err)
	}
	if len(e.kv.keys(prefixRevoked)) != 1 || len(e.kv.keys(prefixSessions)) != 0 {
		t.Fatalf("storage: revoked %v sessions %v", e.kv.keys(prefixRevoked), e.kv.keys(prefixSessions))
	}
}

func TestCachedTokenExpires(t *testing.T) {
	e := newEnv(t, nil)
	e.user("alice", "user")
	tok := e.login("alice")
	if _, err := e.auth(tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(5*time.Minute + time.Second)
	if _, err := e.auth(tok.AccessToken); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired cached token: %v", err)
	}
}

func TestRevocationSurvivesRestart(t *testing.T) {
	e := newEnv(t, nil)
	e.user("alice", "user")
	tok := e.login("alice")
	p, err := e.auth(tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RevokeSession(context.Background(), p.SessionID); err != nil {
		t.Fatal(err)
	}
	e.svc.Stop()
	// A new service on the same storage: same signing key, same revocations.
	svc2 := e.start(nil)
	if _, err := svc2.Authenticate(context.Background(), tok.AccessToken); !errors.Is(err, ErrSessionRevoked) {
		t.Fatalf("after restart: %v", err)
	}
	tok2, err := svc2.Login(context.Background(), LoginInput{Username: "alice", Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc2.Authenticate(context.Background(), tok2.AccessToken); err != nil {
		t.Fatal(err)
	}
	if n := len(e.kv.jwtKeys()); n != 1 {
		t.Fatalf("restart created a new key: %d keys", n)
	}
}

func TestChangeFeedAcrossNodes(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Subscribe = nil })
	kv := e.kv
	sub := func(c *Config) { c.Subscribe = kv.Subscribe }
	nodeB := e.start(sub)
	e.user("alice", "user")
	e.user("bob", "user")
	tokA := e.login("alice")
	tokB := e.login("bob")
	ctx := context.Background()
	for _, tok := range []string{tokA.AccessToken, tokB.AccessToken} {
		if _, err := nodeB.Authenticate(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	pa, _ := e.auth(tokA.AccessToken)
	if err := e.svc.RevokeSession(ctx, pa.SessionID); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.SetDisabled(ctx, "bob", true); err != nil {
		t.Fatal(err)
	}
	// The change feed is asynchronous: wait for it (bounded).
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, errA := nodeB.Authenticate(ctx, tokA.AccessToken)
		_, errB := nodeB.Authenticate(ctx, tokB.AccessToken)
		if errors.Is(errA, ErrSessionRevoked) && errors.Is(errB, ErrUnauthenticated) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node B still accepts: %v / %v", errA, errB)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Rotation on A reaches B: a token signed by the new key verifies there.
	if err := e.svc.RotateSigningKey(ctx); err != nil {
		t.Fatal(err)
	}
	e.user("carol", "user")
	tokC := e.login("carol")
	for {
		if _, err := nodeB.Authenticate(ctx, tokC.AccessToken); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("node B does not know the new key: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestResyncWithoutFeed(t *testing.T) {
	e := newEnv(t, nil)
	nodeB := e.start(nil)
	e.user("alice", "user")
	tok := e.login("alice")
	ctx := context.Background()
	p, err := nodeB.Authenticate(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.RevokeSession(ctx, p.SessionID); err != nil {
		t.Fatal(err)
	}
	if _, err := nodeB.Authenticate(ctx, tok.AccessToken); err != nil {
		t.Fatalf("without feed or resync node B cannot know yet: %v", err)
	}
	nodeB.periodic(ctx)
	if _, err := nodeB.Authenticate(ctx, tok.AccessToken); !errors.Is(err, ErrSessionRevoked) {
		t.Fatalf("after resync: %v", err)
	}
}

func TestKeyRotationOverlap(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	e.user("alice", "user")
	old := e.login("alice")
	oldKid, _ := e.signerKey()
	if err := e.svc.RotateSigningKey(ctx); err != nil {
		t.Fatal(err)
	}
	newKid, _ := e.signerKey()
	if newKid == oldKid {
		t.Fatal("rotation kept the kid")
	}
	jwks := string(e.svc.JWKS())
	for _, want := range []string{oldKid, newKid, `"kty":"OKP"`, `"crv":"Ed25519"`, `"alg":"EdDSA"`, `"use":"sig"`} {
		if !strings.Contains(jwks, want) {
			t.Errorf("JWKS %s lacks %s", jwks, want)
		}
	}
	if _, err := e.auth(old.AccessToken); err != nil {
		t.Fatalf("token of the previous key during overlap: %v", err)
	}
	fresh := e.login("alice")
	if parsedClaims(t, fresh.AccessToken).SID == "" {
		t.Fatal("no sid")
	}
	// After the overlap the old key is gone from storage and the JWKS.
	e.clock.Advance(6 * time.Minute)
	if err := e.svc.loadKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(e.svc.JWKS()), oldKid) || len(e.kv.jwtKeys()) != 1 {
		t.Fatalf("old key not pruned: %s", e.svc.JWKS())
	}
	// Scheduled rotation.
	e.clock.Advance(24 * time.Hour)
	e.svc.periodic(ctx)
	if k, _ := e.signerKey(); k == newKid {
		t.Fatal("key not rotated after KeyRotation")
	}
}

func TestConfigLimits(t *testing.T) {
	kv, s := newMemKV(), newTestSealer(t)
	for _, cfg := range []Config{{AccessTTL: 16 * time.Minute}, {Leeway: 31 * time.Second}, {KeyRotation: time.Second}} {
		if _, err := New(cfg, kv, s, rand.Reader, nil); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("New(%+v) = %v", cfg, err)
		}
	}
}

func TestNotStartedFailsClosed(t *testing.T) {
	svc, err := New(Config{}, newMemKV(), newTestSealer(t), rand.Reader, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Authenticate(context.Background(), "x"); !errors.Is(err, ErrNotStarted) {
		t.Fatal(err)
	}
	if _, err := svc.Login(context.Background(), LoginInput{}); !errors.Is(err, ErrNotStarted) {
		t.Fatal(err)
	}
}

func TestEntropyFailureFailsClosed(t *testing.T) {
	kv, s := newMemKV(), newTestSealer(t)
	r := &switchReader{fail: true}
	svc, err := New(Config{}, kv, s, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err == nil || len(kv.keys("")) != 0 {
		t.Fatalf("Start without entropy: %v, stored %v", err, kv.keys(""))
	}

	e := newEnv(t, nil)
	e.user("alice", "user")
	before := len(e.kv.keys(""))
	e.rand.set(true)
	ctx := context.Background()
	if _, err := e.svc.Login(ctx, LoginInput{Username: "alice", Password: testPassword}); !errors.Is(err, entropy.ErrUnavailable) {
		t.Fatal("login minted a refresh token without entropy")
	}
	if _, _, err := e.svc.CreateAPIKey(ctx, "alice", "ci", []string{"account.read"}, []string{"*"}); err == nil {
		t.Fatal("api key without entropy")
	}
	if _, _, err := e.svc.EnrollTOTP(ctx, "alice"); err == nil {
		t.Fatal("totp without entropy")
	}
	if err := e.svc.RotateSigningKey(ctx); !errors.Is(err, entropy.ErrUnavailable) {
		t.Fatalf("jwt key without entropy: %v", err)
	}
	if after := len(e.kv.keys("")); after != before {
		t.Fatalf("entropy failure wrote %d records", after-before)
	}
}
