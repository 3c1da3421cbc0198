package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"golang.org/x/term"
)

// What commands read besides flags: secrets, names, files and JSON
// arguments.

// readSecret takes a secret from an environment variable, else prompts on
// the terminal without echo, else reads one line of standard input.
func readSecret(g *globals, envName, prompt string) (string, error) {
	if v := os.Getenv(envName); v != "" {
		return v, nil
	}
	if f, ok := g.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(g.stderr, prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(g.stderr)
		return string(b), err
	}
	line, err := bufio.NewReader(g.stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("no " + strings.ToLower(strings.TrimSuffix(prompt, ": ")) + " given (set " + envName + " or pipe it on standard input)")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// oneName is the first positional argument, escaped for a URL path.
func oneName(pos []string, usage string) (string, error) {
	if len(pos) < 1 {
		return "", usageError{usage}
	}
	return url.PathEscape(pos[0]), nil
}

// splitList turns "a,b" into a list; "" is an empty list.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// readInput reads a file argument, or standard input for "-".
func readInput(g *globals, name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(g.stdin)
	}
	return os.ReadFile(name) // #nosec G304 -- the user names the file
}

// rawArg reads an argument: inline, @file, or - for standard input.
func rawArg(g *globals, s string) ([]byte, error) {
	switch {
	case s == "-":
		return readInput(g, s)
	case strings.HasPrefix(s, "@"):
		return os.ReadFile(s[1:]) // #nosec G304 -- the user names the file
	}
	return []byte(s), nil
}

// jsonArg reads a JSON argument: inline, @file, or - for standard input.
func jsonArg(g *globals, s string) (json.RawMessage, error) {
	raw, err := rawArg(g, s)
	if err != nil {
		return nil, err
	}
	if !json.Valid(raw) {
		return nil, usageError{"argument is not valid JSON"}
	}
	return raw, nil
}

// documentArg reads a JSON document from FILE, or standard input for "-",
// and sends it as it is (the server decodes it strictly and names any
// field at fault).
func documentArg(g *globals, name string) (json.RawMessage, error) {
	raw, err := readInput(g, name)
	if err != nil {
		return nil, err
	}
	if !json.Valid(raw) {
		return nil, usageError{name + " is not valid JSON"}
	}
	return raw, nil
}
