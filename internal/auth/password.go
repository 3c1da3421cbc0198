package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/moonvault/moonvault/internal/secret"
)

type argonParams struct {
	Memory  uint32 // KiB
	Time    uint32
	Threads uint8
	SaltLen int
	KeyLen  uint32
}

// owaspArgon2id: OWASP Password Storage Cheat Sheet, argon2id m=19 MiB,
// t=2, p=1 (RFC 9106 §4 second recommended option is heavier; this is the
// documented minimum for interactive logins on a shared server).
var owaspArgon2id = argonParams{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// dummyPHC is verified for unknown users so that "no such user" costs the
// same argon2 work as "wrong password". Its hash matches no password
// anyone knows.
const dummyPHC = "$argon2id$v=19$m=19456,t=2,p=1$bW9vbnZhdWx0LWR1bW15$3s0ZZ3bTqQ4nX9zkqzM1cM4rVZl2Dk3Rz4cM8c0Jv4E"

const (
	minPasswordRunes = 12 // NIST SP 800-63B §3.1.1.2 (≥ 8; we ask for 12)
	maxPasswordBytes = 1024
)

func checkPassword(pw secret.String) error {
	p := pw.Reveal()
	if len(p) > maxPasswordBytes {
		return &InvalidInputError{Name: "password", Msg: "longer than 1024 bytes", Code: "weak_password", Sentinel: ErrWeakPassword}
	}
	if !utf8.ValidString(p) {
		return &InvalidInputError{Name: "password", Msg: "not valid UTF-8", Code: "weak_password", Sentinel: ErrWeakPassword}
	}
	if utf8.RuneCountInString(p) < minPasswordRunes {
		return &InvalidInputError{Name: "password", Msg: "shorter than 12 characters", Code: "weak_password", Sentinel: ErrWeakPassword}
	}
	return nil
}

// hashPassword returns a PHC string: $argon2id$v=19$m=..,t=..,p=..$salt$hash.
func (s *Service) hashPassword(pw secret.String) (string, error) {
	salt := make([]byte, s.argon.SaltLen)
	// A salt is not secret: the OS CSPRNG is enough (no HSM dependency for
	// creating users).
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: salt: %w", err)
	}
	key := s.argon2(pw, salt, s.argon)
	defer secret.Wipe(key)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		s.argon.Memory, s.argon.Time, s.argon.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// verifyPassword checks pw against a PHC string in constant time.
func (s *Service) verifyPassword(phc string, pw secret.String) (bool, error) {
	p, salt, want, err := parsePHC(phc)
	if err != nil {
		return false, err
	}
	got := s.argon2(pw, salt, p)
	defer secret.Wipe(got)
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// argon2 bounds concurrent evaluations: each one holds Memory KiB.
func (s *Service) argon2(pw secret.String, salt []byte, p argonParams) []byte {
	s.hashSem <- struct{}{}
	defer func() { <-s.hashSem }()
	s.hashCalls.Add(1)
	b := []byte(pw.Reveal())
	defer secret.Wipe(b)
	return argon2.IDKey(b, salt, p.Time, p.Memory, p.Threads, p.KeyLen)
}

var errBadPHC = errors.New("auth: malformed password hash")

func parsePHC(phc string) (argonParams, []byte, []byte, error) {
	var p argonParams
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return p, nil, nil, errBadPHC
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return p, nil, nil, errBadPHC
	}
	// Bound the work a tampered record could demand.
	if p.Memory == 0 || p.Memory > 1<<21 || p.Time == 0 || p.Time > 16 || p.Threads == 0 {
		return p, nil, nil, errBadPHC
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	hash, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(hash) < 16 || len(hash) > 64 {
		return p, nil, nil, errBadPHC
	}
	p.KeyLen = uint32(len(hash)) // #nosec G115 -- len(hash) <= 64, checked above
	p.SaltLen = len(salt)
	return p, salt, hash, nil
}
