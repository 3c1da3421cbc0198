package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/pquerna/otp/totp"

	"github.com/moonvault/moonvault/internal/fips"
)

// rpcAnswer is one JSON-RPC 2.0 response.
type rpcAnswer struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// rpcCaller is a credential: a bearer token or an API key.
type rpcCaller struct {
	name   string
	bearer string
	apiKey string
}

// rpc posts one JSON-RPC request to /v1/rpc over HTTPS as c.
func rpc(t *testing.T, tn *testNode, c rpcCaller, method string, params ...any) rpcAnswer {
	t.Helper()
	if params == nil {
		params = []any{}
	}
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest("POST", tn.url+"/v1/rpc", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if c.apiKey != "" {
		req.Header.Set("X-API-Key", c.apiKey)
	} else {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	resp, err := tn.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.name, method, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: HTTP %d: %s", c.name, method, resp.StatusCode, raw)
	}
	var a rpcAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("%s %s: %q: %v", c.name, method, raw, err)
	}
	if (a.Error == nil) == (len(a.Result) == 0) {
		t.Fatalf("%s %s: want exactly one of result and error: %s", c.name, method, raw)
	}
	return a
}

// mfaLogin enrols TOTP for user (logged in with token) and logs in again
// with a code, so that the session may pass step-up (API key creation).
func mfaLogin(t *testing.T, tn *testNode, token, user, pw string) string {
	t.Helper()
	var enr struct {
		Secret string `json:"secret"`
	}
	if got := tn.callTok(token, "POST", "/v1/auth/mfa/totp/enroll", nil, &enr); got != 200 {
		t.Fatalf("enrol %s = %d", user, got)
	}
	// TOTP's HMAC-SHA-1 is outside the FIPS boundary on purpose (docs/fips.md).
	var code, next string
	var err error
	fips.Outside(func() {
		if code, err = totp.GenerateCode(enr.Secret, time.Now()); err == nil {
			// The confirm code is spent; the next step's code is in the ±1 window.
			next, err = totp.GenerateCode(enr.Secret, time.Now().Add(30*time.Second))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := tn.callTok(token, "POST", "/v1/auth/mfa/totp/confirm", map[string]string{"code": code}, nil); got != 200 {
		t.Fatalf("confirm %s = %d", user, got)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if got := tn.call("POST", "/v1/auth/login", map[string]string{"username": user, "password": pw, "totp": next}, &tok); got != 200 {
		t.Fatalf("MFA login %s = %d", user, got)
	}
	return tok.AccessToken
}

// TestRPCAuthorization checks, over HTTPS, that the JSON-RPC signer signs
// only with accounts the caller may use: its own, ones granted to it, and
// for an API key only the accounts and actions of its scope. A refusal says
// "unknown account" (as for a REST 404) and never carries a signature.
func TestRPCAuthorization(t *testing.T) {
	tn := startNode(t, t.TempDir(), nodeOpts{})
	root := initShamir(t, tn)
	tn.token = root
	const pw = "correct horse battery staple"
	for _, u := range []string{"alice", "bob", "carol"} {
		tn.mustCall(201, "POST", "/v1/users", map[string]string{"username": u, "password": pw}, nil)
	}
	aliceTok := login(t, tn, "alice", pw)
	alice := rpcCaller{name: "alice", bearer: aliceTok}
	bob := rpcCaller{name: "bob", bearer: login(t, tn, "bob", pw)}
	carol := rpcCaller{name: "carol", bearer: login(t, tn, "carol", pw)}
	admin := rpcCaller{name: "root", bearer: root}

	var treasury, payroll, bobs account
	tn.token = aliceTok
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "treasury"}, &treasury)
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "payroll"}, &payroll)
	tn.token = bob.bearer
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "mine"}, &bobs)

	const to = "0x3535353535353535353535353535353535353535"
	mail := json.RawMessage(`{"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"chainId","type":"uint256"}],"Mail":[{"name":"contents","type":"string"}]},"primaryType":"Mail","domain":{"name":"Ether Mail","chainId":1},"message":{"contents":"Hello"}}`)
	// signAs tries every signing method with addr; it returns the answers.
	signAs := func(t *testing.T, c rpcCaller, addr string) map[string]rpcAnswer {
		tx := map[string]any{"from": addr, "to": to, "chainId": "0x1", "nonce": "0x0", "gas": "0x5208", "maxFeePerGas": "0x2", "maxPriorityFeePerGas": "0x1", "value": "0x1"}
		return map[string]rpcAnswer{
			"personal_sign":        rpc(t, tn, c, "personal_sign", "0x68656c6c6f", addr),
			"eth_sign":             rpc(t, tn, c, "eth_sign", addr, "0x68656c6c6f"),
			"eth_signTypedData_v4": rpc(t, tn, c, "eth_signTypedData_v4", addr, mail),
			"eth_signTransaction":  rpc(t, tn, c, "eth_signTransaction", tx),
		}
	}
	mustRefuse := func(t *testing.T, c rpcCaller, addr, why string) {
		t.Helper()
		for m, a := range signAs(t, c, addr) {
			if a.Error == nil {
				t.Errorf("%s: %s signed with %s (%s): %s", why, c.name, addr, m, a.Result)
				continue
			}
			// Another owner's account is unknown to the caller (as a REST
			// 404: names do not leak); the owner's own account outside an API
			// key's scope is forbidden (as a REST 403).
			want := "unknown account"
			if addr == treasury.Address || addr == payroll.Address {
				if c.apiKey != "" && strings.HasPrefix(c.name, "alice") {
					want = "forbidden"
				}
			}
			if a.Error.Code != -32000 || !strings.Contains(a.Error.Message, want) {
				t.Errorf("%s: %s %s: error %+v, want -32000 %s", why, c.name, m, *a.Error, want)
			}
		}
	}
	mustSign := func(t *testing.T, c rpcCaller, addr, why string) {
		t.Helper()
		for m, a := range signAs(t, c, addr) {
			if a.Error != nil {
				t.Errorf("%s: %s %s with %s: %+v", why, c.name, m, addr, *a.Error)
				continue
			}
			var hexSig string
			if err := json.Unmarshal(a.Result, &hexSig); err != nil {
				t.Fatalf("%s %s: %s", c.name, m, a.Result)
			}
			switch m {
			case "personal_sign", "eth_sign":
				if got := recoverSigner(t, accounts.TextHash([]byte("hello")), hexSig); got.Hex() != addr {
					t.Errorf("%s: %s %s recovers %s, want %s", why, c.name, m, got.Hex(), addr)
				}
			case "eth_signTransaction":
				var tx types.Transaction
				if err := tx.UnmarshalBinary(hexutil.MustDecode(hexSig)); err != nil {
					t.Fatal(err)
				}
				if from, err := types.Sender(types.LatestSignerForChainID(tx.ChainId()), &tx); err != nil || from.Hex() != addr {
					t.Errorf("%s: %s %s sender %s %v, want %s", why, c.name, m, from.Hex(), err, addr)
				}
			}
		}
	}
	accountsOf := func(t *testing.T, c rpcCaller) []string {
		t.Helper()
		var out []string
		a := rpc(t, tn, c, "eth_accounts")
		if a.Error != nil {
			t.Fatalf("%s eth_accounts: %+v", c.name, *a.Error)
		}
		if err := json.Unmarshal(a.Result, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}

	var aliceMFA string // alice's session after a TOTP login (step-up)

	// owner
	{
		mustSign(t, alice, treasury.Address, "owner")
		if got := accountsOf(t, alice); len(got) != 2 || !slices.Contains(got, treasury.Address) || !slices.Contains(got, payroll.Address) {
			t.Errorf("alice's eth_accounts = %v", got)
		}
	}

	// another user's address
	{
		mustRefuse(t, bob, treasury.Address, "not the owner")
		mustRefuse(t, alice, bobs.Address, "not the owner")
		// Admins manage users; they do not sign with users' keys.
		mustRefuse(t, admin, treasury.Address, "admin")
		if got := accountsOf(t, bob); slices.Contains(got, treasury.Address) || !slices.Contains(got, bobs.Address) {
			t.Errorf("bob's eth_accounts = %v", got)
		}
		// A batch signs nothing it may not, even next to an allowed request.
		body := `[{"jsonrpc":"2.0","id":1,"method":"personal_sign","params":["0x01","` + bobs.Address + `"]},` +
			`{"jsonrpc":"2.0","id":2,"method":"personal_sign","params":["0x01","` + treasury.Address + `"]}]`
		var answers []struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct{ Code int }
		}
		if got := tn.callTok(bob.bearer, "POST", "/v1/rpc", body, &answers); got != 200 || len(answers) != 2 {
			t.Fatalf("batch = %d %+v", got, answers)
		}
		for _, a := range answers {
			if ok := a.Error == nil; ok != (a.ID == 1) {
				t.Errorf("batch item %d: result %s error %+v", a.ID, a.Result, a.Error)
			}
		}
	}

	// api key scoped to other accounts
	{
		aliceMFA = mfaLogin(t, tn, aliceTok, "alice", pw)
		mfa := aliceMFA
		var keys []string
		key := func(t *testing.T, actions, accts []string) rpcCaller {
			var ak struct {
				Key string `json:"key"`
			}
			if got := tn.callTok(mfa, "POST", "/v1/auth/api-keys", map[string]any{"name": "key " + strconv.Itoa(len(keys)), "actions": actions, "accounts": accts}, &ak); got != 201 {
				t.Fatalf("create api key = %d", got)
			}
			keys = append(keys, ak.Key)
			return rpcCaller{name: "alice's key " + strings.Join(actions, ",") + " on " + strings.Join(accts, ","), apiKey: ak.Key}
		}
		payrollOnly := key(t, []string{"account.sign", "account.read"}, []string{"payroll"})
		mustSign(t, payrollOnly, payroll.Address, "in scope")
		mustRefuse(t, payrollOnly, treasury.Address, "account outside the key's scope")
		mustRefuse(t, payrollOnly, bobs.Address, "another user's account")
		if got := accountsOf(t, payrollOnly); len(got) != 1 || got[0] != payroll.Address {
			t.Errorf("scoped key's eth_accounts = %v, want only payroll", got)
		}
		// The REST list agrees with eth_accounts.
		req, _ := http.NewRequest("GET", tn.url+"/v1/accounts", nil)
		req.Header.Set("X-API-Key", payrollOnly.apiKey)
		resp, err := tn.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Accounts []account `json:"accounts"`
		}
		err = json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || len(list.Accounts) != 1 || list.Accounts[0].Address != payroll.Address {
			t.Errorf("scoped key's GET /v1/accounts = %d %+v %v, want only payroll", resp.StatusCode, list, err)
		}
		readOnly := key(t, []string{"account.read"}, []string{"*"})
		mustRefuse(t, readOnly, payroll.Address, "key without account.sign")
		every := key(t, []string{"account.sign"}, []string{"*"})
		mustSign(t, every, treasury.Address, "wildcard key")
		mustRefuse(t, every, bobs.Address, "wildcard key, another user's account")
	}

	// grants
	{
		tn.token = aliceMFA // granting needs step-up
		tn.mustCall(204, "POST", "/v1/accounts/treasury/grants", map[string]string{"principal": "bob"}, nil)
		mustSign(t, bob, treasury.Address, "granted")
		mustRefuse(t, carol, treasury.Address, "granted to someone else")
		mustRefuse(t, bob, payroll.Address, "grant is for one account")
		// A grant is to the user, not to the user's API keys.
		var ak struct {
			Key string `json:"key"`
		}
		bobMFA := mfaLogin(t, tn, bob.bearer, "bob", pw)
		if got := tn.callTok(bobMFA, "POST", "/v1/auth/api-keys", map[string]any{"name": "all", "actions": []string{"account.sign"}, "accounts": []string{"*"}}, &ak); got != 201 {
			t.Fatalf("create bob's api key = %d", got)
		}
		mustRefuse(t, rpcCaller{name: "bob's key", apiKey: ak.Key}, treasury.Address, "granted to the user, used by the user's key")
		tn.mustCall(204, "DELETE", "/v1/accounts/treasury/grants/bob", nil, nil)
		mustRefuse(t, bob, treasury.Address, "grant revoked")
	}
}
