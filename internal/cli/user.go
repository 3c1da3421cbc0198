package cli

import (
	"flag"
	"fmt"
	"time"
)

// User administration (admin). Under policy_change_approvals a change to
// an admin or a named approver is held for the quorum (perform prints the
// approval and exits 3).

func runUser(g *globals, args []string) error {
	return sub(g, "user", args, map[string]func(*globals, []string) error{
		"create":       userCreate,
		"list":         userList,
		"get":          simple{cmd: "user get", arg: "NAME", method: "GET", path: "/v1/users/"}.run,
		"delete":       simple{cmd: "user delete", arg: "NAME", method: "DELETE", path: "/v1/users/", done: "User deleted."}.run,
		"disable":      simple{cmd: "user disable", arg: "NAME", method: "POST", path: "/v1/users/", suffix: "/disable", done: "User disabled; all of its sessions ended."}.run,
		"enable":       simple{cmd: "user enable", arg: "NAME", method: "POST", path: "/v1/users/", suffix: "/enable", done: "User enabled."}.run,
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
	return perform(g, "POST", "/v1/users", nil, map[string]string{"username": pos[0], "password": pw, "role": role}, "")
}

func userList(g *globals, args []string) error {
	if _, err := g.flags("user list", args, nil); err != nil {
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
	if err := call(g, "GET", "/v1/users", nil, &out); err != nil {
		return err
	}
	if g.format == "json" {
		return g.print(out)
	}
	tw := g.table("USERNAME\tROLE\tMFA\tDISABLED\tCREATED")
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

// userSetPassword resets a user's password; under the quorum, an admin's
// or an approver's waits for it.
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
	return perform(g, "POST", "/v1/users/"+name+"/password", nil, map[string]string{"password": pw}, "Password set; every session of the user has ended.")
}
