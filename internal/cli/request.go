package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"text/tabwriter"
)

// The request-and-print steps every client command shares: one call with
// the caller's credential, one way to show an answer, one way to show a
// request an approval holds.

// call sends one request with the caller's credential and decodes the
// answer into out (when not nil).
func call(g *globals, method, path string, body, out any) error {
	c, err := newClient(g)
	if err != nil {
		return err
	}
	return c.do(method, path, body, out)
}

// perform sends one request and shows its outcome: a request held for
// approval (202: a transaction policy's require_approval, or
// policy_change_approvals) prints the approval and exits 3; an answer is
// printed; an empty answer (204) prints done.
func perform(g *globals, method, path string, hdr map[string]string, body any, done string) error {
	c, err := newClient(g)
	if err != nil {
		return err
	}
	var out map[string]any
	status, err := c.send(method, path, hdr, body, &out)
	if err != nil {
		return err
	}
	if status == http.StatusAccepted {
		return held(g, out)
	}
	if out == nil {
		fmt.Fprintln(g.stdout, done)
		return nil
	}
	return g.print(out)
}

// held prints an approval that a change or a signature waits for and
// exits 3, so that scripts tell "waiting" from "done".
func held(g *globals, out map[string]any) error {
	ap, _ := out["approval"].(map[string]any)
	if g.format == "json" {
		if err := g.print(out); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(g.stdout, "Held for approval %v (expires %v); nothing was signed or changed yet.\n", ap["id"], ap["expires_at"])
		fmt.Fprintf(g.stdout, "Follow it with: moonvault approval get %v\n", ap["id"])
	}
	return exitCode(3)
}

// simple is a command without flags that sends one request: to path, or,
// when arg names a positional argument (NAME, ID), to path + that argument
// (escaped) + suffix. It shows the outcome as perform does.
type simple struct {
	cmd, arg     string // "wallet get", "NAME"
	method, path string // "GET", "/v1/wallets/"
	suffix, done string // "/disable", "User disabled."
}

func (s simple) run(g *globals, args []string) error {
	pos, err := g.flags(s.cmd, args, nil)
	if err != nil {
		return err
	}
	path := s.path
	if s.arg != "" {
		name, err := oneName(pos, "usage: moonvault "+s.cmd+" "+s.arg)
		if err != nil {
			return err
		}
		path += name + s.suffix
	}
	return perform(g, s.method, path, nil, nil, s.done)
}

// query is "?k=v&..." of the values that are set ("" when none is).
func query(kv map[string]string) string {
	q := url.Values{}
	for k, v := range kv {
		if v != "" {
			q.Set(k, v)
		}
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// table starts an aligned table on stdout with its header row; the caller
// writes the rows and flushes.
func (g *globals) table(header string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	return tw
}
