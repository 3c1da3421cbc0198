package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/jsonkeys"
	"github.com/moonvault/moonvault/internal/jsonrpc"
	"github.com/moonvault/moonvault/internal/policy"
	"github.com/moonvault/moonvault/internal/wallet"
	"github.com/moonvault/moonvault/internal/wallet/chain"
	"github.com/moonvault/moonvault/internal/wallet/evm"
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
	var parsed chain.Request
	switch {
	case c.Tx != nil:
		parsed = evm.TxRequest(c.Tx)
	case c.TypedData != nil:
		parsed = evm.TypedDataRequest(c.TypedData)
	default:
		parsed = evm.MessageRequest(c.Message)
	}
	out, err := s.a.sign(s.q, accountRef{address: &c.Account}, signRequest{parsed: parsed})
	if errors.Is(err, wallet.ErrNotFound) {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeServer, Message: "unknown account " + c.Account.Hex(), ErrKind: errkind.NotFound}
	}
	if err != nil {
		return nil, rpcErr(err)
	}
	var raw []byte
	switch v := out.(type) {
	case *evm.SignedMessage:
		raw, err = hexutil.Decode(v.Signature)
	case *evm.SignedTypedData:
		raw, err = hexutil.Decode(v.Signature)
	case *evm.SignedTransaction:
		raw, err = v.Tx.MarshalBinary()
	default:
		err = fmt.Errorf("httpapi: unexpected answer %T from the Ethereum chain", out)
	}
	return raw, rpcErr(err)
}

// rpcErr gives a JSON-RPC error the API's code and message: invalid
// parameters keep their field, nothing internal is shown.
func rpcErr(err error) error {
	if err == nil {
		return nil
	}
	f := classify(err)
	code := jsonrpc.CodeServer
	if f.status == http.StatusBadRequest {
		code = jsonrpc.CodeInvalidParams
	}
	return &jsonrpc.Error{Code: code, Message: f.code + ": " + f.message, ErrKind: errkind.Of(err)}
}

func rpcDuplicateKey(k string) []byte {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": nil,
		"error": map[string]any{"code": jsonrpc.CodeInvalidRequest, "message": "invalid request: duplicate key " + quoteName(k)}})
	return b
}
