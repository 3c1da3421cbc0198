package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

// tokenType is the JWT "typ" of access tokens (RFC 9068 §2.1).
const tokenType = "at+jwt"

type signingKey struct {
	kid     string
	pub     ed25519.PublicKey
	priv    ed25519.PrivateKey // nil unless this node signs with it
	created time.Time
	// verifyUntil is when a superseded key stops verifying; zero for the
	// current key.
	verifyUntil time.Time
}

func (k *signingKey) destroy() {
	if k.priv != nil {
		secret.Wipe(k.priv)
		k.priv = nil
	}
}

type jwtKeyRecord struct {
	Kid       string    `json:"kid"`
	CreatedAt time.Time `json:"created_at"`
	Public    []byte    `json:"public"`
}

// jwtSeedPath holds the seal-wrapped 32-byte Ed25519 seed (RFC 8032
// §5.1.5) of a key, apart from its public record, so that every CSP path
// holds a bare seal-wrap envelope (operator rewrap walks them).
func jwtSeedPath(kid string) string { return prefixJWTSeeds + kid }

type accessClaims struct {
	jwt.RegisteredClaims
	SID      string   `json:"sid"`
	AuthTime int64    `json:"auth_time"`
	AMR      []string `json:"amr"`
	ACR      string   `json:"acr"`
	Role     string   `json:"role"`
}

// jwkThumbprint is the RFC 7638 thumbprint of an Ed25519 key (RFC 8037 §2):
// the kid is then derived from the key itself.
func jwkThumbprint(pub ed25519.PublicKey) string {
	canon := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(canon))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// jwtSignerPath names the signing key's kid: every rotation changes it by
// compare-and-swap, so nodes rotating at once land one rotation, not one
// each, and all of them sign with the same key. It sits under the key
// prefix so that the change feed reports it with the keys.
const jwtSignerPath = prefixJWTKeys + "signer"

type jwtSignerRecord struct {
	Kid string `json:"kid"`
}

// errLostRotation: another node rotated first.
var errLostRotation = errors.New("auth: another node rotated the signing key first")

// RotateSigningKey creates a new Ed25519 signing key from the entropy
// source; the previous key keeps verifying for KeyOverlap.
func (s *Service) RotateSigningKey(ctx context.Context) error {
	return s.rotateSigningKey(ctx, "", true)
}

// rotateSigningKey rotates away from the signer expect (scheduled
// rotation), or from whatever signs now when always is set (an
// operator's rotation). When another node rotated from expect first, this
// node drops its new key and adopts the other's.
func (s *Service) rotateSigningKey(ctx context.Context, expect string, always bool) error {
	seed := make([]byte, ed25519.SeedSize)
	defer secret.Wipe(seed)
	if _, err := io.ReadFull(s.rand, seed); err != nil {
		return fmt.Errorf("auth: jwt key: read entropy: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	kid := jwkThumbprint(pub)
	path := prefixJWTKeys + kid
	env, err := s.sealer.Wrap(ctx, jwtSeedPath(kid), seed)
	if err != nil {
		secret.Wipe(priv)
		return fmt.Errorf("auth: jwt key: seal wrap: %w", err)
	}
	now := s.now().UTC()
	s.keysMu.RLock()
	if cur := s.signer; cur != nil && !now.After(cur.created) {
		// The newest key signs: keep creation times strictly increasing.
		now = cur.created.Add(time.Millisecond)
	}
	s.keysMu.RUnlock()
	rec := jwtKeyRecord{Kid: kid, CreatedAt: now, Public: pub}
	raw, err := jsonBytes(rec)
	if err != nil {
		secret.Wipe(priv)
		return err
	}
	if err := s.kv.Batch(ctx, []storage.Op{{Key: jwtSeedPath(kid), Value: env}, {Key: path, Value: raw}}); err != nil {
		secret.Wipe(priv)
		return fmt.Errorf("auth: jwt key: store: %w", err)
	}
	ptr, err := jsonBytes(jwtSignerRecord{Kid: kid})
	if err != nil {
		secret.Wipe(priv)
		return err
	}
	err = s.kv.Update(ctx, jwtSignerPath, func(cur []byte, found bool) ([]byte, bool, error) {
		var r jwtSignerRecord
		if found {
			if err := json.Unmarshal(cur, &r); err != nil && !always {
				return nil, false, fmt.Errorf("auth: decode %s: %w", jwtSignerPath, err)
			}
		}
		// Without a signer record (a store from before it existed) the
		// newest key signs: that is what expect names.
		if !always && found && r.Kid != expect {
			return nil, false, errLostRotation
		}
		return ptr, false, nil
	})
	if errors.Is(err, errLostRotation) {
		secret.Wipe(priv)
		if derr := s.kv.Batch(ctx, []storage.Op{{Key: path, Delete: true}, {Key: jwtSeedPath(kid), Delete: true}}); derr != nil {
			s.log.Warn("could not delete the signing key that lost the rotation race", "kid", kid, "err", derr)
		}
		s.log.Info("another node rotated the jwt signing key first; adopting it")
		return s.loadKeys(ctx)
	}
	if err != nil {
		secret.Wipe(priv)
		return fmt.Errorf("auth: jwt key: store: %w", err)
	}
	s.keysMu.Lock()
	if old := s.signer; old != nil {
		old.verifyUntil = now.Add(s.cfg.KeyOverlap)
		old.destroy()
	}
	k := &signingKey{kid: kid, pub: pub, priv: priv, created: now}
	s.keys[kid] = k
	s.signer = k
	s.keysMu.Unlock()
	s.log.Info("jwt signing key rotated", "kid", kid)
	return nil
}

// ensureSigner rotates when there is no usable key or it is too old.
func (s *Service) ensureSigner(ctx context.Context) error {
	s.keysMu.RLock()
	k := s.signer
	due := k == nil || k.priv == nil || s.now().Sub(k.created) >= s.cfg.KeyRotation
	s.keysMu.RUnlock()
	if !due {
		return nil
	}
	expect := ""
	if k != nil {
		expect = k.kid
	}
	return s.rotateSigningKey(ctx, expect, k == nil)
}

// loadKeys rebuilds the keyring from storage: the key the signer record
// names signs (the newest, without one), older ones verify until their
// overlap ends and are then pruned; newer ones lost a rotation race and are
// ignored (and pruned once their overlap is over).
func (s *Service) loadKeys(ctx context.Context) error {
	names, err := s.listAll(ctx, prefixJWTKeys)
	if err != nil {
		return err
	}
	var current jwtSignerRecord
	if err := s.getJSON(ctx, jwtSignerPath, &current); err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.log.Error("jwt signer record unreadable; the newest key signs", "err", err)
		current = jwtSignerRecord{}
	}
	recs := make([]jwtKeyRecord, 0, len(names))
	for _, name := range names {
		if name == jwtSignerPath {
			continue
		}
		var r jwtKeyRecord
		if err := s.getJSON(ctx, name, &r); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			if badRecord(err) {
				// Reported and skipped: one bad record must not stop the
				// service (tokens signed by that key fail to verify).
				s.log.Error("jwt key record failed its integrity check; skipped", "key", name, "err", err)
				continue
			}
			return fmt.Errorf("auth: load jwt key: %w", err)
		}
		if len(r.Public) != ed25519.PublicKeySize || r.Kid != jwkThumbprint(r.Public) || name != prefixJWTKeys+r.Kid {
			s.log.Error("jwt key record is inconsistent; skipped", "key", name)
			continue
		}
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(a, b jwtKeyRecord) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Kid, b.Kid)
	})
	now := s.now()
	if i := slices.IndexFunc(recs, func(r jwtKeyRecord) bool { return r.Kid == current.Kid }); i >= 0 {
		for _, r := range recs[i+1:] {
			if now.After(r.CreatedAt.Add(s.cfg.KeyOverlap)) {
				if err := s.kv.Batch(ctx, []storage.Op{{Key: prefixJWTKeys + r.Kid, Delete: true}, {Key: jwtSeedPath(r.Kid), Delete: true}}); err != nil {
					s.log.Warn("prune jwt key failed", "kid", r.Kid, "err", err)
				}
			}
		}
		recs = recs[:i+1]
	}
	keys := map[string]*signingKey{}
	var signer *signingKey
	for i, r := range recs {
		k := &signingKey{kid: r.Kid, pub: ed25519.PublicKey(r.Public), created: r.CreatedAt}
		if i < len(recs)-1 {
			k.verifyUntil = recs[i+1].CreatedAt.Add(s.cfg.KeyOverlap)
			if now.After(k.verifyUntil) {
				if err := s.kv.Batch(ctx, []storage.Op{{Key: prefixJWTKeys + r.Kid, Delete: true}, {Key: jwtSeedPath(r.Kid), Delete: true}}); err != nil {
					s.log.Warn("prune jwt key failed", "kid", r.Kid, "err", err)
				}
				continue
			}
		} else {
			signer = k
		}
		keys[r.Kid] = k
	}
	if signer != nil {
		s.keysMu.RLock()
		cur := s.signer
		reuse := cur != nil && cur.kid == signer.kid && cur.priv != nil
		s.keysMu.RUnlock()
		if reuse {
			signer = cur
			keys[cur.kid] = cur
		} else {
			priv, err := s.loadSeed(ctx, signer)
			switch {
			case badRecord(err) || errors.Is(err, errBadSeed):
				// The key still verifies; ensureSigner makes a new signer.
				s.log.Error("jwt signing key seed failed its integrity check; a new signing key is made", "kid", signer.kid, "err", err)
			case err != nil:
				return err
			default:
				signer.priv = priv
			}
		}
	}
	s.keysMu.Lock()
	for kid, old := range s.keys {
		if keys[kid] != old {
			old.destroy()
		}
	}
	s.keys = keys
	s.signer = signer
	s.keysMu.Unlock()
	return nil
}

var errBadSeed = errors.New("auth: jwt key seed does not match its public key")

// loadSeed reads and unwraps the seed of k and checks it against k.pub.
func (s *Service) loadSeed(ctx context.Context, k *signingKey) (ed25519.PrivateKey, error) {
	env, err := s.kv.Get(ctx, jwtSeedPath(k.kid))
	if err != nil {
		return nil, fmt.Errorf("auth: read jwt key seed: %w", err)
	}
	seed, err := s.sealer.Unwrap(ctx, jwtSeedPath(k.kid), env)
	if err != nil {
		return nil, fmt.Errorf("auth: unwrap jwt key: %w", err)
	}
	defer seed.Destroy()
	if len(seed) != ed25519.SeedSize {
		return nil, errBadSeed
	}
	priv := ed25519.NewKeyFromSeed(seed)
	if !priv.Public().(ed25519.PublicKey).Equal(k.pub) {
		secret.Wipe(priv)
		return nil, errBadSeed
	}
	return priv, nil
}

type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// JWKS returns the JWK Set (RFC 7517 §5) of the keys that currently verify.
func (s *Service) JWKS() []byte {
	s.keysMu.RLock()
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{}}
	for _, k := range s.keys {
		set.Keys = append(set.Keys, jwk{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(k.pub), Kid: k.kid, Alg: "EdDSA", Use: "sig"})
	}
	s.keysMu.RUnlock()
	slices.SortFunc(set.Keys, func(a, b jwk) int { return strings.Compare(a.Kid, b.Kid) })
	b, _ := json.Marshal(set) // cannot fail: strings only
	return b
}

// Key lookup failures; fixed texts, never token content.
var (
	errTyp        = errors.New("typ is not at+jwt")
	errNoKid      = errors.New("kid missing")
	errUnknownKid = errors.New("unknown kid")
	errRetiredKid = errors.New("signing key retired")
)

// keyfunc finds the verification key by kid in the vault's own keyring
// only (RFC 8725 §3.10: never trust jku/jwk/x5u from the token).
func (s *Service) keyfunc(t *jwt.Token) (any, error) {
	typ, _ := t.Header["typ"].(string)
	if !strings.EqualFold(typ, tokenType) && !strings.EqualFold(typ, "application/"+tokenType) {
		return nil, errTyp
	}
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, errNoKid
	}
	s.keysMu.RLock()
	k := s.keys[kid]
	s.keysMu.RUnlock()
	if k == nil {
		return nil, errUnknownKid
	}
	if !k.verifyUntil.IsZero() && s.now().After(k.verifyUntil) {
		return nil, errRetiredKid
	}
	return k.pub, nil
}

// tokenCheck names the failed check of a jwt error, without token content.
func tokenCheck(err error) string {
	for _, c := range []struct {
		err  error
		name string
	}{
		{errTyp, "typ is not at+jwt"},
		{errNoKid, "kid missing"},
		{errUnknownKid, "unknown kid"},
		{errRetiredKid, "signing key retired"},
		{jwt.ErrTokenMalformed, "malformed token"},
		{jwt.ErrTokenSignatureInvalid, "signature or algorithm invalid"},
		{jwt.ErrTokenExpired, "token expired"},
		{jwt.ErrTokenNotValidYet, "token not valid yet"},
		{jwt.ErrTokenUsedBeforeIssued, "token issued in the future"},
		{jwt.ErrTokenInvalidAudience, "wrong audience"},
		{jwt.ErrTokenInvalidIssuer, "wrong issuer"},
		{jwt.ErrTokenRequiredClaimMissing, "required claim missing"},
		{jwt.ErrTokenUnverifiable, "token unverifiable"},
	} {
		if errors.Is(err, c.err) {
			return c.name
		}
	}
	return "invalid token"
}

// signAccess mints an access token for the session.
func (s *Service) signAccess(sess *sessionRecord, now time.Time) (string, int, error) {
	exp := now.Add(s.cfg.AccessTTL)
	if slices.Contains(sess.AMR, "root") {
		// The bootstrap root token has no refresh token: it lives as long
		// as its session (one hour), revocable like any other.
		exp = sess.ExpiresAt
	}
	if sess.ExpiresAt.Before(exp) {
		exp = sess.ExpiresAt
	}
	acr := "pwd"
	for _, m := range sess.AMR {
		if m == "otp" || m == "mfa" {
			acr = "mfa"
		}
	}
	jti, err := randomID()
	if err != nil {
		return "", 0, err
	}
	c := accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.cfg.Issuer,
			Subject:   sess.Username,
			Audience:  jwt.ClaimStrings{s.cfg.Audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        jti,
		},
		SID:      sess.ID,
		AuthTime: sess.AuthTime.Unix(),
		AMR:      sess.AMR,
		ACR:      acr,
		Role:     sess.Role,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	s.keysMu.RLock()
	defer s.keysMu.RUnlock()
	k := s.signer
	if k == nil || k.priv == nil {
		return "", 0, ErrNotStarted
	}
	t.Header["kid"] = k.kid
	t.Header["typ"] = tokenType
	str, err := t.SignedString(k.priv)
	if err != nil {
		return "", 0, fmt.Errorf("auth: sign access token: %w", err)
	}
	return str, int(exp.Sub(now).Round(time.Second) / time.Second), nil
}

// randomID is a non-secret 128-bit identifier (session id, jti, key id).
func randomID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("auth: random id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// randomSecret reads n bytes from the CSP entropy source; it fails closed.
func (s *Service) randomSecret(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return nil, fmt.Errorf("auth: read entropy: %w", err)
	}
	return b, nil
}
