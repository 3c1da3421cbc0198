package cli

import (
	"flag"
	"fmt"
	"strconv"
	"time"
)

func runWallet(g *globals, args []string) error {
	return sub(g, "wallet", args, map[string]func(*globals, []string) error{
		"create": walletCreate, "list": walletList,
		"get":    simple{cmd: "wallet get", arg: "NAME", method: "GET", path: "/v1/wallets/"}.run,
		"delete": simple{cmd: "wallet delete", arg: "NAME", method: "DELETE", path: "/v1/wallets/", done: "Wallet deleted; its seed was destroyed."}.run,
	})
}

func walletCreate(g *globals, args []string) error {
	var importMnemonic, passphrase bool
	pos, err := g.flags("wallet create", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&importMnemonic, "import", false, "import a BIP-39 mnemonic read from MOONVAULT_MNEMONIC or standard input (needs MFA step-up)")
		fs.BoolVar(&passphrase, "passphrase", false, "with -import: also read a BIP-39 passphrase from MOONVAULT_BIP39_PASSPHRASE or standard input")
	})
	if err != nil {
		return err
	}
	if passphrase && !importMnemonic {
		return usageError{"-passphrase needs -import: a new wallet's mnemonic is never shown, so a passphrase would add nothing"}
	}
	body := map[string]string{}
	if len(pos) > 0 {
		body["name"] = pos[0]
	}
	if importMnemonic {
		m, err := readSecret(g, "MOONVAULT_MNEMONIC", "Mnemonic: ")
		if err != nil {
			return err
		}
		body["mnemonic"] = m
		if passphrase {
			p, err := readSecret(g, "MOONVAULT_BIP39_PASSPHRASE", "BIP-39 passphrase: ")
			if err != nil {
				return err
			}
			body["passphrase"] = p
		}
	}
	return perform(g, "POST", "/v1/wallets", nil, body, "")
}

func walletList(g *globals, args []string) error {
	var limit int
	var after string
	if _, err := g.flags("wallet list", args, func(fs *flag.FlagSet) {
		fs.IntVar(&limit, "limit", 100, "page size")
		fs.StringVar(&after, "after", "", "list names after this one")
	}); err != nil {
		return err
	}
	var out struct {
		Wallets []struct {
			Name        string    `json:"name"`
			Fingerprint string    `json:"fingerprint"`
			Origin      string    `json:"origin"`
			CreatedAt   time.Time `json:"created_at"`
		} `json:"wallets"`
		Next string `json:"next"`
	}
	if err := call(g, "GET", "/v1/wallets"+query(map[string]string{"limit": strconv.Itoa(limit), "after": after}), nil, &out); err != nil {
		return err
	}
	if g.format == "json" {
		return g.print(out)
	}
	tw := g.table("NAME\tFINGERPRINT\tORIGIN\tCREATED")
	for _, w := range out.Wallets {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", w.Name, w.Fingerprint, w.Origin, w.CreatedAt.UTC().Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if out.Next != "" {
		fmt.Fprintf(g.stdout, "(more: -after %s)\n", out.Next)
	}
	return nil
}
