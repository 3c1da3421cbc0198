package cli

import (
	"flag"
	"fmt"
	"strconv"
	"time"
)

// Requests held for approval: signatures a transaction policy holds and
// changes held under policy_change_approvals (docs/policies.md).

func runApproval(g *globals, args []string) error {
	return sub(g, "approval", args, map[string]func(*globals, []string) error{
		"list":    approvalList,
		"get":     simple{cmd: "approval get", arg: "ID", method: "GET", path: "/v1/approvals/"}.run,
		"approve": approvalVote("approve"), "reject": approvalVote("reject"),
	})
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
	var out struct {
		Approvals []approvalRow `json:"approvals"`
		Next      string        `json:"next"`
	}
	if err := call(g, "GET", "/v1/approvals"+query(map[string]string{"limit": strconv.Itoa(limit), "status": status, "after": after}), nil, &out); err != nil {
		return err
	}
	if g.format == "json" {
		return g.print(out)
	}
	if out.Next != "" {
		defer fmt.Fprintf(g.stdout, "More: moonvault approval list -after %s\n", out.Next)
	}
	tw := g.table("ID\tSTATUS\tREQUESTER\tACCOUNT\tOPERATION\tAPPROVED\tEXPIRES")
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
		var out map[string]any
		if err := call(g, "POST", "/v1/approvals/"+id+"/"+verb, nil, &out); err != nil {
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
