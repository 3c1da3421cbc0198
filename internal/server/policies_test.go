package server

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"strings"
	"testing"

	"github.com/moonvault/moonvault/internal/audit"
	"github.com/moonvault/moonvault/internal/ethersverify"
)

const (
	usdcAddr     = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
	treasuryAddr = "0x1111111111111111111111111111111111111111"
	strangerAddr = "0x9999999999999999999999999999999999999999"
	delegateAddr = "0x63c0c19a282a1B52b07dD5a65b58948A07DAE32B"
	permit2Addr  = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
	nftAddr      = "0xBC4CA0EdA7647A8aB7C2061c2E118A18a936f13D"
)

// permitDoc is an EIP-2612 permit for the token at verifying.
func permitDoc(verifying string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"version","type":"string"},
	{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],
	"Permit":[{"name":"owner","type":"address"},{"name":"spender","type":"address"},{"name":"value","type":"uint256"},
	{"name":"nonce","type":"uint256"},{"name":"deadline","type":"uint256"}]},
	"primaryType":"Permit","domain":{"name":"USD Coin","version":"2","chainId":1,"verifyingContract":"%s"},
	"message":{"owner":"0x2c7536E3605D9C16a7a3D7b1898e529396a65c23","spender":"0x3535353535353535353535353535353535353535",
	"value":"1000000","nonce":0,"deadline":"1900000000"}}`, verifying))
}

// delegationTx is an EIP-7702 transaction authorizing delegate.
func delegationTx(delegate string) map[string]any {
	body := txBody(treasuryAddr, big.NewInt(0), 0, 1, "")
	body["transaction"].(map[string]any)["authorizationList"] = []map[string]string{{
		"chainId": "0x1", "address": delegate, "nonce": "0x3", "yParity": "0x1",
		"r": "0x6f0fa8b68d24a222555cd7f3d4c322843b18d70ca123374f47a6d98c6bfef47d",
		"s": "0x710700a635e079842b0e1093947893fed2f64cfef34d4233943aa459c06a642",
	}}
	return body
}

// TestPolicyDocExamples runs every example of docs/policies.md against a
// real server over HTTPS: the admin creates the policy (with step-up), the
// user "treasury" signs requests the policy must let through and requests
// it must stop, then the policy is deleted. Signatures that pass are
// checked with ethers.
func TestPolicyDocExamples(t *testing.T) {
	ev := ethersverify.New(t)
	sink := &recordingSink{}
	tn := startNode(t, t.TempDir(), nodeOpts{auditSinks: []audit.Sink{sink}})
	root := initShamir(t, tn)
	admin := enrolledUser(t, tn, root, "boss", "admin")
	treasury := enrolledUser(t, tn, root, "treasury", "user")
	// The approvers "large-transfers" names: a policy may only name users
	// that exist, and an approval counts those with a second factor.
	for _, u := range []string{"alice", "bob", "carol"} {
		enrolledUser(t, tn, root, u, "user")
	}
	var acc account
	if c := tn.callTok(treasury.token, "POST", "/v1/accounts", map[string]string{"name": "hot"}, &acc); c != 201 {
		t.Fatalf("create account: %d", c)
	}
	var key struct {
		Key string `json:"key"`
	}
	if c := tn.callTok(treasury.token, "POST", "/v1/auth/api-keys", map[string]any{"name": "bot", "actions": []string{"account.sign"}, "accounts": []string{"hot"}}, &key); c != 201 {
		t.Fatalf("create API key: %d", c)
	}

	type signCase struct {
		name   string
		op     string // sign-transaction, sign-typed-data, sign-message
		body   any
		apiKey bool
		want   int
		reason string // a substring of the denial's reason
	}
	tx := func(to, eth string, data string) map[string]any { return txBody(to, wei(t, eth), 0, 1, data) }
	usdc := func(method, to string, amount int64) map[string]any {
		return tx(usdcAddr, "0", erc20Call(method, to, big.NewInt(amount)))
	}
	maxUint := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))
	maxUint160 := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 160), big.NewInt(1))
	cases := map[string][]signCase{
		// Each transaction may pay up to 0.0001 ETH of fees (100 000 gas at
		// 1 gwei), which the cap counts (review M3).
		"daily-eth-cap": {
			{"first 0.7", "sign-transaction", tx(strangerAddr, "0.7", ""), false, 200, ""},
			{"second 0.7", "sign-transaction", tx(strangerAddr, "0.7", ""), false, 200, ""},
			{"third 0.7 would pass the cap", "sign-transaction", tx(strangerAddr, "0.7", ""), false, 403, "24 h native spend would reach 2.1003 ETH, limit 2 ETH"},
			{"0.6 and its fee would pass it too", "sign-transaction", tx(strangerAddr, "0.6", ""), false, 403, "24 h native spend would reach 2.0003 ETH, limit 2 ETH"},
			{"0.5 still fits", "sign-transaction", tx(strangerAddr, "0.5", ""), false, 200, ""},
			{"nothing sent, but 0.2 ETH of gas", "sign-transaction", txFee(strangerAddr, "0", "0x2faf080", "0xee6b2800"), false, 403, "24 h native spend would reach 2.1003 ETH, limit 2 ETH"},
			{"a message moves nothing", "sign-message", map[string]string{"data": "hello"}, false, 200, ""},
			{"a call the vault does not decode states its ether and fee: counted", "sign-transaction", tx(usdcAddr, "0", "0xdeadbeef"), false, 200, ""},
			{"an EIP-7702 self-call may send more than it states: refused", "sign-transaction", tx(acc.Address, "0", "0xdeadbeef"), false, 403, "not fully decoded"},
		},
		"recipient-allowlist": {
			{"treasury", "sign-transaction", tx(treasuryAddr, "1", ""), false, 200, ""},
			{"exchange, lowercase", "sign-transaction", tx("0x2222222222222222222222222222222222222222", "1", ""), false, 200, ""},
			{"stranger", "sign-transaction", tx(strangerAddr, "0.01", ""), false, 403, "condition holds"},
			{"contract creation", "sign-transaction", tx("", "0", "0x6080604052"), false, 403, ""},
			{"a message is no transaction", "sign-message", map[string]string{"data": "hi"}, false, 200, ""},
		},
		"usdc-transfers": {
			{"allowlisted, small", "sign-transaction", usdc("transfer", treasuryAddr, 9_999_999_999), false, 200, ""},
			{"allowlisted, at the cap", "sign-transaction", usdc("transfer", treasuryAddr, 10_000_000_000), false, 403, ""},
			{"stranger", "sign-transaction", usdc("transfer", strangerAddr, 1), false, 403, ""},
			{"approve is another rule", "sign-transaction", usdc("approve", strangerAddr, 1), false, 200, ""},
		},
		"no-unlimited-approve": {
			{"unlimited", "sign-transaction", tx(usdcAddr, "0", erc20Call("approve", strangerAddr, maxUint)), false, 403, "condition holds"},
			{"increaseAllowance to the maximum (review M3)", "sign-transaction", tx(usdcAddr, "0", erc20Call("increaseAllowance", strangerAddr, maxUint)), false, 403, "condition holds"},
			{"Permit2 approve to the uint160 maximum", "sign-transaction", tx(permit2Addr, "0", permit2Approve(usdcAddr, strangerAddr, maxUint160)), false, 403, "condition holds"},
			{"setApprovalForAll", "sign-transaction", tx(nftAddr, "0", setApprovalForAll(strangerAddr, true)), false, 403, "condition holds"},
			{"an unknown call could hide a grant", "sign-transaction", tx(usdcAddr, "0", "0xdeadbeef"), false, 403, "not fully decoded"},
			{"bounded", "sign-transaction", usdc("approve", strangerAddr, 100_000_000), false, 200, ""},
			{"increaseAllowance bounded", "sign-transaction", usdc("increaseAllowance", strangerAddr, 5), false, 200, ""},
			{"setApprovalForAll revoked", "sign-transaction", tx(nftAddr, "0", setApprovalForAll(strangerAddr, false)), false, 200, ""},
		},
		"refuse-undecoded": {
			{"unknown selector", "sign-transaction", tx(usdcAddr, "0", "0xdeadbeef"), false, 403, "condition holds"},
			{"the account's own (EIP-7702) code", "sign-transaction", tx(acc.Address, "0", "0xdeadbeef"), false, 403, ""},
			{"ERC-20 transfer", "sign-transaction", usdc("transfer", strangerAddr, 1), false, 200, ""},
			{"ether", "sign-transaction", tx(strangerAddr, "0.1", ""), false, 200, ""},
			{"message", "sign-message", map[string]string{"data": "hi"}, false, 200, ""},
			{"typed data", "sign-typed-data", map[string]any{"typed_data": permitDoc(usdcAddr)}, false, 200, ""},
		},
		"known-permits": {
			{"USDC permit, checksummed in the rule, lowercase here", "sign-typed-data", map[string]any{"typed_data": permitDoc(strings.ToLower(usdcAddr))}, false, 200, ""},
			{"permit for an unknown token", "sign-typed-data", map[string]any{"typed_data": permitDoc(strangerAddr)}, false, 403, ""},
		},
		"delegates-allowlist": {
			{"audited delegate", "sign-transaction", delegationTx(delegateAddr), false, 200, ""},
			{"unknown delegate", "sign-transaction", delegationTx(strangerAddr), false, 403, ""},
			{"no authorization", "sign-transaction", tx(treasuryAddr, "1", ""), false, 200, ""},
		},
		"large-transfers": {
			{"a call the vault does not decode, sending no ether, signs", "sign-transaction", tx(usdcAddr, "0", "0xdeadbeef"), false, 200, ""},
			{"a call the vault does not decode, sending 11 ETH, waits", "sign-transaction", tx(usdcAddr, "11", "0xdeadbeef"), false, 202, ""},
			{"an EIP-7702 self-call: its value is unknown, it waits", "sign-transaction", tx(acc.Address, "0", "0xdeadbeef"), false, 202, ""},
			{"10 ETH", "sign-transaction", tx(strangerAddr, "10", ""), false, 200, ""},
			{"10.5 ETH waits for approval", "sign-transaction", tx(strangerAddr, "10.5", ""), false, 202, ""},
		},
		"apikeys-mainnet": {
			{"user on sepolia", "sign-transaction", txBody(treasuryAddr, big.NewInt(1), 0, 11155111, ""), false, 200, ""},
			{"key on mainnet", "sign-transaction", tx(treasuryAddr, "0.001", ""), true, 200, ""},
			{"key on sepolia", "sign-transaction", txBody(treasuryAddr, big.NewInt(1), 0, 11155111, ""), true, 403, ""},
			{"key signs a message (no chain id)", "sign-message", map[string]string{"data": "gm"}, true, 403, ""},
		},
	}
	docs := docPolicies(t)
	otherChains := map[string]bool{"btc-outputs": true, "daily-sol-cap": true, "spl-mints": true}
	for name := range docs {
		if _, ok := cases[name]; !ok && !otherChains[name] {
			t.Errorf("docs/policies.md example %q has no end-to-end case", name)
		}
	}
	// btc-outputs signs PSBTs with a Bitcoin account: TestPolicyOtherChains
	// runs it end to end, and TestPolicySolanaDrainRefused the Solana ones;
	// here they are created (they type-check on a real server) and must not
	// disturb Ethereum requests.
	for _, name := range slices.Sorted(maps.Keys(docs)) {
		doc := docs[name]
		t.Run(name, func(t *testing.T) {
			var p policyAnswer
			var raw json.RawMessage
			if c := tn.callTok(admin.token, "POST", "/v1/policies", doc, &raw); c != 201 {
				t.Fatalf("create: %d %s", c, raw)
			}
			if err := json.Unmarshal(raw, &p); err != nil || p.ID == "" || p.Version != 1 {
				t.Fatalf("created %s", raw)
			}
			defer func() {
				if c := tn.callTok(admin.token, "DELETE", "/v1/policies/"+p.ID, nil, nil); c != 204 {
					t.Errorf("delete: %d", c)
				}
			}()
			for _, c := range cases[name] {
				var raw json.RawMessage
				var got int
				if c.apiKey {
					got = tn.callKey(key.Key, "POST", "/v1/accounts/hot/"+c.op, c.body, &raw)
				} else {
					got = tn.callTok(treasury.token, "POST", "/v1/accounts/hot/"+c.op, c.body, &raw)
				}
				if got != c.want {
					t.Fatalf("%s: status %d, want %d: %s", c.name, got, c.want, raw)
				}
				switch got {
				case 403:
					var e deniedErr
					_ = json.Unmarshal(raw, &e)
					if e.Error.Code != "policy_denied" || e.Error.Policy == nil || e.Error.Policy.ID != p.ID || e.Error.Policy.Name != p.Name ||
						!strings.Contains(e.Error.Policy.Reason, c.reason) || !strings.Contains(e.Error.Message, p.Name) {
						t.Fatalf("%s: denial %s does not name policy %s (%s) and reason %q", c.name, raw, p.ID, p.Name, c.reason)
					}
				case 202:
					var held struct {
						Approval approvalAnswer `json:"approval"`
					}
					_ = json.Unmarshal(raw, &held)
					if a := held.Approval; a.Status != "pending" || a.Requester != "treasury" || a.Account != "treasury/hot" ||
						len(a.Requirements) != 1 || a.Requirements[0].Policy != p.ID || a.Requirements[0].Threshold != 2 {
						t.Fatalf("%s: approval %s", c.name, raw)
					}
				case 200:
					checkSigned(t, ev, c.op, c.body, raw, acc.Address)
				}
			}
		})
	}
	// Every decision is in the audit log: the policy and the decision.
	denials := sink.find(func(m map[string]any) bool { return field(m, "policy_decision") == "deny" })
	if len(denials) < 10 {
		t.Fatalf("%d audit lines record a deny", len(denials))
	}
	for _, m := range denials {
		if field(m, "error_code") != "policy_denied" || !strings.HasPrefix(field(m, "policies"), "pol_") || field(m, "account") != "treasury/hot" {
			t.Fatalf("audit line of a denial: %v", m)
		}
	}
}

// checkSigned verifies a 200 sign answer with ethers: the signer is the
// account.
func checkSigned(t *testing.T, ev *ethersverify.Verifier, op string, body any, raw json.RawMessage, addr string) {
	t.Helper()
	var out struct {
		Raw string `json:"raw_transaction"`
	}
	var msg struct {
		Signature string `json:"signature"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	if op != "sign-transaction" {
		if err := json.Unmarshal(raw, &msg); err != nil {
			t.Fatal(err)
		}
	}
	var from string
	switch op {
	case "sign-transaction":
		from = ev.Transaction(t, out.Raw).From
	case "sign-typed-data":
		from, _ = ev.TypedDataSigner(t, body.(map[string]any)["typed_data"].(json.RawMessage), msg.Signature)
	case "sign-message":
		from = ev.MessageSigner(t, []byte(body.(map[string]string)["data"]), msg.Signature)
	}
	if from != addr {
		t.Fatalf("%s: ethers recovers %s, want the account %s", op, from, addr)
	}
}
