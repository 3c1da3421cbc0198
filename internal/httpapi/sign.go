package httpapi

import (
	"encoding/json"

	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/policy"
	"github.com/moonvault/moonvault/internal/wallet/chain"
	"github.com/moonvault/moonvault/internal/wallet/evm"
)

// The sign pipeline. Every signature, REST or JSON-RPC, on every chain,
// takes one path:
//
//	edge: decode the envelope (REST body, JSON-RPC params) into a
//	      chain.Input (operation, message bytes, JSON document, base64
//	      payload), or (JSON-RPC, Ethereum) a request already parsed
//	sign: resolveAccount (principal, path or address, ActionSign)
//	      -> the account's chain parses the input for this account
//	         (chain.Chain.Parse: strict; an operation the chain lacks is a
//	         400 naming the chain; a transaction's from is checked)
//	      -> the request's intent, with the pipeline's part filled in
//	      -> [policies evaluate the intent here]
//	      -> the wallet signs with the account's key
//	edge: encode the answer (REST JSON as the chain made it, JSON-RPC hex)
//
// docs/design.md ("Sign pipeline") says more.

// signRequest is one request for the pipeline: the envelope for the
// account's chain to parse, or a request the edge parsed already.
type signRequest struct {
	in     chain.Input
	parsed chain.Request // JSON-RPC: Ethereum, resolved by address
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
	in.Account, in.Owner = acc.ID().String(), acc.Owner
	in.Principal, in.AMR = q.principal.Subject, q.principal.AMR
	in.Normalize()
	// Policies (shared/DESIGN.md "Policies") evaluate `in` here: every
	// chain's request, REST and JSON-RPC, after authorization and before
	// the key is used.
	out, err := a.d.Wallet.Sign(q.ctx(), acc, req, in.Kind)
	if err == nil {
		q.recordSigned(in.Kind, out, sr.in)
	}
	return out, err
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
	return a.signed(a.sign(q, pathRef(q), signRequest{in: chain.Input{Op: chain.OpSignMessage, Message: msg}}))
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
	return a.signed(a.sign(q, pathRef(q), signRequest{in: chain.Input{Op: chain.OpSignTypedData, Document: req.TypedData}}))
}

// signTransaction takes an Ethereum transaction object, or a Solana wire
// transaction as a base64 string.
func (a *API) signTransaction(q *request) (int, any, error) {
	var req struct {
		Transaction json.RawMessage `json:"transaction"`
	}
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	if len(req.Transaction) == 0 || string(req.Transaction) == "null" {
		return 0, nil, errField("transaction", "is required")
	}
	in := chain.Input{Op: chain.OpSignTransaction, Document: req.Transaction}
	if req.Transaction[0] == '"' {
		if err := json.Unmarshal(req.Transaction, &in.Encoded); err != nil {
			return 0, nil, errField("transaction", "is not a JSON string")
		}
	}
	return a.signed(a.sign(q, pathRef(q), signRequest{in: in}))
}

// signPSBT signs a Bitcoin PSBT (BIP-174, base64).
func (a *API) signPSBT(q *request) (int, any, error) {
	var req struct {
		PSBT     *string `json:"psbt"`
		Finalize bool    `json:"finalize"`
	}
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	if req.PSBT == nil || *req.PSBT == "" {
		return 0, nil, errField("psbt", "is required (base64)")
	}
	return a.signed(a.sign(q, pathRef(q), signRequest{in: chain.Input{Op: chain.OpSignPSBT, Encoded: *req.PSBT, Finalize: req.Finalize}}))
}

func (a *API) signed(out any, err error) (int, any, error) {
	if err != nil {
		return 0, nil, err
	}
	return 200, out, nil
}
