package cli

import (
	"flag"
	"fmt"
)

func runOperator(g *globals, args []string) error {
	return sub(g, "operator", args, map[string]func(*globals, []string) error{
		"init":          opInit,
		"unseal":        opUnseal,
		"seal":          simple{cmd: "operator seal", method: "POST", path: "/v1/sys/seal", done: "Vault sealed; keys in memory were zeroized."}.run,
		"status":        opStatus,
		"rotate":        simple{cmd: "operator rotate", method: "POST", path: "/v1/sys/rotate"}.run,
		"rekey":         opRekey,
		"rewrap":        simple{cmd: "operator rewrap", method: "POST", path: "/v1/sys/rewrap"}.run,
		"generate-root": opGenerateRoot,
		"snapshot":      opSnapshot,
		// Tokens signed with the previous key stay valid until they expire.
		"rotate-jwt": simple{cmd: "operator rotate-jwt", method: "POST", path: "/v1/auth/keys/rotate", done: "JWT signing key rotated: new tokens are signed with the new key."}.run,
	})
}

func opInit(g *globals, args []string) error {
	var n, t, rn, rt int
	if _, err := g.flags("operator init", args, func(fs *flag.FlagSet) {
		fs.IntVar(&n, "key-shares", 5, "number of unseal key shares (Shamir seal)")
		fs.IntVar(&t, "key-threshold", 3, "shares needed to unseal")
		fs.IntVar(&rn, "recovery-shares", 0, "number of recovery key shares (pkcs11 seal; default = key-shares)")
		fs.IntVar(&rt, "recovery-threshold", 0, "recovery shares needed (pkcs11 seal; default = key-threshold)")
	}); err != nil {
		return err
	}
	var out map[string]any
	if rn == 0 {
		rn, rt = n, t
	}
	if err := call(g, "POST", "/v1/sys/init", map[string]int{"secret_shares": n, "secret_threshold": t, "recovery_shares": rn, "recovery_threshold": rt}, &out); err != nil {
		return err
	}
	if g.format == "json" {
		return g.print(out)
	}
	if ks, ok := out["unseal_keys_b64"].([]any); ok {
		printKeys(g, "Unseal Key", ks)
	}
	if ks, ok := out["recovery_keys_b64"].([]any); ok {
		printKeys(g, "Recovery Key", ks)
	}
	fmt.Fprintf(g.stdout, "\nInitial Root Token (expires within 1 hour): %v\n\nStore the key shares apart; they are shown only once.\n", out["root_token"])
	return nil
}

func opUnseal(g *globals, args []string) error {
	var reset, migrate bool
	pos, err := g.flags("operator unseal", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&reset, "reset", false, "discard the unseal progress")
		fs.BoolVar(&migrate, "migrate", false, "seal migration: move a Shamir-sealed vault to the HSM configured on the server")
	})
	if err != nil {
		return err
	}
	body := map[string]any{"reset": reset, "migrate": migrate}
	if !reset {
		switch len(pos) {
		case 0:
			// Prompted (or piped), so the share stays out of argv and history.
			k, err := readSecret(g, "MOONVAULT_UNSEAL_KEY", "Unseal key: ")
			if err != nil {
				return err
			}
			body["key"] = k
		case 1:
			body["key"] = pos[0]
		default:
			return usageError{"usage: moonvault operator unseal [KEY] (prompted when omitted)"}
		}
	}
	var st map[string]any
	if err := call(g, "POST", "/v1/sys/unseal", body, &st); err != nil {
		return err
	}
	keys, migrated := st["recovery_keys_b64"].([]any)
	if g.format == "json" || !migrated {
		return g.print(st)
	}
	// The migration is done: the recovery shares, one per line, once.
	delete(st, "recovery_keys_b64")
	if err := g.print(st); err != nil {
		return err
	}
	fmt.Fprintln(g.stdout)
	printKeys(g, "Recovery Key", keys)
	fmt.Fprintln(g.stdout, "\nThe vault is now sealed by the HSM. Store the recovery key shares apart; they are shown only once.")
	return nil
}

// printKeys prints key shares one per line: "<label> N: <share>".
func printKeys(g *globals, label string, keys []any) {
	for i, k := range keys {
		fmt.Fprintf(g.stdout, "%s %d: %v\n", label, i+1, k)
	}
}

func opStatus(g *globals, args []string) error {
	if _, err := g.flags("operator status", args, nil); err != nil {
		return err
	}
	var st map[string]any
	if err := call(g, "GET", "/v1/sys/seal-status", nil, &st); err != nil {
		return err
	}
	if err := g.print(st); err != nil {
		return err
	}
	if sealed, _ := st["sealed"].(bool); sealed {
		return exitCode(2)
	}
	return nil
}

// exitCode lets status report "sealed" as exit 2, as Vault's does.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// opRekey starts a rekey to the new split and presents the given current
// shares: moonvault operator rekey -key-shares N -key-threshold T KEY...
func opRekey(g *globals, args []string) error {
	var n, t int
	var cancel bool
	pos, err := g.flags("operator rekey", args, func(fs *flag.FlagSet) {
		fs.IntVar(&n, "key-shares", 5, "new number of shares")
		fs.IntVar(&t, "key-threshold", 3, "new threshold")
		fs.BoolVar(&cancel, "cancel", false, "cancel a rekey in progress")
	})
	if err != nil {
		return err
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	if cancel {
		return c.do("DELETE", "/v1/sys/rekey/init", nil, nil)
	}
	if len(pos) == 0 {
		return usageError{"usage: moonvault operator rekey -key-shares N -key-threshold T KEY [KEY...] (current unseal or recovery shares)"}
	}
	var st map[string]any
	if err := c.do("POST", "/v1/sys/rekey/init", map[string]int{"secret_shares": n, "secret_threshold": t}, &st); err != nil {
		return err
	}
	nonce, _ := st["nonce"].(string)
	for _, k := range pos {
		if err := c.do("POST", "/v1/sys/rekey/update", map[string]string{"nonce": nonce, "key": k}, &st); err != nil {
			return err
		}
		if done, _ := st["complete"].(bool); done {
			break
		}
	}
	if done, _ := st["complete"].(bool); !done {
		return fmt.Errorf("rekey needs %v shares, %v given; the rekey stays open (nonce %s)", st["required"], st["progress"], nonce)
	}
	if g.format == "json" {
		return g.print(st)
	}
	ks, _ := st["keys_b64"].([]any)
	printKeys(g, "Key", ks)
	fmt.Fprintf(g.stdout, "\nRekeyed to %d shares, threshold %d. The old shares no longer work.\n", n, t)
	return nil
}

func opGenerateRoot(g *globals, args []string) error {
	pos, err := g.flags("operator generate-root", args, nil)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageError{"usage: moonvault operator generate-root KEY [KEY...] (unseal or recovery shares)"}
	}
	return perform(g, "POST", "/v1/sys/generate-root", nil, map[string]any{"keys": pos}, "")
}
