package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/pquerna/otp/totp"

	"github.com/moonvault/moonvault/internal/fips"
)

// rpcAs sends one JSON-RPC call with a bearer token or an API key and
// returns the result, or the error message.
func rpcAs(t *testing.T, tn *testNode, bearer, apiKey, method string, params ...any) (json.RawMessage, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	req, _ := http.NewRequest("POST", tn.url+"/v1/rpc", bytes.NewReader(body))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if apiKey != "" {
		req.Header.Set("X-API-Key", apiKey)
	}
	resp, err := tn.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: HTTP %d %s", method, resp.StatusCode, raw)
	}
	var out struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	if out.Error != nil {
		return nil, out.Error.Message
	}
	return out.Result, ""
}

// TestJSONRPCAuthorization: JSON-RPC resolves and authorizes the signing
// account exactly as REST does. Another user's address is unknown to the
// caller, on every signing method; a grant opens it, its revocation closes
// it; an API key signs only with the accounts it is scoped to.
func TestJSONRPCAuthorization(t *testing.T) {
	tn := startNode(t, t.TempDir(), nodeOpts{})
	tn.token = initShamir(t, tn)
	const pw = "correct horse battery staple"
	tn.mustCall(201, "POST", "/v1/users", map[string]string{"username": "alice", "password": pw}, nil)
	tn.mustCall(201, "POST", "/v1/users", map[string]string{"username": "bob", "password": pw}, nil)
	alice, bob := login(t, tn, "alice", pw), login(t, tn, "bob", pw)
	var treasury, other, bobs account
	tn.token = alice
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "treasury"}, &treasury)
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "other"}, &other)
	tn.token = bob
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "mine"}, &bobs)

	tx := func(from string) map[string]any {
		return map[string]any{"from": from, "to": "0x3535353535353535353535353535353535353535", "chainId": "0x1", "nonce": "0x0", "gas": "0x5208", "maxFeePerGas": "0x2", "maxPriorityFeePerGas": "0x1", "value": "0x1"}
	}
	typed := `{"types":{"EIP712Domain":[{"name":"name","type":"string"}],"M":[{"name":"x","type":"uint256"}]},"primaryType":"M","domain":{"name":"t"},"message":{"x":1}}`
	signCalls := func(addr string) map[string][]any {
		return map[string][]any{
			"personal_sign":        {"0x68656c6c6f", addr},
			"eth_sign":             {addr, "0x68656c6c6f"},
			"eth_signTransaction":  {tx(addr)},
			"eth_signTypedData_v4": {addr, json.RawMessage(typed)},
		}
	}
	refused := func(who, bearer, apiKey, addr, want string) {
		t.Helper()
		for method, params := range signCalls(addr) {
			if res, msg := rpcAs(t, tn, bearer, apiKey, method, params...); res != nil || !strings.Contains(msg, want) {
				t.Errorf("%s %s with %s: result %s, error %q; want %q", who, method, addr, res, msg, want)
			}
		}
	}
	allowed := func(who, bearer, apiKey, addr string) {
		t.Helper()
		for method, params := range signCalls(addr) {
			if res, msg := rpcAs(t, tn, bearer, apiKey, method, params...); res == nil {
				t.Errorf("%s %s with %s refused: %s", who, method, addr, msg)
			}
		}
	}

	// Another user's address.
	refused("bob", bob, "", treasury.Address, "unknown account "+treasury.Address)
	allowed("bob", bob, "", bobs.Address)
	var sigHex string
	res, _ := rpcAs(t, tn, bob, "", "personal_sign", "0x68656c6c6f", bobs.Address)
	_ = json.Unmarshal(res, &sigHex)
	if got := recoverSigner(t, accounts.TextHash([]byte("hello")), sigHex); got.Hex() != bobs.Address {
		t.Fatalf("signed by %s, want %s", got.Hex(), bobs.Address)
	}

	// Grants and API keys need a step-up login with TOTP.
	tn.token = alice
	var enr struct {
		Secret string `json:"secret"`
	}
	tn.mustCall(200, "POST", "/v1/auth/mfa/totp/enroll", nil, &enr)
	var code, code2 string
	fips.Outside(func() { // TOTP's HMAC-SHA-1 is outside the FIPS boundary (docs/fips.md)
		code, _ = totp.GenerateCode(enr.Secret, time.Now())
		code2, _ = totp.GenerateCode(enr.Secret, time.Now().Add(30*time.Second))
	})
	tn.mustCall(200, "POST", "/v1/auth/mfa/totp/confirm", map[string]string{"code": code}, nil)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	tn.mustCall(200, "POST", "/v1/auth/login", map[string]string{"username": "alice", "password": pw, "totp": code2}, &tok)
	tn.token = tok.AccessToken

	// A grant opens the account to bob, on JSON-RPC as on REST; revoking closes it.
	tn.mustCall(204, "POST", "/v1/accounts/treasury/grants", map[string]string{"principal": "bob"}, nil)
	allowed("bob (granted)", bob, "", treasury.Address)
	refused("bob (granted treasury only)", bob, "", other.Address, "unknown account")
	tn.mustCall(204, "DELETE", "/v1/accounts/treasury/grants/bob", nil, nil)
	refused("bob (grant revoked)", bob, "", treasury.Address, "unknown account")

	// An API key scoped to other accounts.
	var key struct {
		Key string `json:"key"`
	}
	tn.mustCall(201, "POST", "/v1/auth/api-keys", map[string]any{"name": "other-only", "actions": []string{"account.sign", "account.read"}, "accounts": []string{"other"}}, &key)
	refused("alice's key scoped to other", "", key.Key, treasury.Address, "forbidden")
	allowed("alice's key scoped to other", "", key.Key, other.Address)
	refused("alice's key", "", key.Key, bobs.Address, "unknown account")
}
