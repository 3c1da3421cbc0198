package httpapi

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/policy"
	"github.com/moonvault/moonvault/internal/provenance"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/wallet"
)

// ProvenanceKey publishes the key that signs provenance records
// (provenance.Signer).
type ProvenanceKey interface {
	PublicKey(ctx context.Context) (ed25519.PublicKey, string, error)
}

// errBadProvenance: a stored record that is not JSON (tampered storage).
var errBadProvenance = errkind.New(errkind.Integrity, "integrity_error", "stored provenance record is malformed")

// errNoProvenanceKey: the node was built without a provenance signer.
var errNoProvenanceKey = errkind.New(errkind.Unsupported, "not_supported", "this node keeps no provenance records")

type walletView struct {
	Name        string    `json:"name"`
	Owner       string    `json:"owner"`
	Fingerprint string    `json:"fingerprint"`
	Origin      string    `json:"origin"` // generated | imported
	CreatedAt   time.Time `json:"created_at"`
	// Accounts counts the accounts derived from the wallet (not in lists).
	Accounts *int `json:"accounts,omitempty"`
}

func viewWallet(w *wallet.Wallet) walletView {
	v := walletView{Name: w.Name, Owner: w.Owner, Fingerprint: w.Fingerprint, Origin: w.Origin, CreatedAt: w.CreatedAt.UTC()}
	if w.Accounts >= 0 {
		n := w.Accounts
		v.Accounts = &n
	}
	return v
}

// createWallet makes an HD wallet from a new mnemonic, or imports one
// (step-up, as a private key import). Neither the mnemonic nor the seed is
// ever part of an answer.
func (a *API) createWallet(q *request) (int, any, error) {
	var req struct {
		Name       string        `json:"name"`
		Mnemonic   secret.String `json:"mnemonic"`
		Passphrase secret.String `json:"passphrase"`
	}
	if err := decode(q, &req, true); err != nil {
		return 0, nil, err
	}
	act := policy.ActionWalletCreate
	if req.Mnemonic != "" {
		act = policy.ActionWalletImport
	}
	if err := a.authorize(q, act, &policy.Resource{Owner: q.principal.Owner, Name: req.Name}); err != nil {
		return 0, nil, err
	}
	w, err := a.d.Wallet.CreateWallet(q.ctx(), q.principal.Owner, req.Name, req.Mnemonic, req.Passphrase)
	if err != nil {
		return 0, nil, err
	}
	return 201, viewWallet(w), nil
}

func (a *API) listWallets(q *request) (int, any, error) {
	limit, err := listLimit(q)
	if err != nil {
		return 0, nil, err
	}
	if err := a.authorize(q, policy.ActionWalletRead, nil); err != nil {
		return 0, nil, err
	}
	ws, next, err := a.d.Wallet.ListWallets(q.ctx(), q.principal.Owner, q.URL.Query().Get("after"), limit)
	if err != nil {
		return 0, nil, err
	}
	out := make([]walletView, 0, len(ws))
	for i := range ws {
		out = append(out, viewWallet(&ws[i]))
	}
	return 200, map[string]any{"wallets": out, "next": next}, nil
}

func (a *API) getWallet(q *request) (int, any, error) {
	name := q.PathValue("name")
	if err := a.authorize(q, policy.ActionWalletRead, &policy.Resource{Owner: q.principal.Owner, Name: name}); err != nil {
		return 0, nil, err
	}
	w, err := a.d.Wallet.GetWallet(q.ctx(), q.principal.Owner, name)
	if err != nil {
		return 0, nil, err
	}
	return 200, viewWallet(w), nil
}

func (a *API) deleteWallet(q *request) (int, any, error) {
	name := q.PathValue("name")
	if err := a.authorize(q, policy.ActionWalletDelete, &policy.Resource{Owner: q.principal.Owner, Name: name}); err != nil {
		return 0, nil, err
	}
	if err := a.d.Wallet.DeleteWallet(q.ctx(), q.principal.Owner, name); err != nil {
		return 0, nil, err
	}
	return 204, nil, nil
}

// provenanceView is a signed provenance record: the record as signed
// (payload, base64) with its signature, and the same record as JSON for
// reading. Verify the signature over the payload, never over `record`.
type provenanceView struct {
	Record    json.RawMessage `json:"record"`
	Payload   []byte          `json:"payload"`
	Signature []byte          `json:"signature"`
	KeyID     string          `json:"key_id"`
	Algorithm string          `json:"algorithm"`
}

func (a *API) accountProvenance(q *request) (int, any, error) {
	acc, err := a.resolveAccount(q, pathRef(q), policy.ActionAccountRead)
	if err != nil {
		return 0, nil, err
	}
	s, err := a.d.Wallet.Provenance(q.ctx(), acc.Owner, acc.Name)
	if err != nil {
		return 0, nil, err
	}
	rec := json.RawMessage(s.Payload)
	if !json.Valid(rec) {
		return 0, nil, errBadProvenance
	}
	return 200, provenanceView{Record: rec, Payload: s.Payload, Signature: s.Signature, KeyID: s.KeyID, Algorithm: provenance.Algorithm}, nil
}

func (a *API) provenancePublicKey(q *request) (int, any, error) {
	if a.d.Provenance == nil {
		return 0, nil, errNoProvenanceKey
	}
	pub, id, err := a.d.Provenance.PublicKey(q.ctx())
	if err != nil {
		return 0, nil, err
	}
	return 200, map[string]string{"key_id": id, "public_key": hex.EncodeToString(pub), "algorithm": provenance.Algorithm}, nil
}
