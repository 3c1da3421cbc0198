package cli

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/moonvault/moonvault/internal/tlsconfig"
)

// client talks to the server over HTTPS.
type client struct {
	addr  string
	token string
	// fromEnv: the token came from MOONVAULT_TOKEN (never refreshed).
	fromEnv bool
	// apiKey, from MOONVAULT_API_KEY, authenticates when no token is given.
	apiKey string
	hc     *http.Client
}

// apiError is the server's {"error":{"code","message"}}.
type apiError struct {
	Status     int
	Code       string
	Message    string
	RetryAfter string
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%s (HTTP %d, %s)", e.Message, e.Status, e.Code)
	if e.RetryAfter != "" {
		s += "; retry after " + e.RetryAfter + "s"
	}
	return s
}

// newClient returns a client with the session's access token: the one
// given (MOONVAULT_TOKEN), else the stored one, refreshed first
// when it is near its expiry.
func newClient(g *globals) (*client, error) {
	c, err := newClientNoSession(g)
	if err != nil {
		return nil, err
	}
	if g.token != "" {
		c.token, c.fromEnv = g.token, true
		return c, nil
	}
	if k := os.Getenv("MOONVAULT_API_KEY"); k != "" {
		c.apiKey = k
		return c, nil
	}
	tok, err := c.session()
	if err != nil {
		return nil, err
	}
	c.token = tok
	return c, nil
}

// newClientNoSession returns a client that sends no token (login).
func newClientNoSession(g *globals) (*client, error) {
	if !strings.HasPrefix(g.addr, "https://") {
		return nil, usageError{"MOONVAULT_ADDR must be an https:// address (Moon Vault serves HTTPS only), not " + strconv.Quote(g.addr)}
	}
	tc, err := tlsconfig.ClientConfig(g.caCert)
	if err != nil {
		return nil, fmt.Errorf("MOONVAULT_CACERT: %w", err)
	}
	return &client{
		addr: strings.TrimRight(g.addr, "/"),
		hc: &http.Client{
			Timeout:   60 * time.Second,
			Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true},
		},
	}, nil
}

// do sends a JSON request and decodes a JSON answer into out (if not nil).
func (c *client) do(method, path string, in, out any) error {
	_, err := c.send(method, path, nil, in, out)
	return err
}

// send is do with extra headers; it returns the status of a successful
// answer (200, 201, 202...).
func (c *client) send(method, path string, hdr map[string]string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.addr+path, body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	switch {
	case c.token != "":
		req.Header.Set("Authorization", "Bearer "+c.token)
	case c.apiKey != "":
		req.Header.Set("X-API-Key", c.apiKey)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, explainTransport(c.addr, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode >= 400 {
		return resp.StatusCode, c.failure(resp, raw)
	}
	if out != nil && len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode response: %w", err)
		}
	}
	return resp.StatusCode, nil
}

// failure turns an error answer into what the user should do next.
func (c *client) failure(resp *http.Response, raw []byte) error {
	ae := decodeError(resp, raw)
	if resp.StatusCode == http.StatusUnauthorized && ae.Code == "unauthenticated" {
		switch {
		case c.apiKey != "":
			return fmt.Errorf("%w: the API key in MOONVAULT_API_KEY is invalid, expired or revoked", ae)
		case c.fromEnv:
			return fmt.Errorf("%w: the token in MOONVAULT_TOKEN is invalid or expired: get a new one with `moonvault login -no-store`, or unset MOONVAULT_TOKEN to use the stored session", ae)
		case c.token == "":
			return fmt.Errorf("%w: not logged in: run `moonvault login`", ae)
		}
		return fmt.Errorf("%w: the session has expired or was revoked: run `moonvault login`", ae)
	}
	if ae.Code == "mfa_required" && c.apiKey == "" {
		return fmt.Errorf("%w: log in again with a one-time code: moonvault login -totp CODE", ae)
	}
	return ae
}

// decodeError reads the server's error answer (raw: its body).
func decodeError(resp *http.Response, raw []byte) *apiError {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(raw, &e)
	if e.Error.Code == "" {
		e.Error.Code, e.Error.Message = "http_error", strings.TrimSpace(string(raw))
	}
	return &apiError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message, RetryAfter: resp.Header.Get("Retry-After")}
}

// explainTransport says how to fix the usual connection failures.
func explainTransport(addr string, err error) error {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &ua):
		return fmt.Errorf("%s: the server's certificate is signed by an unknown authority: set MOONVAULT_CACERT (or -ca-cert) to the CA certificate file (a dev server prints its path)", addr)
	case errors.As(err, &hn):
		return fmt.Errorf("%s: the server's certificate is not valid for this address (%v): use an address the certificate names in MOONVAULT_ADDR", addr, hn)
	case errors.As(err, &ci):
		return fmt.Errorf("%s: the server's certificate is not valid: %v", addr, ci)
	case errors.As(err, &rh):
		return fmt.Errorf("%s does not speak TLS: Moon Vault serves HTTPS only; check MOONVAULT_ADDR", addr)
	}
	return fmt.Errorf("cannot reach the server at %s (MOONVAULT_ADDR): %w", addr, err)
}
