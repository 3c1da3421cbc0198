package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/moonvault/moonvault/internal/secret"
)

// LoginInput is a login attempt.
type LoginInput struct {
	Username   string
	Password   secret.String
	TOTP       secret.String // a TOTP code or a recovery code; may be empty
	RemoteAddr string
	UserAgent  string
}

// Login checks a password (and second factor when enrolled) and starts a
// session. Unknown users and wrong passwords give the same error after the
// same argon2 work; failures are throttled per user and per address.
func (s *Service) Login(ctx context.Context, in LoginInput) (*Tokens, error) {
	if err := s.requireStarted(); err != nil {
		return nil, err
	}
	now := s.now()
	uk, ak := userKey(in.Username), addrKey(in.RemoteAddr)
	wait, release := s.limiter.reserve(now, uk, ak)
	defer release()
	if wait > 0 {
		s.log.Warn("login throttled", "username", in.Username, "remote_addr", in.RemoteAddr, "retry_after", int(wait.Seconds()+0.999))
		return nil, &RateLimitError{RetryAfter: wait}
	}
	rec, err := s.loadUser(ctx, in.Username)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err // storage trouble: fail closed, do not count
	}
	phc, pw := s.dummyPHC, in.Password
	if rec != nil {
		phc = rec.PasswordHash
	}
	if len(pw) > maxPasswordBytes {
		pw = "" // bound the work; still hash so the timing does not tell
		rec = nil
	}
	ok, err := s.verifyPassword(phc, pw)
	if err != nil {
		return nil, fmt.Errorf("auth: login: %w", err)
	}
	if rec == nil || !ok {
		return nil, s.loginFailed(now, in, "bad username or password", uk, ak)
	}
	if rec.Disabled {
		return nil, ErrUserDisabled
	}
	amr := []string{"pwd"}
	if rec.TOTP.Enabled {
		if in.TOTP == "" {
			return nil, ErrMFARequired
		}
		method, err := s.checkSecondFactor(ctx, rec.Username, in.TOTP, now)
		if errors.Is(err, ErrInvalidCredentials) {
			return nil, s.loginFailed(now, in, "bad second factor", uk, ak)
		}
		if err != nil {
			return nil, err
		}
		amr = append(amr, method)
	}
	s.limiter.reset(uk)
	t, err := s.newSession(ctx, rec.Username, rec.Role, amr, s.cfg.SessionLifetime, true, in.RemoteAddr, in.UserAgent)
	if err != nil {
		return nil, err
	}
	s.log.Info("login", "username", rec.Username, "remote_addr", in.RemoteAddr, "amr", amr)
	return t, nil
}

func (s *Service) loginFailed(now time.Time, in LoginInput, reason string, keys ...string) error {
	s.limiter.fail(now, keys...)
	s.log.Warn("login failed", "username", in.Username, "remote_addr", in.RemoteAddr, "reason", reason)
	return ErrInvalidCredentials
}

// MaxLoginBody bounds a login request body.
const MaxLoginBody = 4 << 10

// loginRequest is the JSON body of POST /v1/auth/login.
type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	TOTP     string `json:"totp,omitempty"`
}

// DecodeLoginRequest parses a login body: at most MaxLoginBody bytes, one
// JSON object, unknown fields refused. RemoteAddr and UserAgent are left
// for the caller to fill from the connection.
func DecodeLoginRequest(body []byte) (LoginInput, error) {
	if len(body) > MaxLoginBody {
		return LoginInput{}, invalid("body", "larger than 4 KiB")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var r loginRequest
	if err := dec.Decode(&r); err != nil {
		return LoginInput{}, invalid("body", "not a login JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return LoginInput{}, invalid("body", "trailing data after the JSON object")
	}
	if r.Username == "" {
		return LoginInput{}, invalid("username", "required")
	}
	if len(r.Username) > 64 {
		return LoginInput{}, invalid("username", "too long")
	}
	if r.Password == "" {
		return LoginInput{}, invalid("password", "required")
	}
	if len(r.Password) > maxPasswordBytes {
		return LoginInput{}, invalid("password", "too long")
	}
	if len(r.TOTP) > 64 {
		return LoginInput{}, invalid("totp", "too long")
	}
	return LoginInput{Username: r.Username, Password: secret.String(r.Password), TOTP: secret.String(r.TOTP)}, nil
}
