package httpapi

import (
	"encoding/json"

	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"

	"github.com/moonvault/moonvault/internal/policy"
	"github.com/moonvault/moonvault/internal/wallet"
	"github.com/moonvault/moonvault/internal/wallet/evm"
)

// The sign pipeline. Every signature, REST or JSON-RPC, takes one path:
//
//	edge: decode the envelope (REST body, JSON-RPC params) and parse the
//	      payload once into typed values (evm.DecodeMessage, ParseTypedData,
//	      ParseTx): a signRequest
//	sign: resolveAccount (principal, path or address, ActionSign)
//	      -> check the request against the account (a transaction's from)
//	      -> [policies evaluate the request's intent here]
//	      -> the wallet signs with the account's key
//	edge: encode the answer (REST JSON, JSON-RPC hex)
//
// docs/design.md ("Sign pipeline") says how more chains and policies plug in.

// signRequest is one parsed request: exactly one of its payloads is set.
type signRequest struct {
	message []byte              // EIP-191
	typed   *apitypes.TypedData // EIP-712
	tx      *evm.Tx             // a transaction, with its from if it named one
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
	// Policies (shared/DESIGN.md "Policies") evaluate the request's intent
	// here, after authorization and before the key is used.
	return a.signWith(q, acc, req)
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
	// The audit line records a hash of what was signed (issue 13).
	switch {
	case out.tx != nil:
		q.recordSigned("transaction", out.tx.Hash().Bytes())
	case req.typed != nil:
		q.recordSigned("typed_data", out.hash)
	default:
		q.recordSigned("message", out.hash)
	}
	return &out, nil
}

func (a *API) signMessage(q *request) (int, any, error) {
	var req struct {
		Data     *string `json:"data"`
		Encoding string  `json:"encoding"`
	}
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	if req.Data == nil {
		return 0, nil, errField("data", "is required")
	}
	msg, err := evm.DecodeMessage(*req.Data, req.Encoding)
	if err != nil {
		return 0, nil, err
	}
	s, err := a.sign(q, pathRef(q), signRequest{message: msg})
	if err != nil {
		return 0, nil, err
	}
	return 200, map[string]string{"signature": hexutil.Encode(s.sig), "message_hash": hexutil.Encode(s.hash)}, nil
}

func (a *API) signTypedData(q *request) (int, any, error) {
	var req struct {
		TypedData json.RawMessage `json:"typed_data"`
	}
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	if len(req.TypedData) == 0 {
		return 0, nil, errField("typed_data", "is required")
	}
	td, err := evm.ParseTypedData(req.TypedData)
	if err != nil {
		return 0, nil, err
	}
	s, err := a.sign(q, pathRef(q), signRequest{typed: td})
	if err != nil {
		return 0, nil, err
	}
	return 200, map[string]string{"signature": hexutil.Encode(s.sig), "hash": hexutil.Encode(s.hash)}, nil
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

func (a *API) signTransaction(q *request) (int, any, error) {
	var req struct {
		Transaction json.RawMessage `json:"transaction"`
	}
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	if len(req.Transaction) == 0 {
		return 0, nil, errField("transaction", "is required")
	}
	tx, err := evm.ParseTx(req.Transaction)
	if err != nil {
		return 0, nil, err
	}
	s, err := a.sign(q, pathRef(q), signRequest{tx: tx})
	if err != nil {
		return 0, nil, err
	}
	raw, err := s.tx.MarshalBinary()
	if err != nil {
		return 0, nil, err
	}
	v, r, sv := s.tx.RawSignatureValues()
	out := signedTx{Raw: hexutil.Encode(raw), Hash: s.tx.Hash().Hex()}
	out.Signature.V, out.Signature.R, out.Signature.S = hexutil.EncodeBig(v), hexutil.EncodeBig(r), hexutil.EncodeBig(sv)
	return 200, out, nil
}
