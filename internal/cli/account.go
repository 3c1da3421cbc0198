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
	"strconv"
	"strings"

	"github.com/moonvault/moonvault/internal/provenance"
)

func runAccount(g *globals, args []string) error {
	return sub(g, "account", args, map[string]func(*globals, []string) error{
		"create": accCreate, "list": accList,
		"get":          simple{cmd: "account get", arg: "NAME", method: "GET", path: "/v1/accounts/"}.run,
		"delete":       simple{cmd: "account delete", arg: "NAME", method: "DELETE", path: "/v1/accounts/", done: "Account deleted; its key material was destroyed."}.run,
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
	return perform(g, "POST", "/v1/accounts", nil, body, "")
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
	var out struct {
		Accounts []map[string]any `json:"accounts"`
		Next     string           `json:"next"`
	}
	if err := call(g, "GET", "/v1/accounts"+query(map[string]string{"limit": strconv.Itoa(limit), "after": after, "chain": chainName}), nil, &out); err != nil {
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

// signAndPrint sends a sign request and prints the answer; a request a
// transaction policy holds for approval prints the approval and exits 3.
func signAndPrint(g *globals, account, op string, body any) error {
	return perform(g, "POST", "/v1/accounts/"+url.PathEscape(account)+"/"+op, nil, body, "")
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
	return signAndPrint(g, pos[0], "sign-message", map[string]string{"data": pos[1], "encoding": encoding})
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
	return signAndPrint(g, pos[0], "sign-typed-data", map[string]any{"typed_data": td})
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
	return signAndPrint(g, pos[0], "sign-transaction", map[string]any{"transaction": tx})
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
	raw, err := readInput(g, pos[1])
	if err != nil {
		return err
	}
	enc := string(bytes.TrimSpace(raw))
	if bytes.HasPrefix(raw, psbtMagic) {
		enc = base64.StdEncoding.EncodeToString(raw)
	}
	var out struct {
		PSBT         string `json:"psbt"`
		SignedInputs []int  `json:"signed_inputs"`
	}
	if err := call(g, "POST", "/v1/accounts/"+url.PathEscape(pos[0])+"/sign-psbt", map[string]any{"psbt": enc, "finalize": finalize}, &out); err != nil {
		return err
	}
	if outFile != "" {
		if err := os.WriteFile(outFile, []byte(out.PSBT+"\n"), 0o600); err != nil {
			return err
		}
	}
	return g.print(out)
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
	if err := call(g, "DELETE", "/v1/accounts/"+url.PathEscape(pos[0])+"/grants/"+url.PathEscape(pos[1]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "%s may no longer use %s.\n", pos[1], pos[0])
	return nil
}
