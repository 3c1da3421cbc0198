package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"
)

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

func runAccount(g *globals, args []string) error {
	return sub(g, "account", args, map[string]func(*globals, []string) error{
		"create": accCreate, "list": accList, "get": accGet, "delete": accDelete,
		"sign-message": accSignMessage, "sign-typed-data": accSignTypedData, "sign-transaction": accSignTx,
		"sign-psbt": accSignPSBT, "provenance": accProvenance,
		"grant": accGrant, "ungrant": accUngrant,
	})
}

func accCreate(g *globals, args []string) error {
	var importKey bool
	var chainName, network, addressType, walletName string
	var index int64
	pos, err := g.flags("account create", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&importKey, "import", false, "import a private key read from MOONVAULT_PRIVATE_KEY or standard input (needs MFA step-up)")
		fs.StringVar(&chainName, "chain", "", "ethereum (default), bitcoin or solana")
		fs.StringVar(&network, "network", "", "bitcoin: mainnet (default), testnet, signet or regtest")
		fs.StringVar(&addressType, "address-type", "", "bitcoin: p2wpkh (default) or p2tr")
		fs.StringVar(&walletName, "wallet", "", "derive the key from this HD wallet, on the chain's default path")
		fs.Int64Var(&index, "index", -1, "with -wallet: the index on the path (default: the next one unused)")
	})
	if err != nil {
		return err
	}
	body := map[string]any{}
	if len(pos) > 0 {
		body["name"] = pos[0]
	}
	for k, v := range map[string]string{"chain": chainName, "network": network, "address_type": addressType, "wallet": walletName} {
		if v != "" {
			body[k] = v
		}
	}
	if index >= 0 {
		if walletName == "" {
			return usageError{"-index needs -wallet"}
		}
		body["index"] = index
	}
	if importKey {
		k, err := readSecret(g, "MOONVAULT_PRIVATE_KEY", "Private key (hex): ")
		if err != nil {
			return err
		}
		body["private_key"] = k
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	var out map[string]any
	if err := c.do("POST", "/v1/accounts", body, &out); err != nil {
		return err
	}
	return g.print(out)
}

func accList(g *globals, args []string) error {
	var limit int
	var after, chainName string
	if _, err := g.flags("account list", args, func(fs *flag.FlagSet) {
		fs.IntVar(&limit, "limit", 100, "page size")
		fs.StringVar(&after, "after", "", "list names after this one")
		fs.StringVar(&chainName, "chain", "", "only accounts on this chain (ethereum, bitcoin, solana)")
	}); err != nil {
		return err
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	var out struct {
		Accounts []map[string]any `json:"accounts"`
		Next     string           `json:"next"`
	}
	q := url.Values{"limit": {fmt.Sprint(limit)}}
	if after != "" {
		q.Set("after", after)
	}
	if chainName != "" {
		q.Set("chain", chainName)
	}
	if err := c.do("GET", "/v1/accounts?"+q.Encode(), nil, &out); err != nil {
		return err
	}
	if g.format == "json" {
		return g.print(out)
	}
	for _, a := range out.Accounts {
		fmt.Fprintf(g.stdout, "%-40v %-9v %v\n", a["name"], a["chain"], a["address"])
	}
	if out.Next != "" {
		fmt.Fprintf(g.stdout, "(more: -after %s)\n", out.Next)
	}
	return nil
}

func oneName(pos []string, usage string) (string, error) {
	if len(pos) < 1 {
		return "", usageError{usage}
	}
	return url.PathEscape(pos[0]), nil
}

func accGet(g *globals, args []string) error {
	pos, err := g.flags("account get", args, nil)
	if err != nil {
		return err
	}
	name, err := oneName(pos, "usage: moonvault account get NAME")
	if err != nil {
		return err
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	var out map[string]any
	if err := c.do("GET", "/v1/accounts/"+name, nil, &out); err != nil {
		return err
	}
	return g.print(out)
}

func accDelete(g *globals, args []string) error {
	pos, err := g.flags("account delete", args, nil)
	if err != nil {
		return err
	}
	name, err := oneName(pos, "usage: moonvault account delete NAME")
	if err != nil {
		return err
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	if err := c.do("DELETE", "/v1/accounts/"+name, nil, nil); err != nil {
		return err
	}
	fmt.Fprintln(g.stdout, "Account deleted; its key material was destroyed.")
	return nil
}

func accSignMessage(g *globals, args []string) error {
	var encoding string
	pos, err := g.flags("account sign-message", args, func(fs *flag.FlagSet) {
		fs.StringVar(&encoding, "encoding", "utf8", "utf8 or hex")
	})
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError{"usage: moonvault account sign-message NAME DATA"}
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	return signAndPrint(g, c, pos[0], "sign-message", map[string]string{"data": pos[1], "encoding": encoding})
}

// rawArg reads an argument: inline, @file, or - for standard input.
func rawArg(g *globals, s string) ([]byte, error) {
	switch {
	case s == "-":
		return readAll(g)
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

func readAll(g *globals) ([]byte, error) {
	var b strings.Builder
	sc := bufio.NewScanner(g.stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		b.WriteString(sc.Text())
		b.WriteByte('\n')
	}
	return []byte(b.String()), sc.Err()
}

func accSignTypedData(g *globals, args []string) error {
	pos, err := g.flags("account sign-typed-data", args, nil)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError{"usage: moonvault account sign-typed-data NAME JSON|@FILE|-"}
	}
	td, err := jsonArg(g, pos[1])
	if err != nil {
		return err
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	return signAndPrint(g, c, pos[0], "sign-typed-data", map[string]any{"typed_data": td})
}

// accSignTx signs an Ethereum transaction object (JSON) or a Solana wire
// transaction (base64).
func accSignTx(g *globals, args []string) error {
	pos, err := g.flags("account sign-transaction", args, nil)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError{"usage: moonvault account sign-transaction NAME JSON|BASE64|@FILE|-"}
	}
	var tx any
	if t := strings.TrimSpace(pos[1]); strings.HasPrefix(t, "{") || t == "-" || strings.HasPrefix(t, "@") {
		raw, err := rawArg(g, t)
		if err != nil {
			return err
		}
		if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] != '{' {
			tx = string(t) // a Solana transaction in a file
		} else if !json.Valid(raw) {
			return usageError{"argument is not valid JSON"}
		} else {
			tx = json.RawMessage(raw)
		}
	} else {
		tx = t // base64
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	return signAndPrint(g, c, pos[0], "sign-transaction", map[string]any{"transaction": tx})
}

func runUser(g *globals, args []string) error {
	simple := func(name, method, suffix, done string) func(*globals, []string) error {
		return func(g *globals, args []string) error {
			pos, err := g.flags("user "+name, args, nil)
			if err != nil {
				return err
			}
			name, err := oneName(pos, "usage: moonvault user <cmd> NAME")
			if err != nil {
				return err
			}
			c, err := newClient(g)
			if err != nil {
				return err
			}
			var out map[string]any
			status, err := c.send(method, "/v1/users/"+name+suffix, nil, nil, &out)
			if err != nil {
				return err
			}
			if status == 202 {
				return held(g, out) // policy_change_approvals: an admin's change waits for the quorum
			}
			if out == nil {
				fmt.Fprintln(g.stdout, done)
				return nil
			}
			return g.print(out)
		}
	}
	return sub(g, "user", args, map[string]func(*globals, []string) error{
		"create":       userCreate,
		"list":         userList,
		"get":          simple("get", "GET", "", ""),
		"delete":       simple("delete", "DELETE", "", "User deleted."),
		"disable":      simple("disable", "POST", "/disable", "User disabled; all of its sessions ended."),
		"enable":       simple("enable", "POST", "/enable", "User enabled."),
		"set-password": userSetPassword,
	})
}

func userCreate(g *globals, args []string) error {
	var role string
	pos, err := g.flags("user create", args, func(fs *flag.FlagSet) {
		fs.StringVar(&role, "role", "user", "admin or user")
	})
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"usage: moonvault user create [-role user|admin] NAME (password from MOONVAULT_NEW_PASSWORD or standard input)"}
	}
	pw, err := readSecret(g, "MOONVAULT_NEW_PASSWORD", "New password: ")
	if err != nil {
		return err
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	var out map[string]any
	status, err := c.send("POST", "/v1/users", nil, map[string]string{"username": pos[0], "password": pw, "role": role}, &out)
	if err != nil {
		return err
	}
	if status == 202 {
		return held(g, out) // policy_change_approvals: a new admin (or named approver) waits for the quorum
	}
	return g.print(out)
}

func userList(g *globals, args []string) error {
	if _, err := g.flags("user list", args, nil); err != nil {
		return err
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	var out struct {
		Users []struct {
			Username   string    `json:"username"`
			Role       string    `json:"role"`
			Disabled   bool      `json:"disabled"`
			MFAEnabled bool      `json:"mfa_enabled"`
			CreatedAt  time.Time `json:"created_at"`
		} `json:"users"`
	}
	if err := c.do("GET", "/v1/users", nil, &out); err != nil {
		return err
	}
	if g.format == "json" {
		return g.print(out)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tROLE\tMFA\tDISABLED\tCREATED")
	for _, u := range out.Users {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Username, u.Role, yesNo(u.MFAEnabled), yesNo(u.Disabled), u.CreatedAt.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func accGrant(g *globals, args []string) error {
	pos, err := g.flags("account grant", args, nil)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError{"usage: moonvault account grant NAME USER"}
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	if err := c.do("POST", "/v1/accounts/"+url.PathEscape(pos[0])+"/grants", map[string]string{"principal": pos[1]}, nil); err != nil {
		return err
	}
	var acc struct {
		Owner string `json:"owner"`
		Name  string `json:"name"`
	}
	if err := c.do("GET", "/v1/accounts/"+url.PathEscape(pos[0]), nil, &acc); err != nil || acc.Owner == "" {
		fmt.Fprintf(g.stdout, "%s may now sign with %s.\n", pos[1], pos[0])
		return nil // the grant is made; only the hint is missing
	}
	fmt.Fprintf(g.stdout, "%s may now sign with %s (they address it as %s:%s).\n", pos[1], pos[0], acc.Owner, acc.Name)
	return nil
}

func accUngrant(g *globals, args []string) error {
	pos, err := g.flags("account ungrant", args, nil)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError{"usage: moonvault account ungrant NAME USER"}
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	if err := c.do("DELETE", "/v1/accounts/"+url.PathEscape(pos[0])+"/grants/"+url.PathEscape(pos[1]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "%s may no longer use %s.\n", pos[1], pos[0])
	return nil
}

func userSetPassword(g *globals, args []string) error {
	pos, err := g.flags("user set-password", args, nil)
	if err != nil {
		return err
	}
	name, err := oneName(pos, "usage: moonvault user set-password NAME (password from MOONVAULT_NEW_PASSWORD or standard input)")
	if err != nil {
		return err
	}
	pw, err := readSecret(g, "MOONVAULT_NEW_PASSWORD", "New password: ")
	if err != nil {
		return err
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	var out map[string]any
	status, err := c.send("POST", "/v1/users/"+name+"/password", nil, map[string]string{"password": pw}, &out)
	if err != nil {
		return err
	}
	if status == 202 {
		return held(g, out) // an admin's or an approver's password, under policy_change_approvals
	}
	fmt.Fprintln(g.stdout, "Password set; every session of the user has ended.")
	return nil
}

// signAndPrint sends a sign request and prints the answer; a request a
// transaction policy holds for approval prints the approval and exits 3.
func signAndPrint(g *globals, c *client, account, op string, body any) error {
	var out map[string]any
	status, err := c.send("POST", "/v1/accounts/"+url.PathEscape(account)+"/"+op, nil, body, &out)
	if err != nil {
		return err
	}
	if status == 202 {
		return held(g, out)
	}
	return g.print(out)
}
