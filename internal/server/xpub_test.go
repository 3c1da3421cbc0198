package server

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestGranteeSeesNoXPub (review L4): an account-level xpub derives every
// address of the owner's HD account (siblings included), so only the
// owner (and the owner's API keys) see it, and the wallet's name; a user
// the account is granted to sees the account, its own derivation path and
// the master fingerprint (which derives nothing, and is in the signed
// provenance record anyway).
func TestGranteeSeesNoXPub(t *testing.T) {
	tn := startNode(t, t.TempDir(), nodeOpts{})
	root := initShamir(t, tn)
	alice := enrolledUser(t, tn, root, "alice", "user")
	bob := createUser(t, tn, root, "bob", "user")
	tn.mustCallTok(alice.token, 201, "POST", "/v1/wallets", map[string]string{"name": "main"}, nil)
	tn.mustCallTok(alice.token, 201, "POST", "/v1/accounts", map[string]any{"name": "btc0", "chain": "bitcoin", "wallet": "main"}, nil)
	tn.mustCallTok(alice.token, 204, "POST", "/v1/accounts/btc0/grants", map[string]string{"principal": "bob"}, nil)
	var key struct {
		Key string `json:"key"`
	}
	tn.mustCallTok(alice.token, 201, "POST", "/v1/auth/api-keys", map[string]any{"name": "reader", "actions": []string{"account.read"}, "accounts": []string{"*"}}, &key)

	type view struct {
		Address, XPub, Wallet, MasterFingerprint, DerivationPath string
	}
	read := func(raw json.RawMessage) view {
		var v struct {
			Address           string `json:"address"`
			XPub              string `json:"xpub"`
			Wallet            string `json:"wallet"`
			MasterFingerprint string `json:"master_fingerprint"`
			DerivationPath    string `json:"derivation_path"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		return view{v.Address, v.XPub, v.Wallet, v.MasterFingerprint, v.DerivationPath}
	}
	var raw json.RawMessage
	tn.mustCallTok(alice.token, 200, "GET", "/v1/accounts/btc0", nil, &raw)
	own := read(raw)
	if !strings.HasPrefix(own.XPub, "xpub") || own.Wallet != "main" || own.MasterFingerprint == "" || own.DerivationPath != "m/84'/0'/0'/0/0" {
		t.Fatalf("the owner sees %+v", own)
	}
	if c := tn.callKey(key.Key, "GET", "/v1/accounts/btc0", nil, &raw); c != 200 || read(raw).XPub != own.XPub {
		t.Fatalf("the owner's API key: %d %s", c, raw)
	}
	tn.mustCallTok(bob, 200, "GET", "/v1/accounts/alice:btc0", nil, &raw)
	granted := read(raw)
	if granted.XPub != "" || granted.Wallet != "" || strings.Contains(string(raw), "xpub") || strings.Contains(string(raw), "grants") || granted.Address != own.Address ||
		granted.MasterFingerprint != own.MasterFingerprint || granted.DerivationPath != own.DerivationPath {
		t.Fatalf("the grantee sees %s", raw)
	}
}
