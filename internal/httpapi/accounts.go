package httpapi

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/moonvault/moonvault/internal/auth"
	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/jsonrpc"
	"github.com/moonvault/moonvault/internal/policy"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/wallet"
	"github.com/moonvault/moonvault/internal/wallet/evm"
)

// maxMessage bounds the data of sign-message (after decoding).
const maxMessage = 128 << 10

type accountView struct {
	Name      string    `json:"name"`
	Owner     string    `json:"owner"`
	Address   string    `json:"address"`
	PublicKey string    `json:"public_key"`
	CreatedAt time.Time `json:"created_at"`
	Grants    []string  `json:"grants,omitempty"`
}

func view(acc *wallet.Account) accountView {
	return accountView{
		Name: acc.Name, Owner: acc.Owner, Address: acc.Address.Hex(),
		PublicKey: hexutil.Encode(acc.PublicKey), CreatedAt: acc.CreatedAt.UTC(), Grants: acc.Grants,
	}
}

func (a *API) authorize(q *request, act policy.Action, res *policy.Resource) error {
	return a.d.Policy.Authorize(q.principal, act, res, a.d.Now())
}

// loadAccount resolves {name} — the caller's own account, or "owner:name"
// for one granted to the caller — and checks the action on it. An account
// the caller may not see answers 404, so that names do not leak.
func (a *API) loadAccount(q *request, act policy.Action) (*wallet.Account, error) {
	ref := q.PathValue("name")
	owner, name := q.principal.Owner, ref
	if o, n, ok := strings.Cut(ref, ":"); ok {
		owner, name = o, n
	}
	acc, err := a.d.Wallet.Get(q.ctx(), owner, name)
	if err != nil {
		return nil, err
	}
	if err := a.authorize(q, act, &policy.Resource{Owner: acc.Owner, Name: acc.Name, Grants: acc.Grants}); err != nil {
		if errors.Is(err, policy.ErrDenied) && acc.Owner != q.principal.Owner {
			return nil, wallet.ErrNotFound
		}
		return nil, err
	}
	q.account, q.address = acc.Owner+"/"+acc.Name, acc.Address.Hex()
	return acc, nil
}

func (a *API) createAccount(q *request) (int, any, error) {
	var req struct {
		Name       string        `json:"name"`
		PrivateKey secret.String `json:"private_key"`
	}
	if err := decode(q, &req, true); err != nil {
		return 0, nil, err
	}
	act := policy.ActionAccountCreate
	var key secret.Bytes
	if req.PrivateKey != "" {
		act = policy.ActionAccountImport
		k, err := hex.DecodeString(strings.TrimPrefix(req.PrivateKey.Reveal(), "0x"))
		if err != nil || len(k) != 32 {
			return 0, nil, errBadRequest("invalid_request", "private_key must be 32 bytes of hex")
		}
		key = secret.Bytes(k)
		defer key.Destroy()
	}
	if err := a.authorize(q, act, &policy.Resource{Owner: q.principal.Owner, Name: req.Name}); err != nil {
		return 0, nil, err
	}
	acc, err := a.d.Wallet.Create(q.ctx(), q.principal.Owner, req.Name, key)
	if err != nil {
		return 0, nil, err
	}
	q.account, q.address = acc.Owner+"/"+acc.Name, acc.Address.Hex()
	return 201, view(acc), nil
}

func (a *API) listAccounts(q *request) (int, any, error) {
	limit := 100
	if v := q.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return 0, nil, errBadRequest("invalid_request", "limit must be an integer from 1 to 1000")
		}
		limit = n
	}
	if err := a.authorize(q, policy.ActionAccountRead, &policy.Resource{Owner: q.principal.Owner}); err != nil {
		return 0, nil, err
	}
	accs, next, err := a.d.Wallet.List(q.ctx(), q.principal.Owner, q.URL.Query().Get("after"), limit)
	if err != nil {
		return 0, nil, err
	}
	out := make([]accountView, 0, len(accs))
	for i := range accs {
		if a.authorize(q, policy.ActionAccountRead, &policy.Resource{Owner: accs[i].Owner, Name: accs[i].Name, Grants: accs[i].Grants}) == nil {
			out = append(out, view(&accs[i]))
		}
	}
	return 200, map[string]any{"accounts": out, "next": next}, nil
}

func (a *API) getAccount(q *request) (int, any, error) {
	acc, err := a.loadAccount(q, policy.ActionAccountRead)
	if err != nil {
		return 0, nil, err
	}
	return 200, view(acc), nil
}

func (a *API) deleteAccount(q *request) (int, any, error) {
	acc, err := a.loadAccount(q, policy.ActionAccountDelete)
	if err != nil {
		return 0, nil, err
	}
	if err := a.d.Wallet.Delete(q.ctx(), acc.Owner, acc.Name); err != nil {
		return 0, nil, err
	}
	return 204, nil, nil
}

func (a *API) grant(q *request) (int, any, error) {
	var req struct {
		Principal string `json:"principal"`
	}
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	if req.Principal == "" {
		return 0, nil, errBadRequest("invalid_request", "principal is required")
	}
	acc, err := a.loadAccount(q, policy.ActionAccountGrant)
	if err != nil {
		return 0, nil, err
	}
	// Only an existing user can be granted (names of deleted users are never
	// reused, so a grant cannot pass to a later namesake).
	if _, err := a.d.Auth.GetUser(q.ctx(), req.Principal); err != nil {
		if errors.Is(err, auth.ErrNotFound) {
			return 0, nil, errBadRequest("invalid_request", "invalid principal: no such user")
		}
		return 0, nil, err
	}
	if err := a.d.Wallet.Grant(q.ctx(), acc.Owner, acc.Name, req.Principal); err != nil {
		return 0, nil, err
	}
	return 204, nil, nil
}

func (a *API) revokeGrant(q *request) (int, any, error) {
	acc, err := a.loadAccount(q, policy.ActionAccountGrant)
	if err != nil {
		return 0, nil, err
	}
	if err := a.d.Wallet.Revoke(q.ctx(), acc.Owner, acc.Name, q.PathValue("principal")); err != nil {
		return 0, nil, err
	}
	return 204, nil, nil
}

// decodeMessage turns {"data","encoding"} into bytes.
func decodeMessage(data, encoding string) ([]byte, error) {
	var b []byte
	switch encoding {
	case "", "utf8":
		if !utf8.ValidString(data) {
			return nil, errBadRequest("invalid_request", "data is not valid UTF-8")
		}
		b = []byte(data)
	case "hex":
		d, err := hexutil.Decode(ensure0x(data))
		if err != nil {
			return nil, errBadRequest("invalid_request", "data is not valid hex: "+err.Error())
		}
		b = d
	default:
		return nil, errBadRequest("invalid_request", `encoding must be "utf8" or "hex"`)
	}
	if len(b) > maxMessage {
		return nil, errBadRequest("invalid_request", "data exceeds the size limit of "+strconv.Itoa(maxMessage)+" bytes")
	}
	return b, nil
}

func ensure0x(s string) string {
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		return s
	}
	return "0x" + s
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
		return 0, nil, errBadRequest("invalid_request", "data is required")
	}
	msg, err := decodeMessage(*req.Data, req.Encoding)
	if err != nil {
		return 0, nil, err
	}
	acc, err := a.loadAccount(q, policy.ActionSign)
	if err != nil {
		return 0, nil, err
	}
	sig, hash, err := a.d.Wallet.SignMessage(q.ctx(), acc, msg)
	if err != nil {
		return 0, nil, err
	}
	q.recordSigned("message", hash)
	return 200, map[string]string{"signature": hexutil.Encode(sig), "message_hash": hexutil.Encode(hash)}, nil
}

func (a *API) signTypedData(q *request) (int, any, error) {
	var req struct {
		TypedData json.RawMessage `json:"typed_data"`
	}
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	if len(req.TypedData) == 0 {
		return 0, nil, errBadRequest("invalid_request", "typed_data is required")
	}
	td, err := evm.ParseTypedData(req.TypedData)
	if err != nil {
		return 0, nil, err
	}
	acc, err := a.loadAccount(q, policy.ActionSign)
	if err != nil {
		return 0, nil, err
	}
	sig, hash, err := a.d.Wallet.SignTypedData(q.ctx(), acc, td)
	if err != nil {
		return 0, nil, err
	}
	q.recordSigned("typed_data", hash)
	return 200, map[string]string{"signature": hexutil.Encode(sig), "hash": hexutil.Encode(hash)}, nil
}

// txFrom reads the optional "from" of a transaction object.
func txFrom(raw json.RawMessage) (*common.Address, error) {
	var f struct {
		From *string `json:"from"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, &evm.FieldError{Field: "transaction", Msg: "must be a JSON object"}
	}
	if f.From == nil {
		return nil, nil
	}
	if !common.IsHexAddress(*f.From) {
		return nil, &evm.FieldError{Field: "from", Msg: "not a 20-byte hex address"}
	}
	addr := common.HexToAddress(*f.From)
	return &addr, nil
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
		return 0, nil, errBadRequest("invalid_request", "transaction is required")
	}
	from, err := txFrom(req.Transaction)
	if err != nil {
		return 0, nil, err
	}
	tx, chainID, err := evm.ParseTransaction(req.Transaction)
	if err != nil {
		return 0, nil, err
	}
	acc, err := a.loadAccount(q, policy.ActionSign)
	if err != nil {
		return 0, nil, err
	}
	if from != nil && *from != acc.Address {
		return 0, nil, errBadRequest("invalid_request", "invalid from: does not match the account's address")
	}
	signed, err := a.d.Wallet.SignTransaction(q.ctx(), acc, tx, chainID)
	if err != nil {
		return 0, nil, err
	}
	q.recordSigned("transaction", signed.Hash().Bytes())
	raw, err := signed.MarshalBinary()
	if err != nil {
		return 0, nil, err
	}
	v, r, s := signed.RawSignatureValues()
	out := signedTx{Raw: hexutil.Encode(raw), Hash: signed.Hash().Hex()}
	out.Signature.V, out.Signature.R, out.Signature.S = hexBig(v), hexBig(r), hexBig(s)
	return 200, out, nil
}

func hexBig(b *big.Int) string { return hexutil.EncodeBig(b) }

// rpc serves the Ethereum JSON-RPC remote signer for the caller.
func (a *API) rpc(q *request) (int, any, error) {
	body, err := io.ReadAll(q.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return 0, nil, &apiError{status: 413, code: "payload_too_large", message: "request body is larger than the limit"}
		}
		return 0, nil, errBadRequest("invalid_body", "could not read the request body")
	}
	out := jsonrpc.Handle(q.ctx(), &rpcSigner{a: a, q: q}, body)
	if len(out) == 0 {
		return 204, nil, nil
	}
	return 200, rawJSON(out), nil
}

// rpcSigner binds the JSON-RPC methods to the authenticated principal.
type rpcSigner struct {
	a *API
	q *request
}

func (s *rpcSigner) account(ctx context.Context, addr common.Address, act policy.Action) (*wallet.Account, error) {
	acc, err := s.a.d.Wallet.ByAddress(ctx, addr)
	if err != nil {
		if errors.Is(err, wallet.ErrNotFound) {
			return nil, &jsonrpc.Error{Code: -32000, Message: "unknown account " + addr.Hex()}
		}
		return nil, rpcErr(err)
	}
	if err := s.a.authorize(s.q, act, &policy.Resource{Owner: acc.Owner, Name: acc.Name, Grants: acc.Grants}); err != nil {
		if errors.Is(err, policy.ErrStepUpRequired) {
			return nil, &jsonrpc.Error{Code: -32000, Message: "mfa_required: signing needs a recent login with a TOTP code"}
		}
		return nil, &jsonrpc.Error{Code: -32000, Message: "unknown account " + addr.Hex()}
	}
	// A batch may sign with several accounts: the audit line names them all.
	s.q.account = appendList(s.q.account, acc.Owner+"/"+acc.Name)
	s.q.address = appendList(s.q.address, acc.Address.Hex())
	return acc, nil
}

func appendList(list, item string) string {
	if list == "" {
		return item
	}
	for _, x := range strings.Split(list, ",") {
		if x == item {
			return list
		}
	}
	return list + "," + item
}

func (s *rpcSigner) Accounts(ctx context.Context) ([]common.Address, error) {
	p := s.q.principal
	if err := s.a.authorize(s.q, policy.ActionAccountRead, &policy.Resource{Owner: p.Owner}); err != nil {
		return nil, &jsonrpc.Error{Code: -32000, Message: "not allowed"}
	}
	var out []common.Address
	after := ""
	for {
		accs, next, err := s.a.d.Wallet.List(ctx, p.Owner, after, 1000)
		if err != nil {
			return nil, rpcErr(err)
		}
		for i := range accs {
			if s.a.authorize(s.q, policy.ActionSign, &policy.Resource{Owner: accs[i].Owner, Name: accs[i].Name, Grants: accs[i].Grants}) == nil ||
				s.a.authorize(s.q, policy.ActionAccountRead, &policy.Resource{Owner: accs[i].Owner, Name: accs[i].Name}) == nil {
				out = append(out, accs[i].Address)
			}
		}
		if next == "" {
			return out, nil
		}
		after = next
	}
}

func (s *rpcSigner) SignMessage(ctx context.Context, addr common.Address, data []byte) ([]byte, error) {
	acc, err := s.account(ctx, addr, policy.ActionSign)
	if err != nil {
		return nil, err
	}
	sig, hash, err := s.a.d.Wallet.SignMessage(ctx, acc, data)
	if err == nil {
		s.q.recordSigned("message", hash)
	}
	return sig, rpcErr(err)
}

func (s *rpcSigner) SignTransaction(ctx context.Context, raw json.RawMessage) ([]byte, error) {
	from, err := txFrom(raw)
	if err != nil {
		return nil, err
	}
	if from == nil {
		return nil, &evm.FieldError{Field: "from", Msg: "is required"}
	}
	tx, chainID, err := evm.ParseTransaction(raw)
	if err != nil {
		return nil, err
	}
	acc, err := s.account(ctx, *from, policy.ActionSign) // errors already safe for clients
	if err != nil {
		return nil, err
	}
	signed, err := s.a.d.Wallet.SignTransaction(ctx, acc, tx, chainID)
	if err != nil {
		return nil, rpcErr(err)
	}
	s.q.recordSigned("transaction", signed.Hash().Bytes())
	raw, err = signed.MarshalBinary()
	return raw, rpcErr(err)
}

func (s *rpcSigner) SignTypedData(ctx context.Context, addr common.Address, raw json.RawMessage) ([]byte, error) {
	td, err := evm.ParseTypedData(raw)
	if err != nil {
		return nil, err
	}
	acc, err := s.account(ctx, addr, policy.ActionSign)
	if err != nil {
		return nil, err
	}
	sig, hash, err := s.a.d.Wallet.SignTypedData(ctx, acc, td)
	if err == nil {
		s.q.recordSigned("typed_data", hash)
	}
	return sig, rpcErr(err)
}

// rpcErr hides internal error text behind the API's codes.
func rpcErr(err error) error {
	if err == nil {
		return nil
	}
	_, code, msg, _ := classify(err)
	return &jsonrpc.Error{Code: -32000, Message: code + ": " + msg}
}

var _ = identity.RoleAdmin
