package server

import (
	"encoding/json"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/go-jose/go-jose/v4"
)

// initShamir initialises a one-share vault, unseals it and returns the
// root token.
func initShamir(t testing.TB, tn *testNode) string {
	t.Helper()
	return initShamirKeys(t, tn).RootToken
}

func login(t *testing.T, tn *testNode, user, pw string) string {
	t.Helper()
	var tok struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    int    `json:"expires_in"`
	}
	tn.mustCall(200, "POST", "/v1/auth/login", map[string]string{"username": user, "password": pw}, &tok)
	if tok.TokenType != "Bearer" || tok.ExpiresIn <= 0 || tok.RefreshToken == "" {
		t.Fatalf("login answer: %+v", tok)
	}
	return tok.AccessToken
}

type account struct {
	Name      string `json:"name"`
	Address   string `json:"address"`
	PublicKey string `json:"public_key"`
	CreatedAt string `json:"created_at"`
}

func recoverSigner(t *testing.T, hash []byte, sigHex string) common.Address {
	t.Helper()
	sig, err := hexutil.Decode(sigHex)
	if err != nil || len(sig) != 65 {
		t.Fatalf("signature %q", sigHex)
	}
	if sig[64] != 27 && sig[64] != 28 {
		t.Fatalf("v = %d, want 27 or 28", sig[64])
	}
	s := append([]byte(nil), sig...)
	s[64] -= 27
	pub, err := crypto.SigToPub(hash, s)
	if err != nil {
		t.Fatal(err)
	}
	return crypto.PubkeyToAddress(*pub)
}

// stepUp enrols user in TOTP (once) and logs in with a code: a token that
// passes step-up.
func stepUp(t *testing.T, tn *testNode, user, pw string) string {
	t.Helper()
	tok := login(t, tn, user, pw)
	var enr struct {
		Secret string `json:"secret"`
	}
	if tn.callTok(tok, "POST", "/v1/auth/mfa/totp/enroll", nil, &enr) != 200 {
		t.Fatal("enrol TOTP")
	}
	code, _ := totpCode(enr.Secret, time.Now())
	if tn.callTok(tok, "POST", "/v1/auth/mfa/totp/confirm", map[string]string{"code": code}, nil) != 200 {
		t.Fatal("confirm TOTP")
	}
	// The confirmation used this step; the next one is within ±1 step.
	next, _ := totpCode(enr.Secret, time.Now().Add(30*time.Second))
	var out struct {
		AccessToken string `json:"access_token"`
	}
	tn.mustCall(200, "POST", "/v1/auth/login", map[string]string{"username": user, "password": pw, "totp": next}, &out)
	return out.AccessToken
}

func TestWalletFlow(t *testing.T) {
	tn := startNode(t, t.TempDir(), nodeOpts{})
	root := initShamir(t, tn)
	tn.token = root
	const pw = "correct horse battery staple"
	tn.mustCall(201, "POST", "/v1/users", map[string]string{"username": "alice", "password": pw}, nil)
	tn.mustCall(201, "POST", "/v1/users", map[string]string{"username": "bob", "password": pw}, nil)
	var e apiErr
	if got := tn.call("POST", "/v1/users", map[string]string{"username": "carol", "password": "short"}, &e); got != 400 {
		t.Fatalf("weak password = %d %+v", got, e)
	}
	alice, bob := login(t, tn, "alice", pw), login(t, tn, "bob", pw)
	aliceMFA := stepUp(t, tn, "alice", pw) // before the login limit below trips

	// A standard JOSE library verifies the access token against the JWKS.
	var jwks jose.JSONWebKeySet
	tn.mustCall(200, "GET", "/v1/auth/jwks", nil, &jwks)
	jws, err := jose.ParseSignedCompact(alice, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatalf("parse access token: %v", err)
	}
	keys := jwks.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q not in the JWKS", jws.Signatures[0].Header.KeyID)
	}
	payload, err := jws.Verify(keys[0].Key)
	if err != nil {
		t.Fatalf("go-jose does not verify the access token: %v", err)
	}
	var claims map[string]any
	_ = json.Unmarshal(payload, &claims)
	for _, c := range []string{"iss", "aud", "sub", "sid", "jti", "iat", "nbf", "exp", "auth_time", "amr", "acr"} {
		if _, ok := claims[c]; !ok {
			t.Errorf("claim %s missing", c)
		}
	}

	// Failed logins are limited: 429 with Retry-After.
	limited := false
	for i := 0; i < 15 && !limited; i++ {
		req, _ := http.NewRequest("POST", tn.url+"/v1/auth/login", strings.NewReader(`{"username":"carol","password":"not the password"}`))
		resp, err := tn.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 429 {
			limited = true
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		}
	}
	if !limited {
		t.Fatal("15 failed logins never answered 429")
	}

	// Accounts.
	tn.token = alice
	var a1, a2 account
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{}, &a1)
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "treasury"}, &a2)
	if a1.Name == "" || !common.IsHexAddress(a1.Address) || a2.Name != "treasury" || a2.CreatedAt == "" {
		t.Fatalf("accounts: %+v %+v", a1, a2)
	}
	if got := tn.call("POST", "/v1/accounts", map[string]string{"name": "treasury"}, &e); got != 409 {
		t.Fatalf("duplicate name = %d", got)
	}
	if got := tn.call("POST", "/v1/accounts", map[string]string{"name": "bad name!"}, &e); got != 400 {
		t.Fatalf("invalid name = %d", got)
	}
	var list struct {
		Accounts []account `json:"accounts"`
		Next     string    `json:"next"`
	}
	tn.mustCall(200, "GET", "/v1/accounts?limit=1", nil, &list)
	if len(list.Accounts) != 1 || list.Next == "" {
		t.Fatalf("page 1: %+v", list)
	}
	tn.mustCall(200, "GET", "/v1/accounts?limit=1&after="+list.Next, nil, &list)
	if len(list.Accounts) != 1 {
		t.Fatalf("page 2: %+v", list)
	}
	var raw map[string]any
	tn.mustCall(200, "GET", "/v1/accounts/treasury", nil, &raw)
	for k := range raw {
		if strings.Contains(strings.ToLower(k), "priv") {
			t.Fatalf("account exposes %s", k)
		}
	}

	// EIP-191.
	var sm struct{ Signature, MessageHash string }
	var smRaw struct {
		Signature   string `json:"signature"`
		MessageHash string `json:"message_hash"`
	}
	tn.mustCall(200, "POST", "/v1/accounts/treasury/sign-message", map[string]string{"data": "hello", "encoding": "utf8"}, &smRaw)
	sm.Signature, sm.MessageHash = smRaw.Signature, smRaw.MessageHash
	if got := recoverSigner(t, accounts.TextHash([]byte("hello")), sm.Signature); got.Hex() != a2.Address {
		t.Fatalf("message signer %s, want %s", got.Hex(), a2.Address)
	}
	if got := tn.call("POST", "/v1/accounts/treasury/sign-message", map[string]string{"data": "0xzz", "encoding": "hex"}, &e); got != 400 || !strings.Contains(e.Error.Message, "hex") {
		t.Fatalf("bad hex = %d %+v", got, e)
	}

	// EIP-712 (the EIP's Mail example).
	mail := `{"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"version","type":"string"},{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],"Person":[{"name":"name","type":"string"},{"name":"wallet","type":"address"}],"Mail":[{"name":"from","type":"Person"},{"name":"to","type":"Person"},{"name":"contents","type":"string"}]},"primaryType":"Mail","domain":{"name":"Ether Mail","version":"1","chainId":1,"verifyingContract":"0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"},"message":{"from":{"name":"Cow","wallet":"0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},"to":{"name":"Bob","wallet":"0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},"contents":"Hello, Bob!"}}`
	var td struct {
		Signature string `json:"signature"`
		Hash      string `json:"hash"`
	}
	tn.mustCall(200, "POST", "/v1/accounts/treasury/sign-typed-data", `{"typed_data":`+mail+`}`, &td)
	if td.Hash != "0xbe609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2" {
		t.Fatalf("typed data hash %s", td.Hash)
	}
	if got := recoverSigner(t, hexutil.MustDecode(td.Hash), td.Signature); got.Hex() != a2.Address {
		t.Fatalf("typed data signer %s", got.Hex())
	}
	bad := strings.Replace(mail, `"primaryType":"Mail"`, `"primaryType":"Letter"`, 1)
	if got := tn.call("POST", "/v1/accounts/treasury/sign-typed-data", `{"typed_data":`+bad+`}`, &e); got != 400 || !strings.Contains(e.Error.Message, "primaryType") {
		t.Fatalf("absent primaryType = %d %+v", got, e)
	}

	// Transactions of every type; the sender is recovered with go-ethereum.
	to := "0x3535353535353535353535353535353535353535"
	txs := map[string]string{
		"legacy": `{"type":"0x0","chainId":"0x1","nonce":"0x9","gasPrice":"0x4a817c800","gas":"0x5208","to":"` + to + `","value":"0xde0b6b3a7640000"}`,
		"2930":   `{"type":"0x1","chainId":"0x5","nonce":"0x1","gasPrice":"0x3b9aca00","gas":"0x7530","to":"` + to + `","value":"0x1","accessList":[{"address":"` + to + `","storageKeys":["0x0000000000000000000000000000000000000000000000000000000000000001"]}]}`,
		"1559":   `{"type":"0x2","chainId":"1","nonce":"3","maxFeePerGas":"30000000000","maxPriorityFeePerGas":"1000000000","gas":"21000","to":"` + to + `","value":"5","data":"0x"}`,
		"4844":   `{"type":"0x3","chainId":"0x1","nonce":"0x0","maxFeePerGas":"0x1","maxPriorityFeePerGas":"0x1","gas":"0x5208","to":"` + to + `","value":"0x0","maxFeePerBlobGas":"0x1","blobVersionedHashes":["0x0100000000000000000000000000000000000000000000000000000000000001"]}`,
		"7702":   `{"type":"0x4","chainId":"0x1","nonce":"0x0","maxFeePerGas":"0x1","maxPriorityFeePerGas":"0x1","gas":"0x186a0","to":"` + to + `","value":"0x0","authorizationList":[{"chainId":"0x1","address":"` + to + `","nonce":"0x1","yParity":"0x0","r":"0x1","s":"0x1"}]}`,
	}
	for name, tx := range txs {
		var out struct {
			Raw  string                   `json:"raw_transaction"`
			Hash string                   `json:"transaction_hash"`
			Sig  struct{ V, R, S string } `json:"signature"`
		}
		tn.mustCall(200, "POST", "/v1/accounts/treasury/sign-transaction", `{"transaction":`+tx+`}`, &out)
		var signed types.Transaction
		if err := signed.UnmarshalBinary(hexutil.MustDecode(out.Raw)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		from, err := types.Sender(types.LatestSignerForChainID(signed.ChainId()), &signed)
		if err != nil || from.Hex() != a2.Address || signed.Hash().Hex() != out.Hash {
			t.Fatalf("%s: sender %s err %v hash %s/%s", name, from.Hex(), err, signed.Hash().Hex(), out.Hash)
		}
	}
	for name, c := range map[string]struct{ tx, field string }{
		"missing chainId": {`{"nonce":"0x0","gas":"0x5208","gasPrice":"0x1","to":"` + to + `"}`, "chainId"},
		"negative value":  {`{"chainId":"1","nonce":"0","gas":"21000","gasPrice":"1","value":"-1","to":"` + to + `"}`, "value"},
		"unknown type":    {`{"type":"0x9","chainId":"1","nonce":"0","gas":"21000","gasPrice":"1"}`, "type"},
	} {
		e = apiErr{}
		if got := tn.call("POST", "/v1/accounts/treasury/sign-transaction", `{"transaction":`+c.tx+`}`, &e); got != 400 || !strings.Contains(e.Error.Message, c.field) {
			t.Errorf("%s = %d %+v (want 400 naming %s)", name, got, e, c.field)
		}
	}

	// Ownership: bob and the admin cannot see or use alice's accounts.
	for who, tok := range map[string]string{"bob": bob, "root": root} {
		if got := tn.callTok(tok, "POST", "/v1/accounts/alice:treasury/sign-message", map[string]string{"data": "x"}, &e); got != 404 {
			t.Errorf("%s signs alice's account: %d", who, got)
		}
	}
	// Granting hands out signing rights: it needs step-up, as API keys do
	// (issue 13 item 8); withdrawing a grant does not.
	if got := tn.call("POST", "/v1/accounts/treasury/grants", map[string]string{"principal": "bob"}, &e); got != 403 || e.Error.Code != "mfa_required" {
		t.Fatalf("grant without MFA = %d %+v", got, e)
	}
	if got := tn.callTok(bob, "POST", "/v1/accounts/alice:treasury/sign-message", map[string]string{"data": "x"}, nil); got != 404 {
		t.Fatalf("a grant refused for want of MFA still took effect: %d", got)
	}
	if got := tn.callTok(aliceMFA, "POST", "/v1/accounts/treasury/grants", map[string]string{"principal": "bob"}, nil); got != 204 {
		t.Fatalf("grant after step-up = %d", got)
	}
	if got := tn.callTok(bob, "POST", "/v1/accounts/alice:treasury/sign-message", map[string]string{"data": "x"}, nil); got != 200 {
		t.Fatalf("granted bob = %d", got)
	}
	tn.mustCall(204, "DELETE", "/v1/accounts/treasury/grants/bob", nil, nil)
	if got := tn.callTok(bob, "POST", "/v1/accounts/alice:treasury/sign-message", map[string]string{"data": "x"}, nil); got != 404 {
		t.Fatalf("revoked grant still works: %d", got)
	}

	// Step-up: importing a key and deleting an account need MFA.
	if got := tn.call("POST", "/v1/accounts", map[string]string{"private_key": strings.Repeat("46", 32)}, &e); got != 403 || e.Error.Code != "mfa_required" {
		t.Fatalf("import without MFA = %d %+v", got, e)
	}
	if got := tn.call("DELETE", "/v1/accounts/treasury", nil, &e); got != 403 || e.Error.Code != "mfa_required" {
		t.Fatalf("delete without MFA = %d %+v", got, e)
	}

	// JSON-RPC remote signer.
	rpc := func(method string, params any) map[string]json.RawMessage {
		var out map[string]json.RawMessage
		tn.mustCall(200, "POST", "/v1/rpc", map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, &out)
		return out
	}
	var addrs []string
	if err := json.Unmarshal(rpc("eth_accounts", []any{})["result"], &addrs); err != nil || len(addrs) != 2 {
		t.Fatalf("eth_accounts: %v %v", addrs, err)
	}
	var sigHex string
	_ = json.Unmarshal(rpc("personal_sign", []any{"0x68656c6c6f", a2.Address})["result"], &sigHex)
	if got := recoverSigner(t, accounts.TextHash([]byte("hello")), sigHex); got.Hex() != a2.Address {
		t.Fatalf("personal_sign signer %s", got.Hex())
	}
	var rawTx string
	txObj := map[string]any{"from": a2.Address, "to": to, "chainId": "0x1", "nonce": "0x0", "gas": "0x5208", "maxFeePerGas": "0x2", "maxPriorityFeePerGas": "0x1", "value": "0x0"}
	_ = json.Unmarshal(rpc("eth_signTransaction", []any{txObj})["result"], &rawTx)
	var signed types.Transaction
	if err := signed.UnmarshalBinary(hexutil.MustDecode(rawTx)); err != nil {
		t.Fatalf("eth_signTransaction result %q: %v", rawTx, err)
	}
	if from, _ := types.Sender(types.LatestSignerForChainID(big.NewInt(1)), &signed); from.Hex() != a2.Address {
		t.Fatalf("eth_signTransaction sender %s", from.Hex())
	}
	var rerr struct{ Code int }
	_ = json.Unmarshal(rpc("eth_nope", []any{})["error"], &rerr)
	if rerr.Code != -32601 {
		t.Fatalf("unknown method code %d", rerr.Code)
	}

	// Sessions: a user neither lists nor ends another user's sessions.
	tn.token = bob
	if got := tn.call("GET", "/v1/auth/sessions?username=alice", nil, &e); got != 403 {
		t.Fatalf("bob lists alice's sessions: %d", got)
	}
	var mine struct {
		Sessions []struct {
			ID string `json:"id"`
		} `json:"sessions"`
	}
	tn.callTok(alice, "GET", "/v1/auth/sessions", nil, &mine)
	if len(mine.Sessions) == 0 || mine.Sessions[0].ID == "" {
		t.Fatal("alice has no sessions listed")
	}
	for _, s := range mine.Sessions {
		if got := tn.call("DELETE", "/v1/auth/sessions/"+s.ID, nil, &e); got != 404 {
			t.Fatalf("bob ends alice's session: %d", got)
		}
	}
	if got := tn.callTok(alice, "GET", "/v1/accounts", nil, nil); got != 200 {
		t.Fatalf("alice's session was ended by bob: %d", got)
	}
	// A deleted user's name is never reused, so no one inherits its wallets.
	tn.token = root
	tn.mustCall(204, "DELETE", "/v1/users/bob", nil, nil)
	if got := tn.call("POST", "/v1/users", map[string]string{"username": "bob", "password": pw}, &e); got != 409 {
		t.Fatalf("recreate deleted user = %d", got)
	}
	tn.token = alice
	if got := tn.callTok(aliceMFA, "POST", "/v1/accounts/treasury/grants", map[string]string{"principal": "nobody"}, &e); got != 400 {
		t.Fatalf("grant to unknown user = %d", got)
	}

	// Logout revokes the session at once.
	tn.mustCall(204, "POST", "/v1/auth/logout", nil, nil)
	if got := tn.call("GET", "/v1/accounts", nil, &e); got != 401 {
		t.Fatalf("token after logout = %d", got)
	}
}
