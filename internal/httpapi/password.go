package httpapi

import (
	"github.com/moonvault/moonvault/internal/auth"
	"github.com/moonvault/moonvault/internal/secret"
)

// changePassword is POST /v1/auth/password: a user changes their own
// password with the current one (and a TOTP code when enrolled); every
// other session of the user ends.
func (a *API) changePassword(q *request) (int, any, error) {
	if err := a.requireUser(q); err != nil {
		return 0, nil, err
	}
	var req struct {
		Current secret.String `json:"current_password"`
		New     secret.String `json:"new_password"`
		TOTP    secret.String `json:"totp"`
	}
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	if req.Current == "" {
		return 0, nil, errField("current_password", "is required")
	}
	if req.New == "" {
		return 0, nil, errField("new_password", "is required")
	}
	err := a.d.Auth.ChangePassword(q.ctx(), auth.PasswordChange{
		Username: q.principal.Subject, Current: req.Current, TOTP: req.TOTP, New: req.New,
		KeepSID: q.principal.SessionID, RemoteAddr: remoteIP(q.Request),
	})
	if err != nil {
		return 0, nil, err
	}
	return 204, nil, nil
}
