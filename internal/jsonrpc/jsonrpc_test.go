package jsonrpc

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/moonvault/moonvault/internal/wallet/evm"
)

// keySigner is a Signer over one in-memory key using package evm, the way
// the HTTP layer's implementation signs through the wallet service.
type keySigner struct {
	key  *ecdsa.PrivateKey
	addr common.Address
}

func newKeySigner(t testing.TB) *keySigner {
	k, err := crypto.ToECDSA(crypto.Keccak256([]byte("cow")))
	if err != nil {
		t.Fatal(err)
	}
	return &keySigner{key: k, addr: crypto.PubkeyToAddress(k.PublicKey)}
}

var errUnknownAccount = errors.New("unknown account")

func (s *keySigner) Accounts(context.Context) ([]common.Address, error) {
	return []common.Address{s.addr}, nil
}

func (s *keySigner) check(a common.Address) error {
	if a != s.addr {
		return errUnknownAccount
	}
	return nil
}

func (s *keySigner) Sign(_ context.Context, c *Call) ([]byte, error) {
	if err := s.check(c.Account); err != nil {
		return nil, err
	}
	switch {
	case c.Tx != nil:
		signed, err := evm.SignTransaction(c.Tx.Tx, c.Tx.ChainID, s.key)
		if err != nil {
			return nil, err
		}
		return signed.MarshalBinary()
	case c.TypedData != nil:
		sig, _, err := evm.SignTypedData(c.TypedData, s.key)
		return sig, err
	}
	sig, _, err := evm.SignMessage(c.Message, s.key)
	return sig, err
}

type panicSigner struct{ keySigner }

func (*panicSigner) Accounts(context.Context) ([]common.Address, error) { panic("boom") }

const (
	cowAddr = "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"
	mail    = `{"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"version","type":"string"},{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],"Person":[{"name":"name","type":"string"},{"name":"wallet","type":"address"}],"Mail":[{"name":"from","type":"Person"},{"name":"to","type":"Person"},{"name":"contents","type":"string"}]},"primaryType":"Mail","domain":{"name":"Ether Mail","version":"1","chainId":1,"verifyingContract":"0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"},"message":{"from":{"name":"Cow","wallet":"0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},"to":{"name":"Bob","wallet":"0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},"contents":"Hello, Bob!"}}`
	mailSig = "0x4355c47d63924e8a72e509b65029052eb6c299d53a04e167c5775fd466751c9d07299936d304c153f6443dfa05f40ff007d72911b6f72307f996231605b915621c"
	tx      = `{"from":"` + cowAddr + `","chainId":"0x1","nonce":"0x0","maxFeePerGas":"0x2","maxPriorityFeePerGas":"0x1","gas":"0x5208","to":"0x3535353535353535353535353535353535353535","value":"0x1"}`
)

type reply struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   *Error          `json:"error"`
}

func call(t *testing.T, s Signer, body string) reply {
	t.Helper()
	out := Handle(context.Background(), s, []byte(body))
	var r reply
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("response %q: %v", out, err)
	}
	if r.JSONRPC != "2.0" {
		t.Fatalf("response without jsonrpc 2.0: %s", out)
	}
	return r
}

func TestMethodsAndErrors(t *testing.T) {
	s := newKeySigner(t)
	hello := hexutil.Encode([]byte("hello"))
	cases := []struct {
		name, body string
		code       int    // 0: success
		result     string // expected raw JSON result, "" to skip
		msg        string // substring of the error message
	}{
		{"accounts", `{"jsonrpc":"2.0","id":1,"method":"eth_accounts","params":[]}`, 0, `["` + cowAddr + `"]`, ""},
		{"accounts no params", `{"jsonrpc":"2.0","id":1,"method":"eth_accounts"}`, 0, `["` + cowAddr + `"]`, ""},
		{"eth_sign", `{"jsonrpc":"2.0","id":2,"method":"eth_sign","params":["` + cowAddr + `","` + hello + `"]}`, 0, "", ""},
		{"personal_sign hex", `{"jsonrpc":"2.0","id":3,"method":"personal_sign","params":["` + hello + `","` + strings.ToLower(cowAddr) + `"]}`, 0, "", ""},
		{"personal_sign text + password", `{"jsonrpc":"2.0","id":3,"method":"personal_sign","params":["hello","` + cowAddr + `","pw"]}`, 0, "", ""},
		{"signTypedData object", `{"jsonrpc":"2.0","id":4,"method":"eth_signTypedData_v4","params":["` + cowAddr + `",` + mail + `]}`, 0, `"` + mailSig + `"`, ""},
		{"signTypedData string", `{"jsonrpc":"2.0","id":"x","method":"eth_signTypedData_v4","params":["` + cowAddr + `",` + mustJSON(mail) + `]}`, 0, `"` + mailSig + `"`, ""},
		{"signTransaction", `{"jsonrpc":"2.0","id":5,"method":"eth_signTransaction","params":[` + tx + `]}`, 0, "", ""},
		{"parse error", `{"jsonrpc":"2.0",`, CodeParse, "", "parse"},
		{"batch parse error", `[{"jsonrpc":"2.0"`, CodeParse, "", "parse"},
		{"not an object", `42`, CodeInvalidRequest, "", ""},
		{"wrong version", `{"jsonrpc":"1.0","id":1,"method":"eth_accounts"}`, CodeInvalidRequest, "", "2.0"},
		{"no method", `{"jsonrpc":"2.0","id":1}`, CodeInvalidRequest, "", "method"},
		{"bad id", `{"jsonrpc":"2.0","id":{},"method":"eth_accounts"}`, CodeInvalidRequest, "", "id"},
		{"empty batch", `[]`, CodeInvalidRequest, "", "empty"},
		{"unknown method", `{"jsonrpc":"2.0","id":1,"method":"eth_sendTransaction","params":[]}`, CodeMethodNotFound, "", "eth_sendTransaction"},
		{"legacy typed data v1 is not signed as v4", `{"jsonrpc":"2.0","id":1,"method":"eth_signTypedData","params":[]}`, CodeMethodNotFound, "", "eth_signTypedData"},
		{"params object", `{"jsonrpc":"2.0","id":1,"method":"eth_sign","params":{"a":1}}`, CodeInvalidParams, "", "array"},
		{"eth_sign arity", `{"jsonrpc":"2.0","id":1,"method":"eth_sign","params":["` + cowAddr + `"]}`, CodeInvalidParams, "", "want 2 parameters"},
		{"eth_sign bad address", `{"jsonrpc":"2.0","id":1,"method":"eth_sign","params":["0x12","0x00"]}`, CodeInvalidParams, "", "address"},
		{"eth_sign bad checksum", `{"jsonrpc":"2.0","id":1,"method":"eth_sign","params":["0xcD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826","0x00"]}`, CodeInvalidParams, "", "checksum"},
		{"eth_sign text data", `{"jsonrpc":"2.0","id":1,"method":"eth_sign","params":["` + cowAddr + `","hello"]}`, 0, "", ""},
		{"personal_sign bad hex", `{"jsonrpc":"2.0","id":1,"method":"personal_sign","params":["0xzz","` + cowAddr + `"]}`, CodeInvalidParams, "", "hex"},
		{"unknown account", `{"jsonrpc":"2.0","id":1,"method":"eth_sign","params":["0x3535353535353535353535353535353535353535","0x00"]}`, CodeServer, "", "unknown account"},
		{"typed data invalid", `{"jsonrpc":"2.0","id":1,"method":"eth_signTypedData_v4","params":["` + cowAddr + `",` + strings.Replace(mail, `"primaryType":"Mail"`, `"primaryType":"Letter"`, 1) + `]}`, CodeInvalidParams, "", "invalid primaryType"},
		{"tx invalid", `{"jsonrpc":"2.0","id":1,"method":"eth_signTransaction","params":[` + strings.Replace(tx, `"chainId":"0x1",`, "", 1) + `]}`, CodeInvalidParams, "", "invalid chainId"},
		{"tx not object", `{"jsonrpc":"2.0","id":1,"method":"eth_signTransaction","params":["0x00"]}`, CodeInvalidParams, "", "object"},
		{"tx without from", `{"jsonrpc":"2.0","id":1,"method":"eth_signTransaction","params":[` + strings.Replace(tx, `"from":"`+cowAddr+`",`, "", 1) + `]}`, CodeInvalidParams, "", "invalid from: is required"},
		{"message too large", `{"jsonrpc":"2.0","id":1,"method":"personal_sign","params":["` + strings.Repeat("a", evm.MaxMessageSize+1) + `","` + cowAddr + `"]}`, CodeInvalidParams, "", "exceeds the size limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := call(t, s, c.body)
			if c.code == 0 {
				if r.Error != nil {
					t.Fatalf("error %+v", r.Error)
				}
				if c.result != "" && string(r.Result) != c.result {
					t.Fatalf("result %s, want %s", r.Result, c.result)
				}
				if len(r.Result) == 0 {
					t.Fatal("no result")
				}
				return
			}
			if r.Error == nil || r.Error.Code != c.code {
				t.Fatalf("error %+v, want code %d", r.Error, c.code)
			}
			if !strings.Contains(r.Error.Message, c.msg) {
				t.Fatalf("message %q lacks %q", r.Error.Message, c.msg)
			}
		})
	}
}

func mustJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestSignaturesVerify(t *testing.T) {
	s := newKeySigner(t)
	r := call(t, s, `{"jsonrpc":"2.0","id":1,"method":"personal_sign","params":["hello","`+cowAddr+`"]}`)
	var sigHex string
	json.Unmarshal(r.Result, &sigHex)
	sig := common.FromHex(sigHex)
	if len(sig) != 65 || sig[64] < 27 {
		t.Fatalf("signature %s", sigHex)
	}
	sig[64] -= 27
	pub, err := crypto.SigToPub(crypto.Keccak256([]byte("\x19Ethereum Signed Message:\n5hello")), sig)
	if err != nil || crypto.PubkeyToAddress(*pub) != s.addr {
		t.Fatalf("personal_sign does not recover: %v", err)
	}

	r = call(t, s, `{"jsonrpc":"2.0","id":1,"method":"eth_signTransaction","params":[`+tx+`]}`)
	var rawHex string
	json.Unmarshal(r.Result, &rawHex)
	var decoded types.Transaction
	if err := decoded.UnmarshalBinary(common.FromHex(rawHex)); err != nil {
		t.Fatal(err)
	}
	from, err := types.Sender(types.LatestSignerForChainID(decoded.ChainId()), &decoded)
	if err != nil || from != s.addr {
		t.Fatalf("signed tx sender %s, %v", from, err)
	}
}

func TestBatchAndNotifications(t *testing.T) {
	s := newKeySigner(t)
	out := Handle(context.Background(), s, []byte(`[
		{"jsonrpc":"2.0","id":1,"method":"eth_accounts"},
		{"jsonrpc":"2.0","method":"eth_accounts"},
		{"jsonrpc":"2.0","id":"b","method":"nope"},
		7
	]`))
	var rs []reply
	if err := json.Unmarshal(out, &rs); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if len(rs) != 3 {
		t.Fatalf("want 3 responses (notification omitted), got %s", out)
	}
	if string(rs[0].ID) != "1" || rs[0].Error != nil {
		t.Fatalf("first: %+v", rs[0])
	}
	if string(rs[1].ID) != `"b"` || rs[1].Error.Code != CodeMethodNotFound {
		t.Fatalf("second: %+v", rs[1])
	}
	if string(rs[2].ID) != "null" || rs[2].Error.Code != CodeInvalidRequest {
		t.Fatalf("third: %+v", rs[2])
	}
	if out := Handle(context.Background(), s, []byte(`{"jsonrpc":"2.0","method":"eth_accounts"}`)); out != nil {
		t.Fatalf("notification answered: %s", out)
	}
	if out := Handle(context.Background(), s, []byte(`[{"jsonrpc":"2.0","method":"eth_accounts"}]`)); out != nil {
		t.Fatalf("all-notification batch answered: %s", out)
	}
	big := "[" + strings.Repeat(`{"jsonrpc":"2.0","id":1,"method":"eth_accounts"},`, MaxBatch) + `{"jsonrpc":"2.0","id":1,"method":"eth_accounts"}]`
	if r := call(t, s, big); r.Error == nil || r.Error.Code != CodeInvalidRequest {
		t.Fatalf("oversized batch: %+v", r)
	}
}

func TestPanicBecomesInternalError(t *testing.T) {
	r := call(t, &panicSigner{*newKeySigner(t)}, `{"jsonrpc":"2.0","id":9,"method":"eth_accounts"}`)
	if r.Error == nil || r.Error.Code != CodeInternal || r.Error.Message != "internal error" {
		t.Fatalf("%+v", r)
	}
}

// TestParseCallKeepsNoPassword: personal_sign's third parameter (a
// password, ignored) is not kept in the params an approval stores.
func TestParseCallKeepsNoPassword(t *testing.T) {
	c, err := ParseCall("personal_sign", json.RawMessage(`["0x68656c6c6f", "0x3535353535353535353535353535353535353535", "hunter2"]`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(c.Params), "hunter2") {
		t.Fatalf("params keep the password: %s", c.Params)
	}
	again, err := ParseCall("personal_sign", c.Params)
	if err != nil || string(again.Message) != "hello" || again.Account != c.Account {
		t.Fatalf("stored params do not parse back: %+v %v", again, err)
	}
}
