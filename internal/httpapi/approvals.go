package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/moonvault/moonvault/internal/approval"
	"github.com/moonvault/moonvault/internal/auth"
	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/identity"
)

// Approvals: a request that matched require_approval (or a policy change
// under policy_change_approvals) waits in package approval until its
// approvers approve it; at the threshold the vault runs the request again
// through the sign pipeline, as its requester, and keeps the answer.

// errRequesterGone: the principal who asked can no longer sign (user
// deleted or disabled, API key revoked), so the approved request is not
// signed.
var errRequesterGone = errkind.New(errkind.Conflict, "requester_unavailable",
	"the user or API key that made the request can no longer sign")

func (a *API) approvalManager() (*approval.Manager, error) {
	if a.d.Policies.Approvals == nil {
		return nil, errPoliciesOff
	}
	return a.d.Policies.Approvals, nil
}

var approvalStatuses = []approval.Status{approval.StatusPending, approval.StatusApproved, approval.StatusSigned,
	approval.StatusApplied, approval.StatusDenied, approval.StatusRejected, approval.StatusExpired}

// listApprovals lists what the caller requested (or its API keys did) or
// may vote on, newest first; ?status= filters, ?limit= bounds a page
// (100), ?after= continues from the previous page's next.
func (a *API) listApprovals(q *request) (int, any, error) {
	m, err := a.approvalManager()
	if err != nil {
		return 0, nil, err
	}
	qs := q.URL.Query()
	status := approval.Status(qs.Get("status"))
	if status != "" && !containsStatus(status) {
		return 0, nil, errField("status", fmt.Sprintf("must be one of %v", approvalStatuses))
	}
	limit := 100
	if v := qs.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return 0, nil, errField("limit", "must be an integer from 1 to 1000")
		}
		limit = n
	}
	p := q.principal
	list, next, err := m.List(q.ctx(), approval.Filter{User: p.Subject, Status: status, Limit: limit, After: qs.Get("after")})
	if err != nil {
		return 0, nil, err
	}
	out := make([]*approval.Approval, 0, len(list))
	for _, ap := range list {
		if ap.VisibleTo(p) {
			out = append(out, ap)
		}
	}
	return 200, map[string]any{"approvals": out, "next": next}, nil
}

func containsStatus(s approval.Status) bool {
	for _, x := range approvalStatuses {
		if x == s {
			return true
		}
	}
	return false
}

// approvalID reads {id}, naming it in the audit line when it has the form
// of one.
func approvalID(q *request) string {
	id := q.PathValue("id")
	if strings.HasPrefix(id, "apr_") && len(id) <= 64 {
		q.approvalID = id
	}
	return id
}

// visibleApproval returns an approval the caller may see; anything else is
// not found.
func (a *API) visibleApproval(q *request, m *approval.Manager, id string) (*approval.Approval, error) {
	ap, err := m.Get(q.ctx(), id)
	if err != nil {
		return nil, err
	}
	if !ap.VisibleTo(q.principal) {
		return nil, fmt.Errorf("%w: %s", approval.ErrNotFound, id)
	}
	return ap, nil
}

func (a *API) getApproval(q *request) (int, any, error) {
	m, err := a.approvalManager()
	if err != nil {
		return 0, nil, err
	}
	ap, err := a.visibleApproval(q, m, approvalID(q))
	if err != nil {
		return 0, nil, err
	}
	return 200, ap, nil
}

// approve records the caller's approval (a listed approver, never the
// requester, once, with a fresh MFA login: package approval checks). The
// vote that reaches every threshold runs the request: it is signed and the
// approval holds the sign endpoint's answer, or it is denied with the
// reason. If running it failed for a passing reason (storage, HSM), it
// stays approved and an approver's next approve runs it again.
func (a *API) approve(q *request) (int, any, error) {
	m, err := a.approvalManager()
	if err != nil {
		return 0, nil, err
	}
	id := approvalID(q)
	ap, ready, err := m.Approve(q.ctx(), id, q.principal)
	switch {
	case errors.Is(err, approval.ErrExpired):
		q.approvalStatus = appendList(q.approvalStatus, string(approval.StatusExpired))
		return 0, nil, err
	case errors.Is(err, approval.ErrNotPending):
		// Only an eligible approver with fresh MFA gets here: finish an
		// approved request whose signing did not complete.
		if cur, gerr := m.Get(q.ctx(), id); gerr == nil && cur.Status == approval.StatusApproved {
			ap, ready, err = cur, true, nil
		}
	}
	if err != nil {
		return 0, nil, err
	}
	q.noteApproval(ap)
	if !ready {
		return 200, ap, nil
	}
	done, err := a.complete(q, ap)
	if done != nil {
		q.noteApproval(done)
	}
	if err != nil {
		return 0, nil, err
	}
	return 200, done, nil
}

func (a *API) reject(q *request) (int, any, error) {
	m, err := a.approvalManager()
	if err != nil {
		return 0, nil, err
	}
	ap, err := m.Reject(q.ctx(), approvalID(q), q.principal)
	if errors.Is(err, approval.ErrExpired) {
		q.approvalStatus = appendList(q.approvalStatus, string(approval.StatusExpired))
	}
	if err != nil {
		return 0, nil, err
	}
	q.noteApproval(ap)
	return 200, ap, nil
}

// complete carries out an approval that reached its threshold.
func (a *API) complete(q *request, ap *approval.Approval) (*approval.Approval, error) {
	m := a.d.Policies.Approvals
	switch ap.Kind {
	case approval.KindPolicyChange:
		e, err := a.engine()
		if err != nil {
			return nil, err
		}
		if ap.Change != nil {
			q.policies = appendList(q.policies, ap.Change.Policy)
		}
		return m.ApplyPolicyChange(q.ctx(), ap.ID, e)
	case approval.KindUserChange:
		return m.ApplyUserChange(q.ctx(), ap.ID, a.applyUserChange)
	}
	return a.signApproved(q, ap)
}

// signApproved runs an approved request again: its operation and original
// body, as its requester, through the same pipeline (the account is
// resolved and authorized for the requester again, deny policies and
// limits are checked again with the approved policies satisfied), and
// records the answer the sign endpoint would have given. A refusal for
// good (a deny policy, a limit, the account or the requester gone) marks
// it denied with the reason.
func (a *API) signApproved(q *request, ap *approval.Approval) (*approval.Approval, error) {
	m := a.d.Policies.Approvals
	ctx := q.ctx()
	requester, err := a.requesterPrincipal(ctx, ap)
	if err != nil {
		return a.refused(ctx, m, ap, err)
	}
	rq := &request{Request: q.Request, api: a, w: q.w, principal: requester, replay: ap}
	out, err := a.runSign(rq, ap.Operation, accountRef{path: strings.Replace(ap.Account, "/", ":", 1)}, ap.Request)
	q.account, q.address = mergeList(q.account, rq.account), mergeList(q.address, rq.address)
	q.decisions, q.policies = mergeList(q.decisions, rq.decisions), mergeList(q.policies, rq.policies)
	if err != nil {
		return a.refused(ctx, m, ap, err)
	}
	raw, err := json.Marshal(out)
	if err != nil {
		rq.releaseAll()
		return nil, err
	}
	done, err := m.MarkSigned(ctx, ap.ID, raw)
	if err != nil {
		// Another node finished it first (or storage failed): this
		// signature is not the one recorded, so its spend is given back.
		rq.releaseAll()
		return nil, err
	}
	return done, nil
}

// refused marks an approval denied when err refuses the request for good
// (a 4xx answer); a passing failure leaves it approved and is returned.
func (a *API) refused(ctx context.Context, m *approval.Manager, ap *approval.Approval, err error) (*approval.Approval, error) {
	f := classify(err)
	if f.status >= 500 {
		return nil, err
	}
	return m.MarkDenied(ctx, ap.ID, f.code+": "+f.message)
}

// requesterPrincipal rebuilds who asked, as they are now: a user that
// still exists and is enabled, or an API key not revoked (with its scopes
// today). The authentication methods are those of the original request.
func (a *API) requesterPrincipal(ctx context.Context, ap *approval.Approval) (*identity.Principal, error) {
	var amr []string
	if ap.Intent != nil {
		amr = ap.Intent.AMR
	}
	user := ap.Requester
	if ap.RequesterOwner != "" {
		user = ap.RequesterOwner
	}
	u, err := a.d.Auth.GetUser(ctx, user)
	switch {
	case errors.Is(err, auth.ErrNotFound):
		return nil, errRequesterGone
	case err != nil:
		return nil, err
	case u.Disabled:
		return nil, errRequesterGone
	}
	keyID, isKey := strings.CutPrefix(ap.Requester, "apikey:")
	if !isKey {
		return &identity.Principal{Subject: u.Username, Owner: u.Username, Role: u.Role, AMR: amr}, nil
	}
	keys, err := a.d.Auth.ListAPIKeys(ctx, u.Username)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if k.ID == keyID {
			return &identity.Principal{Subject: ap.Requester, APIKeyID: k.ID, Owner: k.Owner, Role: identity.RoleUser,
				AMR: amr, Actions: k.Actions, Accounts: k.Accounts}, nil
		}
	}
	return nil, errRequesterGone
}
