package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Transaction policies and approvals (docs/policies.md).

func runPolicy(g *globals, args []string) error {
	return sub(g, "policy", args, map[string]func(*globals, []string) error{
		"create": policyCreate, "list": policyList, "get": policyGet, "update": policyUpdate,
		"delete": policyDelete, "evaluate": policyEvaluate,
	})
}

func runApproval(g *globals, args []string) error {
	return sub(g, "approval", args, map[string]func(*globals, []string) error{
		"list": approvalList, "get": approvalGet, "approve": approvalVote("approve"), "reject": approvalVote("reject"),
	})
}

// documentArg reads a JSON document from FILE, or standard input for "-",
// and sends it as it is (the server decodes it strictly and names any
// field at fault).
func documentArg(g *globals, name string) (json.RawMessage, error) {
	var raw []byte
	var err error
	if name == "-" {
		raw, err = readAll(g)
	} else {
		raw, err = os.ReadFile(name) // #nosec G304 -- the user names the file
	}
	if err != nil {
		return nil, err
	}
	if !json.Valid(raw) {
		return nil, usageError{name + " is not valid JSON"}
	}
	return raw, nil
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
	c, err := newClient(g)
	if err != nil {
		return err
	}
	var out map[string]any
	status, err := c.send("POST", "/v1/policies", nil, doc, &out)
	if err != nil {
		return err
	}
	if status == 202 {
		return held(g, out)
	}
	return g.print(out)
}

func policyList(g *globals, args []string) error {
	if _, err := g.flags("policy list", args, nil); err != nil {
		return err
	}
	c, err := newClient(g)
	if err != nil {
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
	if err := c.do("GET", "/v1/policies", nil, &out); err != nil {
		return err
	}
	if g.format == "json" {
		return g.print(out)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tEFFECT\tSCOPE\tLIMIT\tVERSION\tUPDATED")
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
	c, err := newClient(g)
	if err != nil {
		return err
	}
	path := "/v1/policies/" + id
	if versions {
		path += "/versions"
	}
	var out map[string]any
	if err := c.do("GET", path, nil, &out); err != nil {
		return err
	}
	if versions && g.format != "json" {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out["versions"])
	}
	return g.print(out)
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
	pos, err := g.flags("policy update", args, func(fs *flag.FlagSet) {
		fs.IntVar(&version, "version", 0, "refuse unless the policy is still at this version (If-Match)")
	})
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
	c, err := newClient(g)
	if err != nil {
		return err
	}
	var out map[string]any
	status, err := c.send("PUT", "/v1/policies/"+url.PathEscape(pos[0]), versionHeader(version), doc, &out)
	if err != nil {
		return err
	}
	if status == 202 {
		return held(g, out)
	}
	return g.print(out)
}

func policyDelete(g *globals, args []string) error {
	var version int
	pos, err := g.flags("policy delete", args, func(fs *flag.FlagSet) {
		fs.IntVar(&version, "version", 0, "refuse unless the policy is still at this version (If-Match)")
	})
	if err != nil {
		return err
	}
	id, err := oneName(pos, "usage: moonvault policy delete [-version N] ID")
	if err != nil {
		return err
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	var out map[string]any
	status, err := c.send("DELETE", "/v1/policies/"+id, versionHeader(version), nil, &out)
	if err != nil {
		return err
	}
	if status == 202 {
		return held(g, out)
	}
	fmt.Fprintln(g.stdout, "Policy deleted; its history is kept.")
	return nil
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
	c, err := newClient(g)
	if err != nil {
		return err
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
	if err := c.do("POST", "/v1/policies/evaluate", req, &out); err != nil {
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

type approvalRow struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Status    string    `json:"status"`
	Requester string    `json:"requester"`
	Account   string    `json:"account"`
	Operation string    `json:"operation"`
	ExpiresAt time.Time `json:"expires_at"`
	Approvals []struct {
		User string `json:"user"`
	} `json:"approvals"`
	Requirements []struct {
		Threshold int `json:"threshold"`
	} `json:"requirements"`
}

func approvalList(g *globals, args []string) error {
	var status, after string
	var limit int
	if _, err := g.flags("approval list", args, func(fs *flag.FlagSet) {
		fs.StringVar(&status, "status", "", "only this status: pending, approved, signed, applied, denied, rejected, expired")
		fs.IntVar(&limit, "limit", 100, "at most this many, newest first")
		fs.StringVar(&after, "after", "", "the next page: the id the previous page named")
	}); err != nil {
		return err
	}
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if status != "" {
		q.Set("status", status)
	}
	if after != "" {
		q.Set("after", after)
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	var out struct {
		Approvals []approvalRow `json:"approvals"`
		Next      string        `json:"next"`
	}
	if err := c.do("GET", "/v1/approvals?"+q.Encode(), nil, &out); err != nil {
		return err
	}
	if g.format == "json" {
		return g.print(out)
	}
	if out.Next != "" {
		defer fmt.Fprintf(g.stdout, "More: moonvault approval list -after %s\n", out.Next)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tREQUESTER\tACCOUNT\tOPERATION\tAPPROVED\tEXPIRES")
	for _, a := range out.Approvals {
		need := 0
		for _, r := range a.Requirements {
			need += r.Threshold
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", a.ID, a.Status, a.Requester, orDash(a.Account), a.Operation,
			len(a.Approvals), need, a.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func approvalGet(g *globals, args []string) error {
	pos, err := g.flags("approval get", args, nil)
	if err != nil {
		return err
	}
	id, err := oneName(pos, "usage: moonvault approval get ID")
	if err != nil {
		return err
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	var out map[string]any
	if err := c.do("GET", "/v1/approvals/"+id, nil, &out); err != nil {
		return err
	}
	return g.print(out)
}

// approvalVote approves or rejects; it needs a login with a one-time code
// within the last 10 minutes.
func approvalVote(verb string) func(*globals, []string) error {
	return func(g *globals, args []string) error {
		pos, err := g.flags("approval "+verb, args, nil)
		if err != nil {
			return err
		}
		id, err := oneName(pos, "usage: moonvault approval "+verb+" ID")
		if err != nil {
			return err
		}
		c, err := newClient(g)
		if err != nil {
			return err
		}
		var out map[string]any
		if err := c.do("POST", "/v1/approvals/"+id+"/"+verb, nil, &out); err != nil {
			return err
		}
		if g.format != "json" {
			switch out["status"] {
			case "signed":
				fmt.Fprintln(g.stdout, "Approved; the threshold was reached and the request is signed (result below).")
			case "applied":
				fmt.Fprintln(g.stdout, "Approved; the threshold was reached and the change is applied.")
			case "denied":
				fmt.Fprintf(g.stdout, "Approved, but refused at the threshold: %v\n", out["reason"])
			case "pending":
				fmt.Fprintln(g.stdout, "Approval recorded; more approvers are needed.")
			case "rejected":
				fmt.Fprintln(g.stdout, "Rejected.")
			}
		}
		return g.print(out)
	}
}
