package cli

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The CLI keeps a session as two files in its configuration directory
// (MOONVAULT_CONFIG_DIR, default <user config dir>/moonvault), each mode
// 0600: the access token and, beside it, the refresh token. Before a
// request, an access token that expires within refreshMargin is exchanged
// (refresh tokens rotate: the server invalidates the old one), under a file
// lock so that two commands started together do not both present the same
// refresh token, which the server would take for a replayed token and end
// the session.
const (
	accessFile    = "access-token"
	refreshFile   = "refresh-token"
	lockFile      = "session.lock"
	refreshMargin = time.Minute
)

// tokens is the login and refresh answer.
type tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
}

func sessionDir() string {
	if d := os.Getenv("MOONVAULT_CONFIG_DIR"); d != "" {
		return d
	}
	d, err := os.UserConfigDir()
	if err != nil {
		home, _ := os.UserHomeDir()
		d = filepath.Join(home, ".config")
	}
	return filepath.Join(d, "moonvault")
}

// saveSession stores both tokens (mode 0600, written atomically).
func saveSession(t tokens) error {
	dir := sessionDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("store the session: %w", err)
	}
	for name, v := range map[string]string{accessFile: t.AccessToken, refreshFile: t.RefreshToken} {
		if err := writePrivate(filepath.Join(dir, name), v); err != nil {
			return fmt.Errorf("store the session: %w", err)
		}
	}
	return nil
}

func writePrivate(path, value string) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(value + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func readToken(name string) string {
	b, err := os.ReadFile(filepath.Join(sessionDir(), name)) // #nosec G304 -- the user's own session file
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// removeSession deletes both tokens.
func removeSession() error {
	var errs []error
	for _, name := range []string{accessFile, refreshFile} {
		if err := os.Remove(filepath.Join(sessionDir(), name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// expiry reads the exp claim of a JWT without verifying it: the client only
// schedules its refresh with it; the server verifies every token.
func expiry(jwt string) (time.Time, bool) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var c struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(raw, &c) != nil || c.Exp == 0 {
		return time.Time{}, false
	}
	return time.Unix(c.Exp, 0), true
}

// session returns the stored access token, refreshed first when it is near
// its expiry. No stored session gives "" (the server then answers 401 and
// the user is told to log in).
func (c *client) session() (string, error) {
	access := readToken(accessFile)
	if access == "" || !nearExpiry(access) {
		return access, nil
	}
	unlock, err := lockSession()
	if err != nil {
		return "", err
	}
	defer unlock()
	// Another command may have refreshed while we waited for the lock.
	access, refresh := readToken(accessFile), readToken(refreshFile)
	if !nearExpiry(access) || refresh == "" {
		return access, nil
	}
	var t tokens
	err = c.do("POST", "/v1/auth/refresh", map[string]string{"refresh_token": refresh}, &t)
	var ae *apiError
	switch {
	case err == nil:
		if err := saveSession(t); err != nil {
			return "", err
		}
		return t.AccessToken, nil
	case errors.As(err, &ae) && ae.Status == 401:
		_ = removeSession()
		return "", errors.New("the session has expired or was revoked: run `moonvault login`")
	}
	if exp, ok := expiry(access); ok && time.Now().Before(exp) {
		return access, nil // still valid: try with it
	}
	return "", fmt.Errorf("refresh the session: %w", err)
}

func nearExpiry(access string) bool {
	exp, ok := expiry(access)
	return ok && time.Until(exp) < refreshMargin
}

// lockSession takes an exclusive lock on the session directory.
func lockSession() (func(), error) {
	dir := sessionDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600) // #nosec G304 -- the user's own session dir
	if err != nil {
		return nil, fmt.Errorf("lock the session: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil { // #nosec G115 -- a file descriptor fits an int
		f.Close()
		return nil, fmt.Errorf("lock the session: %w", err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN) // #nosec G115 -- a file descriptor fits an int
		f.Close()
	}, nil
}

// runLogin logs in and stores the session (unless -no-store).
func runLogin(g *globals, args []string) error {
	var username, totp string
	var noStore bool
	if _, err := g.flags("login", args, func(fs *flag.FlagSet) {
		fs.StringVar(&username, "username", envOr("MOONVAULT_USERNAME", "admin"), "user name (MOONVAULT_USERNAME)")
		fs.StringVar(&totp, "totp", "", "TOTP code, when MFA is enrolled")
		fs.BoolVar(&noStore, "no-store", false, "print the access token only; store nothing")
	}); err != nil {
		return err
	}
	pw, err := readSecret(g, "MOONVAULT_PASSWORD", "Password: ")
	if err != nil {
		return err
	}
	c, err := newClientNoSession(g)
	if err != nil {
		return err
	}
	body := map[string]string{"username": username, "password": pw}
	if totp != "" {
		body["totp"] = totp
	}
	var tok tokens
	if err := c.do("POST", "/v1/auth/login", body, &tok); err != nil {
		return err
	}
	if !noStore {
		if err := saveSession(tok); err != nil {
			return err
		}
	}
	if g.format == "json" {
		return g.print(map[string]any{"username": username, "expires_in": tok.ExpiresIn, "token_type": tok.TokenType})
	}
	if noStore {
		fmt.Fprintln(g.stdout, tok.AccessToken)
		return nil
	}
	fmt.Fprintf(g.stdout, "Logged in as %s. The session is kept in %s and refreshed as needed until `moonvault logout`.\n", username, sessionDir())
	return nil
}

// runLogout revokes the session on the server and deletes the stored
// tokens. With MOONVAULT_TOKEN set, that token's session is revoked and the
// stored one is left alone.
func runLogout(g *globals, args []string) error {
	if _, err := g.flags("logout", args, nil); err != nil {
		return err
	}
	c, err := newClient(g)
	if err != nil && g.token == "" {
		// The stored session is already unusable: forget it.
		if rerr := removeSession(); rerr != nil {
			return rerr
		}
		fmt.Fprintln(g.stdout, "The session had already ended; its stored tokens were deleted.")
		return nil
	}
	if err != nil {
		return err
	}
	if c.token == "" {
		fmt.Fprintln(g.stdout, "Not logged in.")
		return nil
	}
	err = c.do("POST", "/v1/auth/logout", nil, nil)
	var ae *apiError
	if err != nil && !(errors.As(err, &ae) && ae.Status == 401) {
		return fmt.Errorf("revoke the session: %w (the stored tokens were kept; try again)", err)
	}
	if !c.fromEnv {
		if err := removeSession(); err != nil {
			return err
		}
	}
	fmt.Fprintln(g.stdout, "Logged out: the session is revoked on the server and its tokens deleted.")
	return nil
}
