// Package jsonrpc serves the Ethereum JSON-RPC 2.0 remote-signer methods
// (eth_accounts, eth_sign, personal_sign, eth_signTransaction,
// eth_signTypedData_v4) with the parameter orders Ethereum clients send, so
// that ethers, web3.js and Foundry can use the vault as a remote signer.
package jsonrpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/moonvault/moonvault/internal/errkind"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"

	"github.com/moonvault/moonvault/internal/wallet/evm"
)

// JSON-RPC 2.0 error codes (JSON-RPC 2.0 §5.1).
const (
	CodeParse          = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternal       = -32603
	CodeServer         = -32000
	// CodePolicyDenied answers a request a transaction policy refused: EIP-1474's
	// "transaction rejected". Its data names the policy: {"code":
	// "policy_denied", "policy": id, "name", "reason"}.
	CodePolicyDenied = -32003
	// CodeApprovalRequired answers a request held for approval: nothing was
	// signed; data is {"code": "approval_required", "approval": {id,
	// status "pending", ...}}, and the signature is fetched later from
	// GET /v1/approvals/{id} (result).
	CodeApprovalRequired = -32010
)

// MaxBatch bounds the requests of one batch.
const MaxBatch = 100

// Call is a signing method's parameters, parsed into typed values: the
// account that signs, and exactly one of Message, TypedData or Tx.
type Call struct {
	Method    string
	Account   common.Address      // the signing account (a transaction's from)
	Message   []byte              // eth_sign, personal_sign: EIP-191 data
	TypedData *apitypes.TypedData // eth_signTypedData_v4
	Tx        *evm.Tx             // eth_signTransaction
	// Params are the call's parameters as received, kept by an approval to
	// run the call again when it is approved.
	Params json.RawMessage
}

// Signer is implemented by the HTTP layer per request, bound to the
// authenticated principal: it resolves and authorizes the account as the
// REST endpoints do, and signs through the same pipeline.
type Signer interface {
	Accounts(ctx context.Context) ([]common.Address, error)
	// Sign returns the 65-byte signature, or the signed transaction's
	// encoding for eth_signTransaction.
	Sign(ctx context.Context, c *Call) ([]byte, error)
}

// Error is a JSON-RPC error object.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	// Data is the optional structured detail of JSON-RPC 2.0 §5.1.
	Data any `json:"data,omitempty"`
	// ErrKind is the kind of the domain error this answers, when the
	// server translated one (not sent).
	ErrKind errkind.Kind `json:"-"`
}

func (e *Error) Error() string { return e.Message }

// Kind is the translated error's kind, or the request's fault by code.
func (e *Error) Kind() errkind.Kind {
	switch {
	case e.ErrKind != errkind.Other:
		return e.ErrKind
	case e.Code == CodeMethodNotFound:
		return errkind.NotFound
	case e.Code == CodeInternal:
		return errkind.Other
	}
	return errkind.Invalid
}

type request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

type response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
}

var null = json.RawMessage("null")

// Handle answers a request or a batch. It never panics; a body that is all
// notifications answers nothing (nil).
func Handle(ctx context.Context, s Signer, body []byte) (out []byte) {
	defer func() {
		if recover() != nil {
			out = encode(response{JSONRPC: "2.0", ID: null, Error: &Error{Code: CodeInternal, Message: "internal error"}})
		}
	}()
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return encode(errResp(null, CodeInvalidRequest, "empty request"))
	}
	if body[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(body, &items); err != nil {
			return encode(errResp(null, CodeParse, "parse error: invalid JSON"))
		}
		if len(items) == 0 {
			return encode(errResp(null, CodeInvalidRequest, "empty batch"))
		}
		if len(items) > MaxBatch {
			return encode(errResp(null, CodeInvalidRequest, fmt.Sprintf("batch of %d requests exceeds %d", len(items), MaxBatch)))
		}
		var resps []response
		for _, it := range items {
			if r, ok := handleOne(ctx, s, it); ok {
				resps = append(resps, r)
			}
		}
		if len(resps) == 0 {
			return nil
		}
		return encode(resps)
	}
	if !json.Valid(body) {
		return encode(errResp(null, CodeParse, "parse error: invalid JSON"))
	}
	r, ok := handleOne(ctx, s, body)
	if !ok {
		return nil
	}
	return encode(r)
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error"}}`)
	}
	return b
}

func errResp(id json.RawMessage, code int, msg string) response {
	return response{JSONRPC: "2.0", ID: id, Error: &Error{Code: code, Message: msg}}
}

// validID accepts the id types of JSON-RPC 2.0: string, number or null.
func validID(id json.RawMessage) bool {
	if len(id) == 0 {
		return true
	}
	switch id[0] {
	case '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'n':
		return true
	}
	return false
}

// handleOne answers one request; ok is false for a notification.
func handleOne(ctx context.Context, s Signer, raw json.RawMessage) (response, bool) {
	var req request
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&req); err != nil || req.JSONRPC != "2.0" || req.Method == "" || !validID(req.ID) {
		return errResp(null, CodeInvalidRequest, "invalid request: need jsonrpc \"2.0\", a method and an id"), true
	}
	notification := len(req.ID) == 0
	result, err := dispatch(ctx, s, req.Method, req.Params)
	if notification {
		return response{}, false
	}
	if err != nil {
		return response{JSONRPC: "2.0", ID: req.ID, Error: toError(err)}, true
	}
	return response{JSONRPC: "2.0", ID: req.ID, Result: result}, true
}

func toError(err error) *Error {
	var je *Error
	if errors.As(err, &je) {
		return je
	}
	var fe *evm.FieldError
	if errors.As(err, &fe) {
		return &Error{Code: CodeInvalidParams, Message: fe.Error()}
	}
	return &Error{Code: CodeServer, Message: err.Error()}
}

func invalidParams(format string, a ...any) error {
	return &Error{Code: CodeInvalidParams, Message: "invalid params: " + fmt.Sprintf(format, a...)}
}

// params decodes a positional parameter array, requiring at least min.
func params(raw json.RawMessage, min, max int) ([]json.RawMessage, error) {
	var ps []json.RawMessage
	if len(raw) == 0 || string(raw) == "null" {
		ps = nil
	} else if err := json.Unmarshal(raw, &ps); err != nil {
		return nil, invalidParams("params must be an array")
	}
	if len(ps) < min || len(ps) > max {
		if min == max {
			return nil, invalidParams("want %d parameters, got %d", min, len(ps))
		}
		return nil, invalidParams("want %d to %d parameters, got %d", min, max, len(ps))
	}
	return ps, nil
}

// address reads a 0x-prefixed address; a mixed-case one must carry a valid
// EIP-55 checksum (a wrong one is a typo, not an account to sign with).
func address(raw json.RawMessage, name string) (common.Address, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return common.Address{}, invalidParams("%s must be a 0x-prefixed 20-byte address", name)
	}
	a, err := evm.ParseAddress(name, s)
	if err != nil {
		return common.Address{}, invalidParams("%s", err.Error())
	}
	return a, nil
}

func dispatch(ctx context.Context, s Signer, method string, raw json.RawMessage) (any, error) {
	if method == "eth_accounts" {
		if _, err := params(raw, 0, 0); err != nil {
			return nil, err
		}
		addrs, err := s.Accounts(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]string, len(addrs)) // EIP-55 checksummed
		for i, a := range addrs {
			out[i] = a.Hex()
		}
		return out, nil
	}
	c, err := ParseCall(method, raw)
	if err != nil {
		return nil, err
	}
	sig, err := s.Sign(ctx, c)
	if err != nil {
		return nil, err
	}
	return hexutil.Encode(sig), nil
}

// SignMethods are the methods that sign (ParseCall's methods).
var SignMethods = []string{"eth_sign", "personal_sign", "eth_signTransaction", "eth_signTypedData_v4"}

// ParseCall decodes a signing method's positional parameters (also when
// an approved call is run again from its stored parameters).
func ParseCall(method string, raw json.RawMessage) (c *Call, err error) {
	c = &Call{Method: method, Params: raw}
	switch method {
	case "eth_sign", "personal_sign": // eth_sign: [address, data]; personal_sign: [data, address, password?] (the password is ignored)
		maxParams, addrAt, dataAt := 2, 0, 1
		if method == "personal_sign" {
			maxParams, addrAt, dataAt = 3, 1, 0
		}
		ps, err := params(raw, 2, maxParams)
		if err != nil {
			return nil, err
		}
		if c.Account, err = address(ps[addrAt], "address"); err != nil {
			return nil, err
		}
		var data string
		if json.Unmarshal(ps[dataAt], &data) != nil {
			return nil, invalidParams("data must be a string")
		}
		// The same decoder and size cap as the REST sign-message.
		if c.Message, err = evm.DecodeMessage(data, evm.EncodingAuto); err != nil {
			return nil, err
		}
		if len(ps) == 3 {
			// Keep no password: Params may be stored (an approval).
			c.Params, _ = json.Marshal(ps[:2])
		}
	case "eth_signTransaction": // [tx]
		ps, err := params(raw, 1, 1)
		if err != nil {
			return nil, err
		}
		if len(ps[0]) == 0 || ps[0][0] != '{' {
			return nil, invalidParams("transaction must be an object")
		}
		if c.Tx, err = evm.ParseTx(ps[0]); err != nil {
			return nil, err
		}
		if c.Tx.From == nil {
			return nil, &evm.FieldError{Name: "from", Msg: "is required"}
		}
		c.Account = *c.Tx.From
	// Only v4: the legacy eth_signTypedData (v1) takes another shape and
	// encoding, and signing it as v4 would sign something else.
	case "eth_signTypedData_v4": // [address, typedData]
		ps, err := params(raw, 2, 2)
		if err != nil {
			return nil, err
		}
		if c.Account, err = address(ps[0], "address"); err != nil {
			return nil, err
		}
		if c.TypedData, err = evm.ParseTypedData(ps[1]); err != nil {
			return nil, err
		}
	default:
		return nil, &Error{Code: CodeMethodNotFound, Message: "method not found: " + truncate(method, 64)}
	}
	return c, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
