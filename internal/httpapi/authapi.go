package httpapi

import (
	"github.com/moonvault/moonvault/internal/auth"
	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/policy"
	"github.com/moonvault/moonvault/internal/secret"
)

// loginBody is the body of POST /v1/auth/login.
type loginBody struct {
	Username string        `json:"username"`
	Password secret.String `json:"password"`
	TOTP     secret.String `json:"totp"`
}

// check refuses a body without credentials before any password work.
func (b *loginBody) check() error {
	if b.Username == "" {
		return errField("username", "is required")
	}
	if b.Password == "" {
		return errField("password", "is required")
	}
	return nil
}

func (a *API) login(q *request) (int, any, error) {
	tok, err := a.logIn(q)
	if err != nil {
		return 0, nil, err
	}
	return 200, tok, nil
}

// logIn checks a login body and logs the user in; the audit line names
// the user and the refresh token's hash. The API and the console answer
// with the tokens each in its own way.
func (a *API) logIn(q *request) (*auth.Tokens, error) {
	var req loginBody
	if err := decode(q, &req, false); err != nil {
		return nil, err
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	q.principal = &identity.Principal{Subject: req.Username}
	tok, err := a.d.Auth.Login(q.ctx(), auth.LoginInput{
		Username: req.Username, Password: req.Password, TOTP: req.TOTP,
		RemoteAddr: remoteIP(q.Request), UserAgent: q.UserAgent(),
	})
	if err != nil {
		return nil, err
	}
	q.hashSecret("refresh_token", tok.RefreshToken)
	return tok, nil
}

func (a *API) refresh(q *request) (int, any, error) {
	var req struct {
		RefreshToken secret.String `json:"refresh_token"`
	}
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	if req.RefreshToken == "" {
		return 0, nil, errField("refresh_token", "is required")
	}
	q.hashSecret("refresh_token", req.RefreshToken.Reveal())
	tok, err := a.d.Auth.Refresh(q.ctx(), req.RefreshToken, remoteIP(q.Request), q.UserAgent())
	if err != nil {
		return 0, nil, err
	}
	return 200, tok, nil
}

func (a *API) logout(q *request) (int, any, error) {
	if err := a.d.Auth.Logout(q.ctx(), q.principal); err != nil {
		return 0, nil, err
	}
	return 204, nil, nil
}

func (a *API) jwks(q *request) (int, any, error) {
	return 200, rawJSON(a.d.Auth.JWKS()), nil
}

func (a *API) rotateJWTKey(q *request) (int, any, error) {
	if err := a.d.Auth.RotateSigningKey(q.ctx()); err != nil {
		return 0, nil, err
	}
	return 204, nil, nil
}

// listSessions lists the caller's sessions; an admin may ask for another
// user's with ?username=.
func (a *API) listSessions(q *request) (int, any, error) {
	if q.principal.IsAPIKey() {
		return 0, nil, errForbidden("API keys have no sessions")
	}
	user := q.principal.Owner
	if u := q.URL.Query().Get("username"); u != "" {
		user = u
	}
	if err := a.d.Policy.Authorize(q.principal, policy.ActionSessionManage, &policy.Resource{Owner: user}, a.d.Now()); err != nil {
		return 0, nil, err
	}
	ss, err := a.d.Auth.Sessions(q.ctx(), user)
	if err != nil {
		return 0, nil, err
	}
	return 200, map[string]any{"sessions": ss}, nil
}

// revokeSession ends one session: the caller's own, or any for an admin.
func (a *API) revokeSession(q *request) (int, any, error) {
	sid := q.PathValue("id")
	s, err := a.d.Auth.GetSession(q.ctx(), sid)
	if err != nil {
		return 0, nil, err
	}
	if q.principal.IsAPIKey() {
		return 0, nil, errForbidden("API keys have no sessions")
	}
	if err := a.d.Policy.Authorize(q.principal, policy.ActionSessionManage, &policy.Resource{Owner: s.Username}, a.d.Now()); err != nil {
		// Another user's session: do not reveal that it exists.
		return 0, nil, errNotFound("not found")
	}
	if err := a.d.Auth.RevokeSession(q.ctx(), sid); err != nil {
		return 0, nil, err
	}
	return 204, nil, nil
}

func (a *API) requireUser(q *request) error {
	if q.principal.IsAPIKey() || q.principal.Subject == "root" {
		return errForbidden("this operation needs a user session")
	}
	return nil
}

func (a *API) totpEnroll(q *request) (int, any, error) {
	if err := a.requireUser(q); err != nil {
		return 0, nil, err
	}
	sec, url, err := a.d.Auth.EnrollTOTP(q.ctx(), q.principal.Subject)
	if err != nil {
		return 0, nil, err
	}
	return 200, map[string]string{"secret": sec.Reveal(), "otpauth_url": url}, nil
}

func (a *API) totpConfirm(q *request) (int, any, error) {
	if err := a.requireUser(q); err != nil {
		return 0, nil, err
	}
	var req struct {
		Code secret.String `json:"code"`
	}
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	codes, err := a.d.Auth.ConfirmTOTP(q.ctx(), q.principal.Subject, req.Code)
	if err != nil {
		return 0, nil, err
	}
	return 200, map[string]any{"recovery_codes": codes}, nil
}

func (a *API) totpDisable(q *request) (int, any, error) {
	if err := a.requireUser(q); err != nil {
		return 0, nil, err
	}
	if err := a.d.Policy.Authorize(q.principal, policy.ActionMFADisable, &policy.Resource{Owner: q.principal.Subject}, a.d.Now()); err != nil {
		return 0, nil, err
	}
	if err := a.d.Auth.DisableTOTP(q.ctx(), q.principal.Subject); err != nil {
		return 0, nil, err
	}
	return 204, nil, nil
}

func (a *API) createAPIKey(q *request) (int, any, error) {
	var req struct {
		Name     string   `json:"name"`
		Actions  []string `json:"actions"`
		Accounts []string `json:"accounts"`
	}
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	if err := a.d.Policy.Authorize(q.principal, policy.ActionAPIKeyCreate, &policy.Resource{Owner: q.principal.Owner}, a.d.Now()); err != nil {
		return 0, nil, err
	}
	id, key, err := a.d.Auth.CreateAPIKey(q.ctx(), q.principal.Owner, req.Name, req.Actions, req.Accounts)
	if err != nil {
		return 0, nil, err
	}
	q.hashSecret("api_key", key.Reveal())
	// The secret is shown once; only its hash is stored.
	return 201, map[string]string{"id": id, "key": key.Reveal()}, nil
}

func (a *API) listAPIKeys(q *request) (int, any, error) {
	if err := a.d.Policy.Authorize(q.principal, policy.ActionAPIKeyManage, &policy.Resource{Owner: q.principal.Owner}, a.d.Now()); err != nil {
		return 0, nil, err
	}
	ks, err := a.d.Auth.ListAPIKeys(q.ctx(), q.principal.Owner)
	if err != nil {
		return 0, nil, err
	}
	return 200, map[string]any{"api_keys": ks}, nil
}

func (a *API) revokeAPIKey(q *request) (int, any, error) {
	if err := a.d.Policy.Authorize(q.principal, policy.ActionAPIKeyManage, &policy.Resource{Owner: q.principal.Owner}, a.d.Now()); err != nil {
		return 0, nil, err
	}
	if err := a.d.Auth.RevokeAPIKey(q.ctx(), q.principal.Owner, q.PathValue("id")); err != nil {
		return 0, nil, err
	}
	return 204, nil, nil
}

func (a *API) listUsers(q *request) (int, any, error) {
	us, err := a.d.Auth.ListUsers(q.ctx())
	if err != nil {
		return 0, nil, err
	}
	return 200, map[string]any{"users": us}, nil
}

func (a *API) getUser(q *request) (int, any, error) {
	u, err := a.d.Auth.GetUser(q.ctx(), q.PathValue("name"))
	if err != nil {
		return 0, nil, err
	}
	return 200, u, nil
}

func (a *API) revokeUserSessions(q *request) (int, any, error) {
	n, err := a.d.Auth.RevokeUserSessions(q.ctx(), q.PathValue("name"))
	if err != nil {
		return 0, nil, err
	}
	return 200, map[string]int{"revoked": n}, nil
}
