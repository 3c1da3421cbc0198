package httpapi

import (
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strconv"

	"github.com/moonvault/moonvault/internal/core"
	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/tee"
)

// health follows Vault: 200 unsealed, 503 sealed, 501 not initialised; the
// codes can be overridden with ?sealedcode= / ?uninitcode= for probes.
func (a *API) health(q *request) (int, any, error) {
	st, err := a.d.Core.Status(q.ctx())
	if err != nil {
		return 0, nil, err
	}
	code := http.StatusOK
	switch {
	case !st.Initialized:
		code = queryCode(q, "uninitcode", http.StatusNotImplemented)
	case st.Sealed:
		code = queryCode(q, "sealedcode", http.StatusServiceUnavailable)
	}
	return code, map[string]any{"initialized": st.Initialized, "sealed": st.Sealed, "type": st.Type}, nil
}

func queryCode(q *request, name string, def int) int {
	if v := q.URL.Query().Get(name); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 200 && n < 600 {
			return n
		}
	}
	return def
}

func (a *API) sealStatus(q *request) (int, any, error) {
	st, err := a.d.Core.Status(q.ctx())
	if err != nil {
		return 0, nil, err
	}
	return 200, st, nil
}

func b64s(keys []secret.Bytes) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = base64.StdEncoding.EncodeToString(k)
	}
	return out
}

func (a *API) initVault(q *request) (int, any, error) {
	var req core.InitRequest
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	res, err := a.d.Core.Init(q.ctx(), req)
	if err != nil {
		return 0, nil, err
	}
	out := map[string]any{"root_token": res.RootToken}
	if res.Keys != nil {
		out["unseal_keys_b64"] = b64s(res.Keys)
		out["unseal_keys_hex"] = hexs(res.Keys)
	}
	if res.RecoveryKeys != nil {
		out["recovery_keys_b64"] = b64s(res.RecoveryKeys)
	}
	for _, k := range append(res.Keys, res.RecoveryKeys...) {
		k.Destroy()
	}
	return 200, out, nil
}

func hexs(keys []secret.Bytes) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = hex.EncodeToString(k)
	}
	return out
}

// parseShareText accepts a share in base64 or hex, as Vault does. Hex is
// tried first for the lengths of a share or a 1-of-1 key (64 or 66
// characters): every hex string is also valid base64, which would decode
// to 48 bytes and be refused.
func parseShareText(s string) ([]byte, error) {
	if s == "" {
		return nil, &errkind.Field{Name: "key", Msg: "is required", Code: "invalid_share"}
	}
	if len(s) == 2*32 || len(s) == 2*33 {
		if b, err := hex.DecodeString(s); err == nil {
			if err := core.ParseShare(b); err != nil {
				return nil, err
			}
			return b, nil
		}
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		if err := core.ParseShare(b); err != nil {
			return nil, err
		}
		return b, nil
	}
	if b, err := hex.DecodeString(s); err == nil {
		if err := core.ParseShare(b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return nil, &errkind.Field{Name: "key", Msg: "is neither base64 nor hex", Code: "invalid_share"}
}

func (a *API) unseal(q *request) (int, any, error) {
	var req struct {
		Key     string `json:"key"`
		Reset   bool   `json:"reset"`
		Migrate bool   `json:"migrate"`
	}
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	if req.Reset {
		a.d.Core.ResetUnseal()
		st, err := a.d.Core.Status(q.ctx())
		return 200, st, err
	}
	share, err := parseShareText(req.Key)
	if err != nil {
		return 0, nil, err
	}
	defer secret.Wipe(share)
	if req.Migrate {
		st, recovery, err := a.d.Core.UnsealMigrate(q.ctx(), share)
		if err != nil {
			return 0, nil, err
		}
		if recovery == nil {
			return 200, st, nil
		}
		// The migration is done: the new recovery shares are shown once.
		return 200, struct {
			core.Status
			RecoveryKeys []string `json:"recovery_keys_b64"`
		}{st, b64s(recovery)}, nil
	}
	st, err := a.d.Core.Unseal(q.ctx(), share)
	if err != nil {
		return 0, nil, err
	}
	return 200, st, nil
}

func (a *API) seal(q *request) (int, any, error) {
	a.d.Core.Seal()
	return 204, nil, nil
}

func (a *API) rotate(q *request) (int, any, error) {
	term, err := a.d.Core.Rotate(q.ctx())
	if err != nil {
		return 0, nil, err
	}
	return 200, map[string]any{"term": term}, nil
}

func rekeyBody(st core.RekeyStatus) map[string]any {
	out := map[string]any{"started": st.Started, "nonce": st.Nonce, "n": st.N, "t": st.T, "progress": st.Progress, "required": st.Required, "complete": st.Complete}
	if st.Complete {
		out["keys_b64"] = b64s(st.Keys)
		for _, k := range st.Keys {
			k.Destroy()
		}
	}
	return out
}

func (a *API) rekeyStatus(q *request) (int, any, error) {
	st, err := a.d.Core.RekeyStatusNow(q.ctx())
	if err != nil {
		return 0, nil, err
	}
	return 200, rekeyBody(st), nil
}

func (a *API) rekeyInit(q *request) (int, any, error) {
	var req struct {
		SecretShares    int `json:"secret_shares"`
		SecretThreshold int `json:"secret_threshold"`
	}
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	st, err := a.d.Core.RekeyInit(q.ctx(), req.SecretShares, req.SecretThreshold)
	if err != nil {
		return 0, nil, err
	}
	return 200, rekeyBody(st), nil
}

func (a *API) rekeyCancel(q *request) (int, any, error) {
	a.d.Core.RekeyCancel()
	return 204, nil, nil
}

func (a *API) rekeyUpdate(q *request) (int, any, error) {
	var req struct {
		Key   string `json:"key"`
		Nonce string `json:"nonce"`
	}
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	share, err := parseShareText(req.Key)
	if err != nil {
		return 0, nil, err
	}
	defer secret.Wipe(share)
	st, err := a.d.Core.RekeyUpdate(q.ctx(), req.Nonce, share)
	if err != nil {
		return 0, nil, err
	}
	return 200, rekeyBody(st), nil
}

// generateRoot issues a new bootstrap root token on presentation of a
// threshold of unseal (Shamir) or recovery (pkcs11) shares.
func (a *API) generateRoot(q *request) (int, any, error) {
	var req struct {
		Keys []string `json:"keys"`
	}
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	var shares [][]byte
	defer func() {
		for _, s := range shares {
			secret.Wipe(s)
		}
	}()
	for _, k := range req.Keys {
		s, err := parseShareText(k)
		if err != nil {
			return 0, nil, err
		}
		shares = append(shares, s)
	}
	if err := a.d.Core.VerifyShares(q.ctx(), shares); err != nil {
		return 0, nil, err
	}
	tok, err := a.d.Auth.IssueRootToken(q.ctx())
	if err != nil {
		return 0, nil, err
	}
	return 200, map[string]any{"root_token": tok.AccessToken, "expires_in": tok.ExpiresIn}, nil
}

func (a *API) rewrap(q *request) (int, any, error) {
	if a.d.Rewrap == nil {
		return 0, nil, errInvalid("unsupported", "seal wrap is not configured")
	}
	n, err := a.d.Rewrap(q.ctx())
	if err != nil {
		return 0, nil, err
	}
	return 200, map[string]any{"rewrapped": n}, nil
}

func (a *API) entropyStatus(q *request) (int, any, error) {
	return 200, a.d.Entropy(), nil
}

func (a *API) hardening(q *request) (int, any, error) {
	return 200, a.d.Harden(), nil
}

func (a *API) attestation(q *request) (int, any, error) {
	nonce, err := hex.DecodeString(q.URL.Query().Get("nonce"))
	if err != nil || len(nonce) == 0 {
		return 0, nil, errField("nonce", "must be hex (8 to 64 bytes)")
	}
	pub, err := a.d.TLSPublicKey()
	if err != nil {
		return 0, nil, err
	}
	att, err := tee.Attest(a.d.Attester, nonce, pub)
	if err != nil {
		return 0, nil, err
	}
	return 200, att, nil
}

func (a *API) auditHash(q *request) (int, any, error) {
	if a.d.Audit == nil {
		return 0, nil, errNotFound("no audit sink is configured")
	}
	var req struct {
		Input secret.String `json:"input"`
	}
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	if req.Input == "" {
		return 0, nil, errField("input", "is required")
	}
	return 200, map[string]string{"hash": a.d.Audit.HMAC(req.Input.Reveal())}, nil
}

func (a *API) auditPublicKey(q *request) (int, any, error) {
	if a.d.Audit == nil {
		return 0, nil, errNotFound("no audit sink is configured")
	}
	id, pub := a.d.Audit.PublicKey()
	if pub == nil {
		return 0, nil, errNotFound("no audit signing key")
	}
	head := a.d.Audit.Head()
	return 200, map[string]any{"key_id": id, "public_key": hex.EncodeToString(pub), "head_seq": head.Seq, "head_hash": head.Hash}, nil
}
