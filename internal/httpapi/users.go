package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/moonvault/moonvault/internal/approval"
	"github.com/moonvault/moonvault/internal/auth"
	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/policy"
	"github.com/moonvault/moonvault/internal/secret"
)

// Users (admins). With policy_change_approvals = N (the quorum) one admin
// must not be able to defeat it by making users (review H1): every user
// write needs step-up (policy.Rules.Quorum), and a change of who may
// approve waits for N admins other than the requester and the user
// concerned, as a user_change approval:
//
//   - creating an admin, or a user a policy names as an approver;
//   - deleting, disabling or enabling an admin;
//   - resetting the password of an admin or of a named approver.
//
// The root token stands for a quorum of unseal or recovery shares (init,
// generate-root): its changes apply at once, which is how the first
// admins are made. There is no route that changes a user's role or
// resets another user's second factor; either would fall under the same
// rule.

// byQuorum reports whether q's user changes that alter who may approve
// must wait for the quorum.
func (a *API) byQuorum(q *request) bool {
	return a.d.Policies.ChangeApprovals > 0 && !isRootToken(q.principal)
}

func isRootToken(p *identity.Principal) bool {
	return p.Subject == auth.RootSubject && slices.Contains(p.AMR, "root") && !p.IsAPIKey()
}

// authorizeUserWrite is the admin check of a user write: step-up under the
// quorum.
func (a *API) authorizeUserWrite(q *request) error {
	return a.d.Policy.Authorize(q.principal, policy.ActionUserManage, nil, a.d.Now())
}

// namedApprover reports whether a policy names user as an approver.
func (a *API) namedApprover(ctx context.Context, user string) (bool, error) {
	e := a.d.Policies.Engine
	if e == nil {
		return false, nil
	}
	ps, err := e.List(ctx)
	if err != nil {
		return false, err
	}
	for _, p := range ps {
		if p.Approvals != nil && slices.Contains(p.Approvals.Approvers, user) {
			return true, nil
		}
	}
	return false, nil
}

// whyGuarded says why a change concerning an existing user must wait for
// the quorum, or "" when it need not: the user is an admin, or (approvers
// true) a policy names them as an approver.
func (a *API) whyGuarded(ctx context.Context, u *auth.User, approvers bool) (string, error) {
	if u.Role == identity.RoleAdmin {
		return "the user is an admin", nil
	}
	if !approvers {
		return "", nil
	}
	named, err := a.namedApprover(ctx, u.Username)
	if err != nil || !named {
		return "", err
	}
	return "a policy names the user as an approver", nil
}

// requestUserChange records a user change for the quorum and answers 202.
func (a *API) requestUserChange(q *request, ch approval.UserChange, hash auth.PasswordHash) (int, any, error) {
	m, err := a.approvalManager()
	if err != nil {
		return 0, nil, err
	}
	ap, err := m.CreateUserChange(q.ctx(), q.principal, ch, []byte(hash), a.d.Policies.ChangeApprovals)
	if err != nil {
		return 0, nil, err
	}
	q.noteApproval(ap)
	return http.StatusAccepted, map[string]any{"approval": ap}, nil
}

func (a *API) createUser(q *request) (int, any, error) {
	var req struct {
		Username string        `json:"username"`
		Password secret.String `json:"password"`
		Role     string        `json:"role"`
	}
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	if err := a.authorizeUserWrite(q); err != nil {
		return 0, nil, err
	}
	if req.Role == "" {
		req.Role = identity.RoleUser
	}
	if a.byQuorum(q) {
		why := ""
		if req.Role == identity.RoleAdmin {
			why = "the user would be an admin"
		} else if named, err := a.namedApprover(q.ctx(), req.Username); err != nil {
			return 0, nil, err
		} else if named {
			why = "a policy names the user as an approver"
		}
		if why != "" {
			hash, err := a.d.Auth.PrepareUser(q.ctx(), req.Username, req.Password, req.Role)
			if err != nil {
				return 0, nil, err
			}
			return a.requestUserChange(q, approval.UserChange{Op: approval.UserCreate, Username: req.Username, Role: req.Role, Why: why}, hash)
		}
	}
	u, err := a.d.Auth.CreateUser(q.ctx(), req.Username, req.Password, req.Role)
	if err != nil {
		return 0, nil, err
	}
	return 201, u, nil
}

// changeUser runs a delete, disable or enable of the user in the path: at
// once, or, under the quorum for an admin, as an approval.
func (a *API) changeUser(q *request, op approval.UserOp) (int, any, error) {
	if err := a.authorizeUserWrite(q); err != nil {
		return 0, nil, err
	}
	name := q.PathValue("name")
	if a.byQuorum(q) {
		u, err := a.d.Auth.GetUser(q.ctx(), name)
		if err != nil {
			return 0, nil, err
		}
		why, err := a.whyGuarded(q.ctx(), u, false)
		if err != nil {
			return 0, nil, err
		}
		if why != "" {
			return a.requestUserChange(q, approval.UserChange{Op: op, Username: name, Why: why}, "")
		}
	}
	if err := a.applyUserOp(q.ctx(), op, name); err != nil {
		return 0, nil, err
	}
	return 204, nil, nil
}

func (a *API) applyUserOp(ctx context.Context, op approval.UserOp, name string) error {
	switch op {
	case approval.UserDelete:
		return a.d.Auth.DeleteUser(ctx, name)
	case approval.UserDisable:
		return a.d.Auth.SetDisabled(ctx, name, true)
	case approval.UserEnable:
		return a.d.Auth.SetDisabled(ctx, name, false)
	}
	return errInvalid("invalid_request", "unknown user change "+string(op))
}

func (a *API) deleteUser(q *request) (int, any, error)  { return a.changeUser(q, approval.UserDelete) }
func (a *API) disableUser(q *request) (int, any, error) { return a.changeUser(q, approval.UserDisable) }
func (a *API) enableUser(q *request) (int, any, error)  { return a.changeUser(q, approval.UserEnable) }

// resetPassword is POST /v1/users/{name}/password: an administrator, with
// step-up, sets a user's password; every session of that user ends. Under
// the quorum the reset of an admin's or a named approver's password waits
// for it (a reset would let the admin log in as them, enrol a second
// factor and approve).
func (a *API) resetPassword(q *request) (int, any, error) {
	var req struct {
		Password secret.String `json:"password"`
	}
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	if req.Password == "" {
		return 0, nil, errField("password", "is required")
	}
	name := q.PathValue("name")
	if err := a.d.Policy.Authorize(q.principal, policy.ActionPasswordReset, &policy.Resource{Owner: name}, a.d.Now()); err != nil {
		return 0, nil, err
	}
	if a.byQuorum(q) {
		u, err := a.d.Auth.GetUser(q.ctx(), name)
		if err != nil {
			return 0, nil, err
		}
		why, err := a.whyGuarded(q.ctx(), u, true)
		if err != nil {
			return 0, nil, err
		}
		if why != "" {
			hash, err := a.d.Auth.PreparePassword(q.ctx(), name, req.Password)
			if err != nil {
				return 0, nil, err
			}
			return a.requestUserChange(q, approval.UserChange{Op: approval.UserPasswordReset, Username: name, Why: why}, hash)
		}
	}
	if err := a.d.Auth.SetPassword(q.ctx(), name, req.Password); err != nil {
		return 0, nil, err
	}
	return 204, nil, nil
}

// applyUserChange carries out a user change the quorum approved; the
// approval keeps the user as it is afterwards.
func (a *API) applyUserChange(ctx context.Context, ch *approval.UserChange, secretHash []byte) (json.RawMessage, error) {
	var err error
	switch ch.Op {
	case approval.UserCreate:
		_, err = a.d.Auth.CreateUserHashed(ctx, ch.Username, auth.PasswordHash(secretHash), ch.Role)
	case approval.UserPasswordReset:
		err = a.d.Auth.SetPasswordHash(ctx, ch.Username, auth.PasswordHash(secretHash))
	default:
		err = a.applyUserOp(ctx, ch.Op, ch.Username)
	}
	if err != nil {
		return nil, err
	}
	u, err := a.d.Auth.GetUser(ctx, ch.Username)
	if errors.Is(err, auth.ErrNotFound) && ch.Op == approval.UserDelete {
		return json.Marshal(map[string]any{"username": ch.Username, "deleted": true})
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(u)
}
