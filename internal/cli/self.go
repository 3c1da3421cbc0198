package cli

import (
	"flag"
	"fmt"
	"strings"
	"time"
)

// Commands a user runs on their own credentials: second factor, API keys,
// sessions and password.

func runMFA(g *globals, args []string) error {
	return sub(g, "mfa", args, map[string]func(*globals, []string) error{
		"enroll": mfaEnroll, "confirm": mfaConfirm,
		"disable": simple{cmd: "mfa disable", method: "DELETE", path: "/v1/auth/mfa/totp", done: "TOTP disabled."}.run,
	})
}

func mfaEnroll(g *globals, args []string) error {
	if _, err := g.flags("mfa enroll", args, nil); err != nil {
		return err
	}
	var out struct {
		Secret string `json:"secret"`
		URL    string `json:"otpauth_url"`
	}
	if err := call(g, "POST", "/v1/auth/mfa/totp/enroll", nil, &out); err != nil {
		return err
	}
	if g.format == "json" {
		return g.print(out)
	}
	// The secret is the user's own, shown to them once so that they can add
	// it to an authenticator app; the server keeps it seal-wrapped.
	fmt.Fprintf(g.stdout, "Add this to your authenticator app (or scan the URI as a QR code):\n\n  %s\n\nsecret: %s\n\nThen run: moonvault mfa confirm CODE\n", out.URL, out.Secret)
	return nil
}

func mfaConfirm(g *globals, args []string) error {
	pos, err := g.flags("mfa confirm", args, nil)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"usage: moonvault mfa confirm CODE"}
	}
	var out struct {
		RecoveryCodes []string `json:"recovery_codes"`
	}
	if err := call(g, "POST", "/v1/auth/mfa/totp/confirm", map[string]string{"code": pos[0]}, &out); err != nil {
		return err
	}
	if g.format == "json" {
		return g.print(out)
	}
	fmt.Fprintln(g.stdout, "TOTP is on. Recovery codes, one per line (each works once; they are shown only now):")
	for _, rc := range out.RecoveryCodes {
		fmt.Fprintln(g.stdout, rc)
	}
	return nil
}

func runAPIKey(g *globals, args []string) error {
	return sub(g, "api-key", args, map[string]func(*globals, []string) error{
		"create": apiKeyCreate, "list": apiKeyList,
		"revoke": simple{cmd: "api-key revoke", arg: "ID", method: "DELETE", path: "/v1/auth/api-keys/", done: "API key revoked."}.run,
	})
}

func apiKeyCreate(g *globals, args []string) error {
	var actions, accounts string
	pos, err := g.flags("api-key create", args, func(fs *flag.FlagSet) {
		fs.StringVar(&actions, "actions", "account.sign", "comma-separated actions the key may perform (account.sign, account.read, account.create, ...; * for every non-sensitive one)")
		fs.StringVar(&accounts, "accounts", "*", "comma-separated account names the key may use (* for all of yours)")
	})
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"usage: moonvault api-key create [-actions LIST] [-accounts LIST] NAME"}
	}
	var out struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	body := map[string]any{"name": pos[0], "actions": splitList(actions), "accounts": splitList(accounts)}
	if err := call(g, "POST", "/v1/auth/api-keys", body, &out); err != nil {
		return err
	}
	if g.format == "json" {
		return g.print(out)
	}
	fmt.Fprintf(g.stdout, "id:  %s\nkey: %s\n\nThe key is shown only now; the vault keeps only its hash.\nUse it with: export MOONVAULT_API_KEY=<key>\n", out.ID, out.Key)
	return nil
}

func apiKeyList(g *globals, args []string) error {
	if _, err := g.flags("api-key list", args, nil); err != nil {
		return err
	}
	var out struct {
		Keys []map[string]any `json:"api_keys"`
	}
	if err := call(g, "GET", "/v1/auth/api-keys", nil, &out); err != nil {
		return err
	}
	if g.format == "json" {
		return g.print(out)
	}
	tw := g.table("ID\tNAME\tACTIONS\tACCOUNTS\tCREATED")
	for _, k := range out.Keys {
		fmt.Fprintf(tw, "%v\t%v\t%s\t%s\t%v\n", k["id"], k["name"], joinAny(k["actions"]), joinAny(k["accounts"]), k["created_at"])
	}
	return tw.Flush()
}

func joinAny(v any) string {
	xs, _ := v.([]any)
	parts := make([]string, 0, len(xs))
	for _, x := range xs {
		parts = append(parts, fmt.Sprint(x))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}

func runSession(g *globals, args []string) error {
	return sub(g, "session", args, map[string]func(*globals, []string) error{
		"list":   sessionList,
		"revoke": simple{cmd: "session revoke", arg: "ID", method: "DELETE", path: "/v1/auth/sessions/", done: "Session revoked."}.run,
	})
}

func sessionList(g *globals, args []string) error {
	var user string
	if _, err := g.flags("session list", args, func(fs *flag.FlagSet) {
		fs.StringVar(&user, "user", "", "another user's sessions (admin)")
	}); err != nil {
		return err
	}
	var out struct {
		Sessions []struct {
			ID        string    `json:"id"`
			Username  string    `json:"username"`
			AMR       []string  `json:"amr"`
			CreatedAt time.Time `json:"created_at"`
			LastSeen  time.Time `json:"last_seen"`
			Address   string    `json:"remote_addr"`
		} `json:"sessions"`
	}
	if err := call(g, "GET", "/v1/auth/sessions"+query(map[string]string{"username": user}), nil, &out); err != nil {
		return err
	}
	if g.format == "json" {
		return g.print(out)
	}
	tw := g.table("ID\tUSER\tAMR\tCREATED\tLAST SEEN\tADDRESS")
	for _, s := range out.Sessions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Username, strings.Join(s.AMR, ","),
			fmtTime(s.CreatedAt), fmtTime(s.LastSeen), orDash(s.Address))
	}
	return tw.Flush()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runPassword(g *globals, args []string) error {
	return sub(g, "password", args, map[string]func(*globals, []string) error{
		"change": passwordChange,
	})
}

func passwordChange(g *globals, args []string) error {
	var totp string
	if _, err := g.flags("password change", args, func(fs *flag.FlagSet) {
		fs.StringVar(&totp, "totp", "", "a TOTP or recovery code (required when TOTP is on)")
	}); err != nil {
		return err
	}
	cur, err := readSecret(g, "MOONVAULT_PASSWORD", "Current password: ")
	if err != nil {
		return err
	}
	next, err := readSecret(g, "MOONVAULT_NEW_PASSWORD", "New password: ")
	if err != nil {
		return err
	}
	body := map[string]string{"current_password": cur, "new_password": next}
	if totp != "" {
		body["totp"] = totp
	}
	if err := call(g, "POST", "/v1/auth/password", body, nil); err != nil {
		return err
	}
	fmt.Fprintln(g.stdout, "Password changed; your other sessions have ended.")
	return nil
}
