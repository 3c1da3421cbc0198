package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Transaction policies (docs/policies.md). Under policy_change_approvals a
// write is held for the quorum (perform prints the approval and exits 3).

func runPolicy(g *globals, args []string) error {
	return sub(g, "policy", args, map[string]func(*globals, []string) error{
		"create": policyCreate, "list": policyList, "get": policyGet, "update": policyUpdate,
		"delete": policyDelete, "evaluate": policyEvaluate,
	})
}

func policyCreate(g *globals, args []string) error {
	pos, err := g.flags("policy create", args, nil)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"usage: moonvault policy create FILE|-"}
	}
	doc, err := documentArg(g, pos[0])
	if err != nil {
		return err
	}
	return perform(g, "POST", "/v1/policies", nil, doc, "")
}

func policyList(g *globals, args []string) error {
	if _, err := g.flags("policy list", args, nil); err != nil {
		return err
	}
	var out struct {
		Policies []struct {
			ID        string    `json:"id"`
			Name      string    `json:"name"`
			Effect    string    `json:"effect"`
			Version   int       `json:"version"`
			Accounts  []string  `json:"accounts"`
			Owners    []string  `json:"owners"`
			Limit     any       `json:"limit"`
			UpdatedBy string    `json:"updated_by"`
			UpdatedAt time.Time `json:"updated_at"`
		} `json:"policies"`
	}
	if err := call(g, "GET", "/v1/policies", nil, &out); err != nil {
		return err
	}
	if g.format == "json" {
		return g.print(out)
	}
	tw := g.table("ID\tNAME\tEFFECT\tSCOPE\tLIMIT\tVERSION\tUPDATED")
	for _, p := range out.Policies {
		scope := "all accounts"
		switch {
		case len(p.Accounts) > 0:
			scope = "accounts " + strings.Join(p.Accounts, ",")
		case len(p.Owners) > 0:
			scope = "owners " + strings.Join(p.Owners, ",")
		}
		limit := "-"
		if p.Limit != nil {
			limit = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s by %s\n", p.ID, p.Name, p.Effect, scope, limit, p.Version,
			p.UpdatedAt.UTC().Format(time.RFC3339), p.UpdatedBy)
	}
	return tw.Flush()
}

func policyGet(g *globals, args []string) error {
	var versions bool
	pos, err := g.flags("policy get", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&versions, "versions", false, "show every version, with who changed it")
	})
	if err != nil {
		return err
	}
	id, err := oneName(pos, "usage: moonvault policy get [-versions] ID")
	if err != nil {
		return err
	}
	path := "/v1/policies/" + id
	if versions {
		path += "/versions"
	}
	var out map[string]any
	if err := call(g, "GET", path, nil, &out); err != nil {
		return err
	}
	if versions && g.format != "json" {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out["versions"])
	}
	return g.print(out)
}

// versionFlag registers -version N: the change is refused unless the
// policy is still at that version (sent as If-Match).
func versionFlag(v *int) func(fs *flag.FlagSet) {
	return func(fs *flag.FlagSet) {
		fs.IntVar(v, "version", 0, "refuse unless the policy is still at this version (If-Match)")
	}
}

// versionHeader is If-Match for -version N (0: none).
func versionHeader(v int) map[string]string {
	if v <= 0 {
		return nil
	}
	return map[string]string{"If-Match": strconv.Quote(strconv.Itoa(v))}
}

func policyUpdate(g *globals, args []string) error {
	var version int
	pos, err := g.flags("policy update", args, versionFlag(&version))
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError{"usage: moonvault policy update [-version N] ID FILE|-"}
	}
	doc, err := documentArg(g, pos[1])
	if err != nil {
		return err
	}
	return perform(g, "PUT", "/v1/policies/"+url.PathEscape(pos[0]), versionHeader(version), doc, "")
}

func policyDelete(g *globals, args []string) error {
	var version int
	pos, err := g.flags("policy delete", args, versionFlag(&version))
	if err != nil {
		return err
	}
	id, err := oneName(pos, "usage: moonvault policy delete [-version N] ID")
	if err != nil {
		return err
	}
	return perform(g, "DELETE", "/v1/policies/"+id, versionHeader(version), nil, "Policy deleted; its history is kept.")
}

func policyEvaluate(g *globals, args []string) error {
	var account, op, principal, amr string
	pos, err := g.flags("policy evaluate", args, func(fs *flag.FlagSet) {
		fs.StringVar(&account, "account", "", "account: NAME (yours), OWNER:NAME or OWNER/NAME (required)")
		fs.StringVar(&op, "operation", "sign-transaction", "sign-transaction, sign-message, sign-typed-data or sign-psbt")
		fs.StringVar(&principal, "principal", "", "admins: evaluate as this principal (a user, or apikey:ID)")
		fs.StringVar(&amr, "amr", "", "admins: comma-separated authentication methods (pwd,otp,apikey)")
	})
	if err != nil {
		return err
	}
	if len(pos) != 1 || account == "" {
		return usageError{"usage: moonvault policy evaluate -account NAME [-operation OP] REQUEST|@FILE|- (REQUEST: the sign endpoint's JSON body)"}
	}
	body, err := jsonArg(g, pos[0])
	if err != nil {
		return err
	}
	req := map[string]any{"account": account, "operation": op, "request": body}
	if principal != "" {
		req["principal"] = principal
	}
	if amr != "" {
		req["amr"] = strings.Split(amr, ",")
	}
	var out struct {
		Decision string `json:"decision"`
		Matched  []struct {
			Policy string `json:"policy"`
			Name   string `json:"name"`
			Effect string `json:"effect"`
			Reason string `json:"reason"`
		} `json:"matched"`
		Intent json.RawMessage `json:"intent"`
	}
	if err := call(g, "POST", "/v1/policies/evaluate", req, &out); err != nil {
		return err
	}
	if g.format == "json" {
		return g.print(out)
	}
	fmt.Fprintf(g.stdout, "decision: %s\n", out.Decision)
	for _, m := range out.Matched {
		fmt.Fprintf(g.stdout, "  %s %s (%s): %s\n", m.Effect, m.Policy, m.Name, m.Reason)
	}
	fmt.Fprintln(g.stdout, "intent:")
	var pretty any
	_ = json.Unmarshal(out.Intent, &pretty)
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("  ", "  ")
	fmt.Fprint(g.stdout, "  ")
	return enc.Encode(pretty)
}
