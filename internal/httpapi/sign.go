package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/moonvault/moonvault/internal/approval"
	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/jsonrpc"
	"github.com/moonvault/moonvault/internal/policy"
	"github.com/moonvault/moonvault/internal/wallet"
	"github.com/moonvault/moonvault/internal/wallet/chain"
	"github.com/moonvault/moonvault/internal/wallet/evm"
)

// The sign pipeline. Every signature, REST or JSON-RPC, on every chain,
// takes one path:
//
//	edge: decode the envelope (REST body, JSON-RPC params) into a
//	      chain.Input (operation, message bytes, JSON document, base64
//	      payload), or (JSON-RPC, Ethereum) a request already parsed; the
//	      signRequest keeps its operation and original body (an approval
//	      runs it again from them)
//	sign: resolveAccount (principal, path or address, ActionSign)
//	      -> the account's chain parses the input for this account
//	         (chain.Chain.Parse: strict; an operation the chain lacks is a
//	         400 naming the chain; a transaction's from is checked)
//	      -> the request's intent -> checkPolicies (policystep.go): deny,
//	         hold for approval, or allow with limit spend reserved
//	      -> the wallet signs with the account's key (a failure releases
//	         the reservation)
//	edge: encode the answer (REST JSON as the chain made it, JSON-RPC hex)
//
// signOps lists every operation by name, with its parser and encoder: the
// REST handlers, an approved request run again and the policy dry run all
// use them, so an approved request is signed and answered exactly as it
// would have been. docs/design.md ("Sign pipeline") says more.

// signRequest is one request for the pipeline: the envelope for the
// account's chain to parse, or a request the edge parsed already.
type signRequest struct {
	in     chain.Input
	parsed chain.Request // JSON-RPC: Ethereum, resolved by address
	call   *jsonrpc.Call // and the call it came from

	// op is the operation (REST endpoint name or JSON-RPC method) and body
	// the REST body or JSON-RPC params as received: what an approval keeps
	// to run the request again.
	op   string
	body []byte
}

// sign runs the pipeline for the account ref names and returns the answer
// body the account's chain made.
func (a *API) sign(q *request, ref accountRef, sr signRequest) (any, error) {
	acc, err := a.resolveAccount(q, ref, policy.ActionSign)
	if err != nil {
		return nil, err
	}
	req := sr.parsed
	if req == nil {
		ch, err := a.d.Wallet.Chain(acc.Chain)
		if err != nil {
			return nil, err
		}
		if req, err = ch.Parse(sr.in, acc.ChainAccount()); err != nil {
			return nil, err
		}
	} else if acc.Chain != intent.ChainEthereum {
		return nil, errInvalid("unsupported_operation", "JSON-RPC signs with Ethereum accounts only")
	}
	in := req.Intent()
	// Policies (shared/DESIGN.md "Policies"), after authorization and
	// before the key is used: one call for every chain and operation.
	digest := func() (*approval.Digest, error) { return signingDigest(acc.Chain, sr) }
	held, err := a.checkPolicies(q, acc, in, sr.op, sr.body, digest)
	if err != nil {
		return nil, err
	}
	out, err := a.d.Wallet.Sign(q.ctx(), acc, req, in.Kind)
	if err != nil {
		q.release(held)
		return nil, err
	}
	q.recordSigned(in.Kind, out, sr.in)
	return out, nil
}

// signOp is one signing operation: parse decodes its body (REST) or params
// (JSON-RPC, which name the account by address), encode turns the chain's
// answer into the endpoint's.
type signOp struct {
	rest   bool
	parse  func(body []byte) (signRequest, *common.Address, error)
	encode func(out any) (any, error)
}

// REST operation names (the path's last element).
const (
	opSignMessage     = "sign-message"
	opSignTypedData   = "sign-typed-data"
	opSignTransaction = "sign-transaction"
	opSignPSBT        = "sign-psbt"
)

var signOps = func() map[string]signOp {
	asIs := func(out any) (any, error) { return out, nil }
	m := map[string]signOp{
		opSignMessage:     {rest: true, parse: parseMessageBody, encode: asIs},
		opSignTypedData:   {rest: true, parse: parseTypedDataBody, encode: asIs},
		opSignTransaction: {rest: true, parse: parseTransactionBody, encode: asIs},
		opSignPSBT:        {rest: true, parse: parsePSBTBody, encode: asIs},
	}
	for _, method := range jsonrpc.SignMethods {
		m[method] = signOp{parse: rpcParser(method), encode: encodeRPC}
	}
	return m
}()

// signEndpoint is the REST handler of a sign operation: 200 with the
// chain's answer, or 202 with the approval that holds the request.
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
	signed, err := a.sign(q, ref, req)
	if err != nil {
		return nil, err
	}
	out, err := so.encode(signed)
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
	if err != nil {
		return signRequest{}, nil, err
	}
	return signRequest{in: chain.Input{Op: chain.OpSignMessage, Message: msg}}, nil, nil
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
	return signRequest{in: chain.Input{Op: chain.OpSignTypedData, Document: req.TypedData}}, nil, nil
}

// parseTransactionBody takes an Ethereum transaction object, or a Solana
// wire transaction as a base64 string.
func parseTransactionBody(body []byte) (signRequest, *common.Address, error) {
	var req struct {
		Transaction json.RawMessage `json:"transaction"`
	}
	if err := decodeJSON(body, &req, false); err != nil {
		return signRequest{}, nil, err
	}
	if len(req.Transaction) == 0 || string(req.Transaction) == "null" {
		return signRequest{}, nil, errField("transaction", "is required")
	}
	in := chain.Input{Op: chain.OpSignTransaction, Document: req.Transaction}
	if req.Transaction[0] == '"' {
		if err := json.Unmarshal(req.Transaction, &in.Encoded); err != nil {
			return signRequest{}, nil, errField("transaction", "is not a JSON string")
		}
	}
	return signRequest{in: in}, nil, nil
}

// parsePSBTBody takes a Bitcoin PSBT (BIP-174, base64).
func parsePSBTBody(body []byte) (signRequest, *common.Address, error) {
	var req struct {
		PSBT     *string `json:"psbt"`
		Finalize bool    `json:"finalize"`
	}
	if err := decodeJSON(body, &req, false); err != nil {
		return signRequest{}, nil, err
	}
	if req.PSBT == nil || *req.PSBT == "" {
		return signRequest{}, nil, errField("psbt", "is required (base64)")
	}
	return signRequest{in: chain.Input{Op: chain.OpSignPSBT, Encoded: *req.PSBT, Finalize: req.Finalize}}, nil, nil
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

// rpcRequest is a parsed JSON-RPC call as an Ethereum request.
func rpcRequest(c *jsonrpc.Call) signRequest {
	var parsed chain.Request
	switch {
	case c.Tx != nil:
		parsed = evm.TxRequest(c.Tx)
	case c.TypedData != nil:
		parsed = evm.TypedDataRequest(c.TypedData)
	default:
		parsed = evm.MessageRequest(c.Message)
	}
	return signRequest{parsed: parsed, call: c, op: c.Method, body: c.Params}
}

// signingDigest says what the key will sign for sr (an approval shows it
// and compares it when the approved request runs); computed only then.
func signingDigest(chainName string, sr signRequest) (*approval.Digest, error) {
	var d *wallet.Digest
	var err error
	switch c := sr.call; {
	case c == nil:
		d, err = wallet.SigningDigest(chainName, sr.in)
	case c.Tx != nil:
		d, err = wallet.EVMTxDigest(c.Tx)
	case c.TypedData != nil:
		d, err = wallet.EVMTypedDataDigest(c.TypedData)
	default:
		d = wallet.EVMMessageDigest(c.Message)
	}
	if err != nil {
		return nil, err
	}
	return &approval.Digest{Algorithm: d.Algorithm, Value: hexutil.Encode(d.Sum), Of: d.Of}, nil
}

// rpcResult is the bytes a JSON-RPC signing call answers in hex: the
// 65-byte signature, or the signed transaction's encoding.
func rpcResult(out any) ([]byte, error) {
	switch v := out.(type) {
	case *evm.SignedMessage:
		return hexutil.Decode(v.Signature)
	case *evm.SignedTypedData:
		return hexutil.Decode(v.Signature)
	case *evm.SignedTransaction:
		return v.Tx.MarshalBinary()
	}
	return nil, fmt.Errorf("httpapi: unexpected answer %T from the Ethereum chain", out)
}

func encodeRPC(out any) (any, error) {
	raw, err := rpcResult(out)
	if err != nil {
		return nil, err
	}
	return hexutil.Encode(raw), nil
}
