package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"

	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/jsonrpc"
	"github.com/moonvault/moonvault/internal/policy"
	"github.com/moonvault/moonvault/internal/wallet"
	"github.com/moonvault/moonvault/internal/wallet/evm"
)

// The sign pipeline. Every signature, REST or JSON-RPC, takes one path:
//
//	edge: decode the envelope (REST body, JSON-RPC params) and parse the
//	      payload once into typed values (evm.DecodeMessage, ParseTypedData,
//	      ParseTx): a signRequest, which keeps its operation and original
//	      body (an approval runs it again from them)
//	sign: resolveAccount (principal, path or address, ActionSign)
//	      -> check the request against the account (a transaction's from)
//	      -> the request's intent -> checkPolicies (policies.go): deny,
//	         hold for approval, or allow with limit spend reserved
//	      -> the wallet signs with the account's key (a failure releases
//	         the reservation)
//	edge: encode the answer (REST JSON, JSON-RPC hex)
//
// signOps lists every operation by name, with its parser and encoder: the
// REST handlers, the JSON-RPC replay of an approved call and the policy dry
// run all use them, so an approved request is signed and answered exactly
// as it would have been. docs/design.md ("Sign pipeline") says how more
// chains plug in.

// signRequest is one parsed request: exactly one of its payloads is set.
type signRequest struct {
	message []byte              // EIP-191
	typed   *apitypes.TypedData // EIP-712
	tx      *evm.Tx             // a transaction, with its from if it named one

	// op is the operation (REST endpoint name or JSON-RPC method) and body
	// the REST body or JSON-RPC params as received: what an approval keeps
	// to run the request again.
	op   string
	body []byte
}

// intent describes the request for policies; sign fills in the account
// and the caller.
func (r *signRequest) intent() *intent.Intent {
	switch {
	case r.tx != nil:
		return evm.TransactionIntent(r.tx.Tx, r.tx.ChainID)
	case r.typed != nil:
		return evm.TypedDataIntent(r.typed)
	}
	return evm.MessageIntent()
}

// signature is what signing produced.
type signature struct {
	sig, hash []byte
	tx        *types.Transaction // signed, for a transaction
}

// sign runs the pipeline for the account ref names.
func (a *API) sign(q *request, ref accountRef, req signRequest) (*signature, error) {
	acc, err := a.resolveAccount(q, ref, policy.ActionSign)
	if err != nil {
		return nil, err
	}
	if req.tx != nil && req.tx.From != nil && *req.tx.From != acc.Address {
		return nil, errField("from", "does not match the account's address")
	}
	// Policies (shared/DESIGN.md "Policies"), after authorization and
	// before the key is used: one call for every chain and operation.
	held, err := a.checkPolicies(q, acc, req.intent(), req.op, req.body)
	if err != nil {
		return nil, err
	}
	out, err := a.signWith(q, acc, req)
	if err != nil {
		q.release(held)
		return nil, err
	}
	return out, nil
}

func (a *API) signWith(q *request, acc *wallet.Account, req signRequest) (*signature, error) {
	var out signature
	var err error
	switch {
	case req.tx != nil:
		out.tx, err = a.d.Wallet.SignTransaction(q.ctx(), acc, req.tx.Tx, req.tx.ChainID)
	case req.typed != nil:
		out.sig, out.hash, err = a.d.Wallet.SignTypedData(q.ctx(), acc, req.typed)
	default:
		out.sig, out.hash, err = a.d.Wallet.SignMessage(q.ctx(), acc, req.message)
	}
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// signOp is one signing operation: parse decodes its body (REST) or params
// (JSON-RPC, which name the account by address), encode makes the answer.
type signOp struct {
	rest   bool
	parse  func(body []byte) (signRequest, *common.Address, error)
	encode func(*signature) (any, error)
}

// REST operation names (the path's last element).
const (
	opSignMessage     = "sign-message"
	opSignTypedData   = "sign-typed-data"
	opSignTransaction = "sign-transaction"
)

var signOps = func() map[string]signOp {
	m := map[string]signOp{
		opSignMessage:     {rest: true, parse: parseMessageBody, encode: encodeMessage},
		opSignTypedData:   {rest: true, parse: parseTypedDataBody, encode: encodeTypedData},
		opSignTransaction: {rest: true, parse: parseTransactionBody, encode: encodeTransaction},
	}
	for _, method := range jsonrpc.SignMethods {
		m[method] = signOp{parse: rpcParser(method), encode: encodeRPC}
	}
	return m
}()

// signEndpoint is the REST handler of a sign operation.
func (a *API) signEndpoint(op string) handlerFunc {
	return func(q *request) (int, any, error) {
		body, err := readBody(q)
		if err != nil {
			return 0, nil, err
		}
		out, err := a.runSign(q, op, pathRef(q), body)
		var held *approvalHeld
		switch {
		case errors.As(err, &held):
			return http.StatusAccepted, map[string]any{"approval": held.ap}, nil
		case err != nil:
			return 0, nil, err
		}
		return 200, out, nil
	}
}

// runSign parses body for op, runs the pipeline and encodes the answer:
// the REST handlers, an approval at its threshold, and the dry run (which
// stops at the policy step) all come through here.
func (a *API) runSign(q *request, op string, ref accountRef, body []byte) (any, error) {
	so, ok := signOps[op]
	if !ok {
		return nil, errField("operation", "unknown signing operation")
	}
	req, addr, err := so.parse(body)
	if err != nil {
		return nil, err
	}
	if addr != nil {
		ref = accountRef{address: addr}
	}
	req.op, req.body = op, body
	held := len(q.held)
	s, err := a.sign(q, ref, req)
	if err != nil {
		return nil, err
	}
	out, err := so.encode(s)
	if err != nil {
		q.releaseSince(held) // nobody gets this signature
		return nil, err
	}
	return out, nil
}

// readBody reads a request body under the size limit.
func readBody(q *request) ([]byte, error) {
	data, err := io.ReadAll(q.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errTooLarge
		}
		return nil, errInvalid("invalid_body", "could not read the request body")
	}
	return data, nil
}

func parseMessageBody(body []byte) (signRequest, *common.Address, error) {
	var req struct {
		Data     *string `json:"data"`
		Encoding string  `json:"encoding"`
	}
	if err := decodeJSON(body, &req, false); err != nil {
		return signRequest{}, nil, err
	}
	if req.Data == nil {
		return signRequest{}, nil, errField("data", "is required")
	}
	msg, err := evm.DecodeMessage(*req.Data, req.Encoding)
	return signRequest{message: msg}, nil, err
}

func encodeMessage(s *signature) (any, error) {
	return map[string]string{"signature": hexutil.Encode(s.sig), "message_hash": hexutil.Encode(s.hash)}, nil
}

func parseTypedDataBody(body []byte) (signRequest, *common.Address, error) {
	var req struct {
		TypedData json.RawMessage `json:"typed_data"`
	}
	if err := decodeJSON(body, &req, false); err != nil {
		return signRequest{}, nil, err
	}
	if len(req.TypedData) == 0 {
		return signRequest{}, nil, errField("typed_data", "is required")
	}
	td, err := evm.ParseTypedData(req.TypedData)
	return signRequest{typed: td}, nil, err
}

func encodeTypedData(s *signature) (any, error) {
	return map[string]string{"signature": hexutil.Encode(s.sig), "hash": hexutil.Encode(s.hash)}, nil
}

type signedTx struct {
	Raw       string `json:"raw_transaction"`
	Hash      string `json:"transaction_hash"`
	Signature struct {
		V string `json:"v"`
		R string `json:"r"`
		S string `json:"s"`
	} `json:"signature"`
}

func parseTransactionBody(body []byte) (signRequest, *common.Address, error) {
	var req struct {
		Transaction json.RawMessage `json:"transaction"`
	}
	if err := decodeJSON(body, &req, false); err != nil {
		return signRequest{}, nil, err
	}
	if len(req.Transaction) == 0 {
		return signRequest{}, nil, errField("transaction", "is required")
	}
	tx, err := evm.ParseTx(req.Transaction)
	return signRequest{tx: tx}, nil, err
}

func encodeTransaction(s *signature) (any, error) {
	raw, err := s.tx.MarshalBinary()
	if err != nil {
		return nil, err
	}
	v, r, sv := s.tx.RawSignatureValues()
	out := signedTx{Raw: hexutil.Encode(raw), Hash: s.tx.Hash().Hex()}
	out.Signature.V, out.Signature.R, out.Signature.S = hexutil.EncodeBig(v), hexutil.EncodeBig(r), hexutil.EncodeBig(sv)
	return out, nil
}

// rpcParser parses a JSON-RPC signing call's params (an approved call run
// again): the same parser as the live call.
func rpcParser(method string) func([]byte) (signRequest, *common.Address, error) {
	return func(params []byte) (signRequest, *common.Address, error) {
		c, err := jsonrpc.ParseCall(method, params)
		if err != nil {
			return signRequest{}, nil, err
		}
		addr := c.Account
		return rpcRequest(c), &addr, nil
	}
}

func rpcRequest(c *jsonrpc.Call) signRequest {
	return signRequest{message: c.Message, typed: c.TypedData, tx: c.Tx, op: c.Method, body: c.Params}
}

// rpcResult is a JSON-RPC signing call's result: the 65-byte signature, or
// the signed transaction's encoding.
func rpcResult(s *signature) ([]byte, error) {
	if s.tx != nil {
		return s.tx.MarshalBinary()
	}
	return s.sig, nil
}

func encodeRPC(s *signature) (any, error) {
	raw, err := rpcResult(s)
	if err != nil {
		return nil, err
	}
	return hexutil.Encode(raw), nil
}
