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

	"github.com/agext/levenshtein"
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
	// The token comes from MOONVAULT_TOKEN or the session `moonvault login`
	// stored, never from a flag: arguments are visible to every user of the
	// machine (ps, /proc/PID/cmdline) and land in shell history (review L3).
	g.token = os.Getenv("MOONVAULT_TOKEN")
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
		"login":    {"log in; the session is kept and refreshed until logout", runLogin},
		"logout":   {"end the session and forget its tokens", runLogout},
		"account":  {"create, list, get, delete accounts on every chain and sign with them", runAccount},
		"wallet":   {"create, import, list, get, delete HD wallets", runWallet},
		"user":     {"manage users (admin)", runUser},
		"mfa":      {"enrol, confirm or disable your TOTP second factor", runMFA},
		"api-key":  {"create, list and revoke your API keys", runAPIKey},
		"session":  {"list and revoke sessions", runSession},
		"password": {"change your password", runPassword},
		"policy":   {"create, list, get, update, delete and evaluate transaction policies (admin; evaluate: anyone)", runPolicy},
		"approval": {"list, get, approve and reject requests held for approval", runApproval},
		"audit":    {"verify an audit log, hash a value", runAudit},
		"attest":   {"verify the server's TEE attestation", runAttest},
		"version":  {"print the version", runVersion},
	}
}

// Main runs the command line and returns the exit code: 0 on success (and
// for help), 1 on failure, 2 on a usage mistake.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	cmds := commands()
	if len(args) < 1 {
		usage(stderr, cmds)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(stdout, cmds)
		return 0
	case "help":
		if len(args) == 1 {
			usage(stdout, cmds)
			return 0
		}
		args = append(args[1:], "-h") // moonvault help account create
	case "-version", "--version":
		args = []string{"version"}
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "error: unknown command %q%s\n", args[0], nearest(args[0], keys(cmds)))
		fmt.Fprintln(stderr, "run `moonvault -h` for the list of commands")
		return 2
	}
	err := c.run(g, args[1:])
	var ec exitCode
	var ue usageError
	switch {
	case err == nil, errors.Is(err, errHelpShown):
		return 0
	case errors.Is(err, errLogged):
		return 1
	case errors.As(err, &ec):
		return int(ec)
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "error:", ue.msg)
		return 2
	}
	fmt.Fprintln(stderr, "error:", oneLine(err.Error()))
	return 1
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

// errHelpShown: help was asked for and printed; exit 0.
var errHelpShown = errors.New("help shown")

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: moonvault <command> [flags] [args]\n\ncommands:")
	for _, n := range keys(cmds) {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun `moonvault <command> -h` for a command's flags and an example.")
	fmt.Fprintln(w, "The client reads MOONVAULT_ADDR (default https://127.0.0.1:8200), MOONVAULT_CACERT, and a credential:")
	fmt.Fprintln(w, "MOONVAULT_TOKEN, else MOONVAULT_API_KEY, else the session `moonvault login` stored.")
}

// sub dispatches "<group> <sub> [flags]".
func sub(g *globals, group string, args []string, subs map[string]func(*globals, []string) error) error {
	if len(args) < 1 {
		return usageError{fmt.Sprintf("usage: moonvault %s <%s> (moonvault %s -h for help)", group, strings.Join(keys(subs), "|"), group)}
	}
	if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		fmt.Fprintf(g.stdout, "usage: moonvault %s <command> [flags] [args]\n\ncommands:\n", group)
		for _, s := range keys(subs) {
			fmt.Fprintf(g.stdout, "  %-16s %s\n", s, helps[group+" "+s].summary)
		}
		fmt.Fprintf(g.stdout, "\nRun `moonvault %s <command> -h` for its flags and an example.\n", group)
		return errHelpShown
	}
	f, ok := subs[args[0]]
	if !ok {
		return usageError{fmt.Sprintf("unknown %s command %q%s (want %s)", group, args[0], nearest(args[0], keys(subs)), strings.Join(keys(subs), "|"))}
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

// nearest suggests the candidate closest to a mistyped word.
func nearest(word string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := levenshtein.Distance(word, c, nil); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

// flags parses a client command's flags; flags may follow positionals.
// -h prints the command's help (its flags and an example) and exits 0.
func (g *globals) flags(name string, args []string, setup func(fs *flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	g.register(fs)
	if setup != nil {
		setup(fs)
	}
	h, ok := helps[name]
	if !ok {
		h = help{usage: "moonvault " + name + " [flags]"}
	}
	var pos []string
	for {
		if err := parseFlags(g, fs, h, args); err != nil {
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

// errTokenFlag answers the -token flag of earlier builds, without
// repeating its value.
const errTokenFlag = "there is no -token flag: a token in the command line is visible to every user of this machine (ps) and kept in shell history; " +
	"set MOONVAULT_TOKEN in the environment, or use the session `moonvault login` keeps"

// help is what `-h` shows for a command.
type help struct {
	usage, summary, example string
}

// parseFlags parses args with fs. -h prints h and fs's flags to stdout
// (errHelpShown); a bad flag is a usage error naming the nearest flag.
func parseFlags(g *globals, fs *flag.FlagSet, h help, args []string) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(g.stdout, "usage: %s\n", h.usage)
		if h.summary != "" {
			fmt.Fprintf(g.stdout, "\n%s\n", h.summary)
		}
		fmt.Fprintln(g.stdout, "\nflags:")
		fs.SetOutput(g.stdout)
		fs.PrintDefaults()
		if h.example != "" {
			fmt.Fprintf(g.stdout, "\nexample:\n  %s\n", h.example)
		}
		return errHelpShown
	}
	msg := err.Error()
	if msg == "flag provided but not defined: -token" {
		return usageError{errTokenFlag}
	}
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		var names []string
		fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
		msg = "unknown flag -" + name + nearest(name, names)
	}
	return usageError{msg + " (moonvault " + fs.Name() + " -h for help)"}
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
		// A list shows one item per line, aligned under the first.
		fmt.Fprintf(g.stdout, "%-*s  %s\n", width, k, strings.ReplaceAll(cell(m[k]), "\n", "\n"+strings.Repeat(" ", width+2)))
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
		if len(x) == 0 {
			return "-"
		}
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = cell(e)
		}
		return strings.Join(parts, "\n")
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}
