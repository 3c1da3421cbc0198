package httpapi

import (
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/moonvault/moonvault/internal/auth"
	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/policy"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/wallet"
	"github.com/moonvault/moonvault/internal/wallet/chain"
)

type accountView struct {
	Name        string    `json:"name"`
	Owner       string    `json:"owner"`
	Chain       string    `json:"chain"`
	Network     string    `json:"network,omitempty"`
	AddressType string    `json:"address_type,omitempty"`
	KeyType     string    `json:"key_type"`
	Address     string    `json:"address"`
	PublicKey   string    `json:"public_key"`
	CreatedAt   time.Time `json:"created_at"`
	Grants      []string  `json:"grants,omitempty"`
	// HD origin, for accounts derived from a wallet.
	Wallet            string `json:"wallet,omitempty"`
	MasterFingerprint string `json:"master_fingerprint,omitempty"`
	DerivationPath    string `json:"derivation_path,omitempty"`
	XPub              string `json:"xpub,omitempty"`
}

// view is an account as p may see it. What is the owner's alone stays the
// owner's (review L4): the account-level xpub derives every address of
// the owner's HD account, siblings included; the wallet's name and the
// other grantees are the owner's business. A grantee sees the account,
// its own derivation path and the master fingerprint (which derives
// nothing, and the signed provenance record carries it).
func view(acc *wallet.Account, p *identity.Principal) accountView {
	owner := p != nil && p.Owner != "" && p.Owner == acc.Owner
	v := accountView{
		Name: acc.Name, Owner: acc.Owner, Chain: acc.Chain, Network: acc.Network, AddressType: acc.AddressType,
		KeyType: string(acc.KeyType), Address: acc.Address, PublicKey: hexutil.Encode(acc.PublicKey),
		CreatedAt: acc.CreatedAt.UTC(),
	}
	if owner {
		v.Grants = acc.Grants
	}
	if o := acc.Origin; o != nil {
		v.MasterFingerprint, v.DerivationPath = o.Fingerprint, o.Path
		if owner {
			v.Wallet, v.XPub = o.Wallet, o.XPub
		}
	}
	return v
}

func (a *API) authorize(q *request, act policy.Action, res *policy.Resource) error {
	rules := a.d.Policy
	if act == policy.ActionSign && (q.replay != nil || q.dry != nil) {
		// sign_requires_mfa: an approved request passed step-up when it was
		// made (and its approvers each did); a dry run signs nothing.
		rules.SignRequiresMFA = false
	}
	return rules.Authorize(q.principal, act, res, a.d.Now())
}

// accountRef says which account a request names: a path reference (the
// caller's own "name", or "owner:name" for one granted to the caller), or
// an address (JSON-RPC).
type accountRef struct {
	path    string
	address *common.Address
}

func pathRef(q *request) accountRef { return accountRef{path: q.PathValue("name")} }

// resolveAccount finds the account ref names and checks that the caller may
// perform act on it: the one resolution and authorization of REST and
// JSON-RPC alike. An account the caller may not see answers 404, so that
// names and addresses do not leak. The account is named in the audit line
// (every account of a JSON-RPC batch).
func (a *API) resolveAccount(q *request, ref accountRef, act policy.Action) (*wallet.Account, error) {
	var acc *wallet.Account
	var err error
	if ref.address != nil {
		acc, err = a.d.Wallet.ByAddress(q.ctx(), *ref.address)
	} else {
		id := wallet.AccountID{Owner: q.principal.Owner, Name: ref.path}
		if o, n, ok := strings.Cut(ref.path, ":"); ok {
			id = wallet.AccountID{Owner: o, Name: n}
		}
		acc, err = a.d.Wallet.Get(q.ctx(), id.Owner, id.Name)
	}
	if err != nil {
		return nil, err
	}
	// An admin's dry run may evaluate any account; it signs nothing.
	if q.dry == nil || !q.dry.admin {
		if err := a.authorize(q, act, &policy.Resource{Owner: acc.Owner, Name: acc.Name, Grants: acc.Grants}); err != nil {
			if errors.Is(err, policy.ErrDenied) && acc.Owner != q.principal.Owner {
				return nil, wallet.ErrNotFound
			}
			return nil, err
		}
	}
	q.account = appendList(q.account, acc.ID().String())
	q.address = appendList(q.address, acc.Address)
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

// createAccount makes an account on a chain: generated, imported
// (private_key, step-up) or derived from one of the caller's HD wallets
// (wallet, index).
func (a *API) createAccount(q *request) (int, any, error) {
	var req struct {
		Name        string        `json:"name"`
		PrivateKey  secret.String `json:"private_key"`
		Chain       string        `json:"chain"`
		Network     string        `json:"network"`
		AddressType string        `json:"address_type"`
		Wallet      string        `json:"wallet"`
		Index       *uint32       `json:"index"`
	}
	if err := decode(q, &req, true); err != nil {
		return 0, nil, err
	}
	spec := wallet.AccountSpec{
		Owner: q.principal.Owner, Name: req.Name, Chain: req.Chain, Wallet: req.Wallet, Index: req.Index,
		Options: chain.Options{Network: req.Network, AddressType: req.AddressType},
	}
	act := policy.ActionAccountCreate
	if req.PrivateKey != "" {
		act = policy.ActionAccountImport
		k, err := hex.DecodeString(strings.TrimPrefix(req.PrivateKey.Reveal(), "0x"))
		if err != nil || (len(k) != 32 && len(k) != 64) {
			secret.Wipe(k)
			return 0, nil, wallet.ErrInvalidKey
		}
		spec.Import = secret.Bytes(k)
		defer spec.Import.Destroy()
	}
	if err := a.authorize(q, act, &policy.Resource{Owner: q.principal.Owner, Name: req.Name}); err != nil {
		return 0, nil, err
	}
	if req.Wallet != "" {
		if err := a.authorize(q, policy.ActionWalletDerive, &policy.Resource{Owner: q.principal.Owner, Name: req.Wallet}); err != nil {
			return 0, nil, err
		}
	}
	acc, err := a.d.Wallet.CreateAccount(q.ctx(), spec)
	if err != nil {
		return 0, nil, err
	}
	q.account, q.address = acc.ID().String(), acc.Address
	return 201, view(acc, q.principal), nil
}

func (a *API) listAccounts(q *request) (int, any, error) {
	limit, err := listLimit(q)
	if err != nil {
		return 0, nil, err
	}
	// Listing passes no resource (policy.Resource): an API key scoped to
	// some accounts may list, and sees only those (filtered below).
	if err := a.authorize(q, policy.ActionAccountRead, nil); err != nil {
		return 0, nil, err
	}
	accs, next, err := a.d.Wallet.ListChain(q.ctx(), q.principal.Owner, q.URL.Query().Get("chain"), q.URL.Query().Get("after"), limit)
	if err != nil {
		return 0, nil, err
	}
	out := make([]accountView, 0, len(accs))
	for i := range accs {
		if a.authorize(q, policy.ActionAccountRead, &policy.Resource{Owner: accs[i].Owner, Name: accs[i].Name, Grants: accs[i].Grants}) == nil {
			out = append(out, view(&accs[i], q.principal))
		}
	}
	return 200, map[string]any{"accounts": out, "next": next}, nil
}

// listLimit reads ?limit= (1 to 1000, default 100).
func listLimit(q *request) (int, error) {
	v := q.URL.Query().Get("limit")
	if v == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return 0, errField("limit", "must be an integer from 1 to 1000")
	}
	return n, nil
}

func (a *API) getAccount(q *request) (int, any, error) {
	acc, err := a.resolveAccount(q, pathRef(q), policy.ActionAccountRead)
	if err != nil {
		return 0, nil, err
	}
	return 200, view(acc, q.principal), nil
}

func (a *API) deleteAccount(q *request) (int, any, error) {
	acc, err := a.resolveAccount(q, pathRef(q), policy.ActionAccountDelete)
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
		return 0, nil, errField("principal", "is required")
	}
	acc, err := a.resolveAccount(q, pathRef(q), policy.ActionAccountGrant)
	if err != nil {
		return 0, nil, err
	}
	// Only an existing user can be granted (names of deleted users are never
	// reused, so a grant cannot pass to a later namesake).
	if _, err := a.d.Auth.GetUser(q.ctx(), req.Principal); err != nil {
		if errors.Is(err, auth.ErrNotFound) {
			return 0, nil, errField("principal", "no such user")
		}
		return 0, nil, err
	}
	if err := a.d.Wallet.Grant(q.ctx(), acc.Owner, acc.Name, req.Principal); err != nil {
		return 0, nil, err
	}
	return 204, nil, nil
}

func (a *API) revokeGrant(q *request) (int, any, error) {
	acc, err := a.resolveAccount(q, pathRef(q), policy.ActionAccountUngrant)
	if err != nil {
		return 0, nil, err
	}
	if err := a.d.Wallet.Revoke(q.ctx(), acc.Owner, acc.Name, q.PathValue("principal")); err != nil {
		return 0, nil, err
	}
	return 204, nil, nil
}
