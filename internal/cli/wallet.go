package cli

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moonvault/moonvault/internal/provenance"
)

func runWallet(g *globals, args []string) error {
	return sub(g, "wallet", args, map[string]func(*globals, []string) error{
		"create": walletCreate, "list": walletList, "get": walletGet, "delete": walletDelete,
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
	c, err := newClient(g)
	if err != nil {
		return err
	}
	var out map[string]any
	if err := c.do("POST", "/v1/wallets", body, &out); err != nil {
		return err
	}
	return g.print(out)
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
	c, err := newClient(g)
	if err != nil {
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
	q := url.Values{"limit": {fmt.Sprint(limit)}}
	if after != "" {
		q.Set("after", after)
	}
	if err := c.do("GET", "/v1/wallets?"+q.Encode(), nil, &out); err != nil {
		return err
	}
	if g.format == "json" {
		return g.print(out)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFINGERPRINT\tORIGIN\tCREATED")
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

func walletGet(g *globals, args []string) error {
	pos, err := g.flags("wallet get", args, nil)
	if err != nil {
		return err
	}
	name, err := oneName(pos, "usage: moonvault wallet get NAME")
	if err != nil {
		return err
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	var out map[string]any
	if err := c.do("GET", "/v1/wallets/"+name, nil, &out); err != nil {
		return err
	}
	return g.print(out)
}

func walletDelete(g *globals, args []string) error {
	pos, err := g.flags("wallet delete", args, nil)
	if err != nil {
		return err
	}
	name, err := oneName(pos, "usage: moonvault wallet delete NAME")
	if err != nil {
		return err
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	if err := c.do("DELETE", "/v1/wallets/"+name, nil, nil); err != nil {
		return err
	}
	fmt.Fprintln(g.stdout, "Wallet deleted; its seed was destroyed.")
	return nil
}

// psbtMagic starts every binary PSBT (BIP-174).
var psbtMagic = []byte("psbt\xff")

// accSignPSBT signs a PSBT file (binary or base64) with a Bitcoin account.
func accSignPSBT(g *globals, args []string) error {
	var finalize bool
	var outFile string
	pos, err := g.flags("account sign-psbt", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&finalize, "finalize", false, "finalize the inputs the account signs")
		fs.StringVar(&outFile, "out", "", "also write the signed PSBT (base64) to this file")
	})
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError{"usage: moonvault account sign-psbt [-finalize] [-out FILE] NAME FILE|-"}
	}
	raw, err := readArgFile(g, pos[1])
	if err != nil {
		return err
	}
	enc := string(bytes.TrimSpace(raw))
	if bytes.HasPrefix(raw, psbtMagic) {
		enc = base64.StdEncoding.EncodeToString(raw)
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	var out struct {
		PSBT         string `json:"psbt"`
		SignedInputs []int  `json:"signed_inputs"`
	}
	if err := c.do("POST", "/v1/accounts/"+url.PathEscape(pos[0])+"/sign-psbt", map[string]any{"psbt": enc, "finalize": finalize}, &out); err != nil {
		return err
	}
	if outFile != "" {
		if err := os.WriteFile(outFile, []byte(out.PSBT+"\n"), 0o600); err != nil {
			return err
		}
	}
	return g.print(out)
}

// readArgFile reads a file argument, or standard input for "-".
func readArgFile(g *globals, name string) ([]byte, error) {
	if name == "-" {
		var b bytes.Buffer
		_, err := b.ReadFrom(g.stdin)
		return b.Bytes(), err
	}
	return os.ReadFile(name) // #nosec G304 -- the user names the file
}

// accProvenance shows an account's provenance record and, with -verify,
// checks its signature against the vault's published key (and a pinned
// one).
func accProvenance(g *globals, args []string) error {
	var verify bool
	var pin string
	pos, err := g.flags("account provenance", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&verify, "verify", false, "check the record's signature against the key at /v1/sys/provenance/public-key")
		fs.StringVar(&pin, "pin", "", "with -verify: a file holding the expected public key (hex, or the JSON of /v1/sys/provenance/public-key); the published key must be it")
	})
	if err != nil {
		return err
	}
	name, err := oneName(pos, "usage: moonvault account provenance [-verify] [-pin FILE] NAME")
	if err != nil {
		return err
	}
	if pin != "" && !verify {
		return usageError{"-pin needs -verify"}
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	var p struct {
		Record    json.RawMessage `json:"record"`
		Payload   []byte          `json:"payload"`
		Signature []byte          `json:"signature"`
		KeyID     string          `json:"key_id"`
		Algorithm string          `json:"algorithm"`
	}
	if err := c.do("GET", "/v1/accounts/"+name+"/provenance", nil, &p); err != nil {
		return err
	}
	if !verify {
		return g.print(p)
	}
	pub, err := provenanceKey(c, pin)
	if err != nil {
		return err
	}
	r, err := provenance.Verify(pub, &provenance.Signed{Payload: p.Payload, Signature: p.Signature, KeyID: p.KeyID})
	if err != nil {
		return fmt.Errorf("provenance of %s does NOT verify: %w", pos[0], err)
	}
	want := pos[0]
	if o, n, ok := strings.Cut(want, ":"); ok {
		want = o + "/" + n
	}
	if !strings.HasSuffix(r.Account, "/"+want) && r.Account != want {
		return fmt.Errorf("provenance does NOT verify: the record is of account %q, not %q", r.Account, pos[0])
	}
	if g.format == "json" {
		return g.print(map[string]any{"verified": true, "key_id": p.KeyID, "record": r})
	}
	if err := g.print(r); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "\nVerified: signed by the vault's provenance key %s.\n", p.KeyID)
	return nil
}

// provenanceKey fetches the published verification key and, when pin names
// a file, checks that it is the pinned one.
func provenanceKey(c *client, pin string) (ed25519.PublicKey, error) {
	var k struct {
		KeyID     string `json:"key_id"`
		PublicKey string `json:"public_key"`
	}
	if err := c.do("GET", "/v1/sys/provenance/public-key", nil, &k); err != nil {
		return nil, err
	}
	pub, err := hex.DecodeString(k.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("the server published a malformed provenance key")
	}
	if pin == "" {
		return pub, nil
	}
	raw, err := os.ReadFile(pin) // #nosec G304 -- the user names the file
	if err != nil {
		return nil, err
	}
	pinned := strings.TrimSpace(string(raw))
	var doc struct {
		PublicKey string `json:"public_key"`
	}
	if json.Unmarshal(raw, &doc) == nil && doc.PublicKey != "" {
		pinned = doc.PublicKey
	}
	if !strings.EqualFold(pinned, k.PublicKey) {
		return nil, fmt.Errorf("provenance does NOT verify: the server's provenance key %s is not the one pinned in %s", k.KeyID, pin)
	}
	return pub, nil
}
