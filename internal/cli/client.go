package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moonvault/moonvault/internal/tlsconfig"
)

// client talks to the server over HTTPS.
type client struct {
	addr  string
	token string
	hc    *http.Client
}

// apiError is the server's {"error":{"code","message"}}.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s (HTTP %d, %s)", e.Message, e.Status, e.Code)
}

func tokenFile() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".moonvault-token")
}

func newClient(g *globals) (*client, error) {
	tc, err := tlsconfig.ClientConfig(g.caCert)
	if err != nil {
		return nil, err
	}
	tok := g.token
	if tok == "" {
		if f := tokenFile(); f != "" {
			if b, err := os.ReadFile(f); err == nil { // #nosec G304 -- the user's own token file
				tok = strings.TrimSpace(string(b))
			}
		}
	}
	return &client{
		addr:  strings.TrimRight(g.addr, "/"),
		token: tok,
		hc: &http.Client{
			Timeout:   60 * time.Second,
			Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true},
		},
	}, nil
}

// do sends a JSON request and decodes a JSON answer into out (if not nil).
func (c *client) do(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	if !strings.HasPrefix(c.addr, "https://") {
		return errors.New("MOONVAULT_ADDR must be an https:// address (Moon Vault serves HTTPS only)")
	}
	req, err := http.NewRequest(method, c.addr+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("request %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		if e.Error.Code == "" {
			e.Error.Code, e.Error.Message = "http_error", strings.TrimSpace(string(raw))
		}
		return &apiError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
	}
	if out != nil && len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("decode response: %w", err)
		}
	}
	return nil
}
