package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/ethereum/go-ethereum/common"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/jsonkeys"
	"github.com/moonvault/moonvault/internal/jsonrpc"
	"github.com/moonvault/moonvault/internal/policy"
	"github.com/moonvault/moonvault/internal/wallet"
)

// rpc serves the Ethereum JSON-RPC remote signer for the caller.
func (a *API) rpc(q *request) (int, any, error) {
	body, err := io.ReadAll(q.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return 0, nil, errTooLarge
		}
		return 0, nil, errInvalid("invalid_body", "could not read the request body")
	}
	if k, dup := jsonkeys.Duplicate(body); dup {
		// JSON-RPC 2.0 §5.1: an invalid Request object, answered in kind.
		return 200, rawJSON(rpcDuplicateKey(k)), nil
	}
	out := jsonrpc.Handle(q.ctx(), &rpcSigner{a: a, q: q}, body)
	if len(out) == 0 {
		return 204, nil, nil
	}
	return 200, rawJSON(out), nil
}

// rpcSigner binds the JSON-RPC methods to the authenticated principal and
// sends every signature through the sign pipeline (sign.go).
type rpcSigner struct {
	a *API
	q *request
}

func (s *rpcSigner) Accounts(ctx context.Context) ([]common.Address, error) {
	p := s.q.principal
	if err := s.a.authorize(s.q, policy.ActionAccountRead, nil); err != nil { // listing: filtered per account below
		return nil, rpcErr(err)
	}
	var out []common.Address
	after := ""
	for {
		accs, next, err := s.a.d.Wallet.ListChain(ctx, p.Owner, intent.ChainEthereum, after, 1000)
		if err != nil {
			return nil, rpcErr(err)
		}
		for i := range accs {
			if s.a.authorize(s.q, policy.ActionSign, &policy.Resource{Owner: accs[i].Owner, Name: accs[i].Name, Grants: accs[i].Grants}) == nil ||
				s.a.authorize(s.q, policy.ActionAccountRead, &policy.Resource{Owner: accs[i].Owner, Name: accs[i].Name}) == nil {
				if addr, ok := accs[i].EthereumAddress(); ok {
					out = append(out, addr)
				}
			}
		}
		if next == "" {
			return out, nil
		}
		after = next
	}
}

// Sign sends the parsed call through the pipeline as an Ethereum request
// and returns the bytes JSON-RPC answers in hex: the 65-byte signature, or
// the signed transaction's encoding.
func (s *rpcSigner) Sign(ctx context.Context, c *jsonrpc.Call) ([]byte, error) {
	held := len(s.q.held)
	sig, err := s.a.sign(s.q, accountRef{address: &c.Account}, rpcRequest(c))
	switch {
	case errors.Is(err, wallet.ErrNotFound):
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeServer, Message: "unknown account " + c.Account.Hex(), ErrKind: errkind.NotFound}
	case err != nil:
		return nil, rpcErr(err)
	}
	raw, err := rpcResult(sig)
	if err != nil {
		s.q.releaseSince(held) // nobody gets this signature
	}
	return raw, rpcErr(err)
}

// rpcErr gives a JSON-RPC error the API's code and message: invalid
// parameters keep their field, nothing internal is shown. A policy denial
// and a request held for approval have codes of their own, with the
// policy or the approval in data.
func rpcErr(err error) error {
	if err == nil {
		return nil
	}
	var held *approvalHeld
	if errors.As(err, &held) {
		return &jsonrpc.Error{Code: jsonrpc.CodeApprovalRequired,
			Message: "approval_required: the request is held for approval " + held.ap.ID + "; nothing was signed",
			Data:    map[string]any{"code": "approval_required", "approval": held.ap}, ErrKind: errkind.Conflict}
	}
	f := classify(err)
	code := jsonrpc.CodeServer
	var data any
	switch {
	case f.policy != nil:
		code = jsonrpc.CodePolicyDenied
		data = map[string]string{"code": f.code, "policy": f.policy.ID, "name": f.policy.Name, "reason": f.policy.Reason}
	case f.status == http.StatusBadRequest:
		code = jsonrpc.CodeInvalidParams
	}
	return &jsonrpc.Error{Code: code, Message: f.code + ": " + f.message, Data: data, ErrKind: errkind.Of(err)}
}

func rpcDuplicateKey(k string) []byte {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": nil,
		"error": map[string]any{"code": jsonrpc.CodeInvalidRequest, "message": "invalid request: duplicate key " + quoteName(k)}})
	return b
}
