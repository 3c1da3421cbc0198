package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common/hexutil"
)

// Helpers of the transaction policy and approval tests.

const policyPW = "correct horse battery staple"

// recordingSink keeps every audit line, for tests that read the log.
type recordingSink struct {
	mu    sync.Mutex
	lines []map[string]any
}

func (s *recordingSink) Write(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range bytes.Split(p, []byte("\n")) {
		var m map[string]any
		if len(bytes.TrimSpace(l)) > 0 && json.Unmarshal(l, &m) == nil {
			s.lines = append(s.lines, m)
		}
	}
	return nil
}

func (s *recordingSink) Name() string { return "recording" }

// find returns the request lines for which match holds.
func (s *recordingSink) find(match func(m map[string]any) bool) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, m := range s.lines {
		if m["type"] == "request" && match(m) {
			out = append(out, m)
		}
	}
	return out
}

// field reads a request line's field (the entry is nested or flat,
// depending on the line format).
func field(m map[string]any, k string) string {
	if v, ok := m[k]; ok {
		s, _ := v.(string)
		return s
	}
	for _, nested := range []string{"entry", "body", "request"} {
		if sub, ok := m[nested].(map[string]any); ok {
			if s, ok := sub[k].(string); ok {
				return s
			}
		}
	}
	return ""
}

// mfaUser is a user with TOTP enrolled.
type mfaUser struct {
	name, secret string
	// token is a login with password and a one-time code (amr otp).
	token string
}

// createUser makes a user (as root) and returns a password-only token.
func createUser(t *testing.T, tn *testNode, root, name, role string) string {
	t.Helper()
	if code := tn.callTok(root, "POST", "/v1/users", map[string]string{"username": name, "password": policyPW, "role": role}, nil); code != 201 {
		t.Fatalf("create user %s: %d", name, code)
	}
	return login(t, tn, name, policyPW)
}

// enrolledUser creates a user, enrols TOTP with a real secret and logs in
// with a code generated from it (pquerna/otp), as an authenticator app
// would: the token's amr has otp.
func enrolledUser(t *testing.T, tn *testNode, root, name, role string) *mfaUser {
	t.Helper()
	tok := createUser(t, tn, root, name, role)
	var enr struct {
		Secret string `json:"secret"`
	}
	if code := tn.callTok(tok, "POST", "/v1/auth/mfa/totp/enroll", nil, &enr); code != 200 || enr.Secret == "" {
		t.Fatalf("enrol %s: %d", name, code)
	}
	now := time.Now()
	code, err := totpCode(enr.Secret, now)
	if err != nil {
		t.Fatal(err)
	}
	if c := tn.callTok(tok, "POST", "/v1/auth/mfa/totp/confirm", map[string]string{"code": code}, nil); c != 200 {
		t.Fatalf("confirm %s: %d", name, c)
	}
	u := &mfaUser{name: name, secret: enr.Secret}
	// The confirmation used this 30 s step; the next one is within ±1.
	u.token = u.login(t, tn, now.Add(30*time.Second))
	return u
}

// login logs u in with the code of the step at when.
func (u *mfaUser) login(t *testing.T, tn *testNode, when time.Time) string {
	t.Helper()
	code, err := totpCode(u.secret, when)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	var raw json.RawMessage
	if c := tn.callTok("", "POST", "/v1/auth/login", map[string]string{"username": u.name, "password": policyPW, "totp": code}, &raw); c != 200 {
		t.Fatalf("TOTP login %s: %d %s", u.name, c, raw)
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.AccessToken == "" {
		t.Fatalf("login answer %s", raw)
	}
	return out.AccessToken
}

// callKey sends a request with an API key.
func (tn *testNode) callKey(key, method, path string, body any, out any) int {
	tn.t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		tn.t.Fatal(err)
	}
	req, err := http.NewRequest(method, tn.url+path, bytes.NewReader(raw))
	if err != nil {
		tn.t.Fatal(err)
	}
	req.Header.Set("X-API-Key", key)
	resp, err := tn.client.Do(req)
	if err != nil {
		tn.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			tn.t.Fatalf("decode %q: %v", data, err)
		}
	}
	return resp.StatusCode
}

// wei parses a decimal ether amount ("0.3") into wei.
func wei(t testing.TB, eth string) *big.Int {
	t.Helper()
	r, ok := new(big.Rat).SetString(eth)
	if !ok {
		t.Fatalf("amount %q", eth)
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(18), nil)))
	if !r.IsInt() {
		t.Fatalf("amount %q is finer than a wei", eth)
	}
	return r.Num()
}

// txBody is a sign-transaction body: an EIP-1559 transaction.
func txBody(to string, value *big.Int, nonce uint64, chainID int64, data string) map[string]any {
	tx := map[string]any{
		"chainId": hexutil.EncodeBig(big.NewInt(chainID)), "nonce": hexutil.EncodeUint64(nonce),
		"maxFeePerGas": "0x3b9aca00", "maxPriorityFeePerGas": "0x1", "gas": "0x186a0",
		"value": hexutil.EncodeBig(value),
	}
	if to != "" {
		tx["to"] = to
	}
	if data != "" {
		tx["data"] = data
	}
	return map[string]any{"transaction": tx}
}

// erc20Call is ERC-20 calldata: transfer(to, amount), approve(to,
// amount) or increaseAllowance(to, amount).
func erc20Call(method, to string, amount *big.Int) string {
	sel := map[string]string{"transfer": "a9059cbb", "approve": "095ea7b3", "increaseAllowance": "39509351"}[method]
	return abiCall(sel, hexutil.MustDecode(to), amount.Bytes())
}

// abiCall is calldata of static arguments: the selector, then each
// argument left-padded to a word.
func abiCall(sel string, words ...[]byte) string {
	out := "0x" + sel
	for _, w := range words {
		out += strings.Repeat("00", 32-len(w)) + hexutil.Encode(w)[2:]
	}
	return out
}

// permit2Approve is Permit2's approve(token, spender, amount, expiration).
func permit2Approve(token, spender string, amount *big.Int) string {
	return abiCall("87517c45", hexutil.MustDecode(token), hexutil.MustDecode(spender), amount.Bytes(), big.NewInt(1900000000).Bytes())
}

// setApprovalForAll is ERC-721/1155 setApprovalForAll(operator, approved).
func setApprovalForAll(operator string, approved bool) string {
	b := []byte{0}
	if approved {
		b = []byte{1}
	}
	return abiCall("a22cb465", hexutil.MustDecode(operator), b)
}

// txFee is a sign-transaction body with the given gas limit and fee cap
// (hex quantities).
func txFee(to, eth, gas, maxFee string) map[string]any {
	body := txBody(to, mustWei(eth), 0, 1, "")
	tx := body["transaction"].(map[string]any)
	tx["gas"], tx["maxFeePerGas"] = gas, maxFee
	return body
}

func mustWei(eth string) *big.Int {
	r, ok := new(big.Rat).SetString(eth)
	if !ok {
		panic("amount " + eth)
	}
	return new(big.Int).Quo(new(big.Int).Mul(r.Num(), new(big.Int).Exp(big.NewInt(10), big.NewInt(18), nil)), r.Denom())
}

// docPolicies reads the policies of docs/policies.md: fenced blocks whose
// info string is "json policy:NAME".
func docPolicies(t testing.TB) map[string]json.RawMessage {
	t.Helper()
	f, err := os.Open("../../docs/policies.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]json.RawMessage{}
	var name string
	var body strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case name == "" && strings.HasPrefix(line, "```json policy:"):
			name = strings.TrimPrefix(line, "```json policy:")
			body.Reset()
		case name != "" && line == "```":
			out[name] = json.RawMessage(body.String())
			name = ""
		case name != "":
			body.WriteString(line + "\n")
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// policyAnswer is a policy as the API shows it.
type policyAnswer struct {
	ID      string `json:"id"`
	Version int    `json:"version"`
	Name    string `json:"name"`
}

// deniedErr is a 403 policy_denied answer.
type deniedErr struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
		Policy  *struct {
			ID     string `json:"id"`
			Name   string `json:"name"`
			Reason string `json:"reason"`
		} `json:"policy"`
	} `json:"error"`
}

// approvalAnswer is an approval as the API shows it.
type approvalAnswer struct {
	ID        string          `json:"id"`
	Kind      string          `json:"kind"`
	Status    string          `json:"status"`
	Requester string          `json:"requester"`
	Account   string          `json:"account"`
	Operation string          `json:"operation"`
	Reason    string          `json:"reason"`
	Result    json.RawMessage `json:"result"`
	Intent    map[string]any  `json:"intent"`
	Approvals []struct {
		User string `json:"user"`
	} `json:"approvals"`
	Requirements []struct {
		Policy    string   `json:"policy"`
		Threshold int      `json:"threshold"`
		Approvers []string `json:"approvers"`
		Eligible  []string `json:"eligible"`
	} `json:"requirements"`
	ExpiresAt time.Time `json:"expires_at"`
	// Request is the original body; Digest what the key will sign.
	Request json.RawMessage `json:"request"`
	Digest  struct {
		Algorithm string `json:"algorithm"`
		Value     string `json:"value"`
		Of        string `json:"of"`
	} `json:"digest"`
}

// rawHdr sends body with a token and extra headers and returns the answer.
func (tn *testNode) rawHdr(method, path, tok string, body []byte, hdr map[string]string) (int, []byte) {
	tn.t.Helper()
	req, err := http.NewRequest(method, tn.url+path, bytes.NewReader(body))
	if err != nil {
		tn.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := tn.client.Do(req)
	if err != nil {
		tn.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}
