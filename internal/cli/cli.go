// Package cli is the moonvault command line: the server command and the
// client commands that talk to a server over HTTPS.
package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// globals are the client settings every client command shares.
type globals struct {
	addr, caCert, token, format string
	stdin                       io.Reader
	stdout, stderr              io.Writer
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.addr, "address", envOr("MOONVAULT_ADDR", "https://127.0.0.1:8200"), "server address (MOONVAULT_ADDR)")
	fs.StringVar(&g.caCert, "ca-cert", os.Getenv("MOONVAULT_CACERT"), "CA certificate file to trust (MOONVAULT_CACERT)")
	fs.StringVar(&g.token, "token", os.Getenv("MOONVAULT_TOKEN"), "access token (MOONVAULT_TOKEN; default ~/.moonvault-token)")
	fs.StringVar(&g.format, "format", "table", "output format: table or json")
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

type command struct {
	summary string
	run     func(g *globals, args []string) error
}

func commands() map[string]command {
	return map[string]command{
		"server":   {"run the Moon Vault server", runServer},
		"operator": {"init, unseal, seal, status, rotate, rotate-jwt, rekey, rewrap, generate-root, snapshot", runOperator},
		"login":    {"log in and store an access token", runLogin},
		"account":  {"create, list, get, delete accounts and sign with them", runAccount},
		"user":     {"manage users (admin)", runUser},
		"audit":    {"verify an audit log, hash a value", runAudit},
		"attest":   {"verify the server's TEE attestation", runAttest},
	}
}

// Main runs the command line and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	cmds := commands()
	if len(args) < 1 || args[0] == "-h" || args[0] == "-help" || args[0] == "help" {
		usage(stderr, cmds)
		return 2
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "unknown command %q\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	if err := c.run(g, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 2
		}
		var ec exitCode
		if errors.As(err, &ec) {
			return int(ec)
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(stderr, "error:", ue.msg)
			return 2
		}
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	return 0
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: moonvault <command> [flags] [args]\n\ncommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
}

// sub dispatches "<group> <sub> [flags]".
func sub(g *globals, group string, args []string, subs map[string]func(*globals, []string) error) error {
	if len(args) < 1 {
		return usageError{fmt.Sprintf("usage: moonvault %s <%s>", group, strings.Join(keys(subs), "|"))}
	}
	f, ok := subs[args[0]]
	if !ok {
		return usageError{fmt.Sprintf("unknown %s subcommand %q (want %s)", group, args[0], strings.Join(keys(subs), "|"))}
	}
	return f(g, args[1:])
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// flags parses a client command's flags; flags may follow positionals.
func (g *globals) flags(name string, args []string, setup func(fs *flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(g.stderr)
	g.register(fs)
	if setup != nil {
		setup(fs)
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// print shows v as JSON, or as aligned "key value" lines for table.
func (g *globals) print(v any) error {
	if g.format == "json" {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	if g.format != "table" {
		return usageError{"-format must be table or json"}
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		_, err := fmt.Fprintln(g.stdout, string(raw))
		return err
	}
	ks := keys(m)
	width := 0
	for _, k := range ks {
		width = max(width, len(k))
	}
	for _, k := range ks {
		fmt.Fprintf(g.stdout, "%-*s  %s\n", width, k, cell(m[k]))
	}
	return nil
}

func cell(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return "-"
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = cell(e)
		}
		return strings.Join(parts, "\n"+strings.Repeat(" ", 2))
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}
