package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/moonvault/moonvault/internal/approval"
	"github.com/moonvault/moonvault/internal/auth"
	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/policy"
	"github.com/moonvault/moonvault/internal/signpolicy"
)

// Transaction policies: documents under /v1/policies, for admins (writes
// need step-up), and the dry run. docs/policies.md is the guide.

var errPoliciesOff = errkind.New(errkind.Unsupported, "not_supported", "transaction policies are not enabled on this node")

func (a *API) engine() (*signpolicy.Engine, error) {
	if a.d.Policies.Engine == nil {
		return nil, errPoliciesOff
	}
	return a.d.Policies.Engine, nil
}

func actor(p *identity.Principal) signpolicy.Actor { return signpolicy.Actor{User: p.Subject} }

// policyDocument reads a policy document body: signpolicy.Decode (strict,
// 64 KiB) then the CEL check, so an error names the field, or the line and
// column of the condition.
func (a *API) policyDocument(q *request, e *signpolicy.Engine) (*signpolicy.Document, error) {
	body, err := readBody(q)
	if err != nil {
		return nil, err
	}
	d, err := signpolicy.Decode(body)
	if err != nil {
		return nil, err
	}
	if err := e.Compile(d); err != nil {
		return nil, err
	}
	if err := a.approversExist(q.ctx(), d); err != nil {
		return nil, err
	}
	return d, nil
}

// approversExist refuses a document naming an approver who is not a user
// now (review H1): names are never reused (a deleted user leaves a
// tombstone), so no user made later can take a name a policy lists.
func (a *API) approversExist(ctx context.Context, d *signpolicy.Document) error {
	if d.Approvals == nil {
		return nil
	}
	for i, name := range d.Approvals.Approvers {
		_, err := a.d.Auth.GetUser(ctx, name)
		if errors.Is(err, auth.ErrNotFound) {
			return &errkind.Field{Name: fmt.Sprintf("approvals.approvers[%d]", i), Code: "invalid_policy", Sentinel: signpolicy.ErrInvalidDocument,
				Msg: fmt.Sprintf("%q is not a user: approvers must exist when the policy is written", name)}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// held answers a change that waits for approval (policy_change_approvals).
func heldChange(q *request, ap *approval.Approval) (int, any, error) {
	q.noteApproval(ap)
	q.policies = appendList(q.policies, ap.Change.Policy)
	return http.StatusAccepted, map[string]any{"approval": ap}, nil
}

// requestChange records a policy change for approval by n other admins
// (those enabled and with a second factor now; fewer than n: 409
// approvers_unavailable).
func (a *API) requestChange(q *request, ch approval.PolicyChange) (int, any, error) {
	ap, err := a.d.Policies.Approvals.CreatePolicyChange(q.ctx(), q.principal, ch, a.d.Policies.ChangeApprovals)
	if err != nil {
		return 0, nil, err
	}
	return heldChange(q, ap)
}

// policyWriter is the engine, for a caller allowed to write policies.
func (a *API) policyWriter(q *request) (*signpolicy.Engine, error) {
	e, err := a.engine()
	if err != nil {
		return nil, err
	}
	return e, a.authorize(q, policy.ActionPolicyWrite, nil)
}

func (a *API) createPolicy(q *request) (int, any, error) {
	e, err := a.policyWriter(q)
	if err != nil {
		return 0, nil, err
	}
	d, err := a.policyDocument(q, e)
	if err != nil {
		return 0, nil, err
	}
	if a.d.Policies.ChangeApprovals > 0 {
		return a.requestChange(q, approval.PolicyChange{Op: signpolicy.OpCreate, Document: d})
	}
	p, err := e.Create(q.ctx(), d, actor(q.principal))
	if err != nil {
		return 0, nil, err
	}
	q.policies = p.ID
	return http.StatusCreated, p, nil
}

func (a *API) listPolicies(q *request) (int, any, error) {
	e, err := a.engine()
	if err != nil {
		return 0, nil, err
	}
	ps, err := e.List(q.ctx())
	if err != nil {
		return 0, nil, err
	}
	if ps == nil {
		ps = []*signpolicy.Policy{}
	}
	return 200, map[string]any{"policies": ps}, nil
}

// policyID reads {id} and records it in the audit line.
func policyID(q *request) string {
	id := q.PathValue("id")
	if signpolicy.ValidID(id) {
		q.policies = id
	}
	return id
}

func (a *API) getPolicy(q *request) (int, any, error) {
	e, err := a.engine()
	if err != nil {
		return 0, nil, err
	}
	p, err := e.Get(q.ctx(), policyID(q))
	if err != nil {
		return 0, nil, err
	}
	return 200, p, nil
}

func (a *API) policyVersions(q *request) (int, any, error) {
	e, err := a.engine()
	if err != nil {
		return 0, nil, err
	}
	vs, err := e.Versions(q.ctx(), policyID(q))
	if err != nil {
		return 0, nil, err
	}
	return 200, map[string]any{"versions": vs}, nil
}

// ifMatch reads the optional If-Match header: the version the caller last
// read (`"3"` or `3`); 0 when absent.
func ifMatch(q *request) (int, error) {
	h := strings.TrimSpace(q.Header.Get("If-Match"))
	if h == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(strings.Trim(strings.TrimPrefix(h, "W/"), `"`))
	if err != nil || n < 1 {
		return 0, errField("If-Match", `must be the policy version the change is based on, e.g. "3"`)
	}
	return n, nil
}

// changeBase is the version an update or delete is based on: If-Match, 0
// when absent; under policy_change_approvals an absent If-Match means the
// current version, which the held change records.
func (a *API) changeBase(q *request, e *signpolicy.Engine, id string) (int, error) {
	v, err := ifMatch(q)
	if err != nil || v != 0 || a.d.Policies.ChangeApprovals == 0 {
		return v, err
	}
	p, err := e.Get(q.ctx(), id)
	if err != nil {
		return 0, err
	}
	return p.Version, nil
}

func (a *API) updatePolicy(q *request) (int, any, error) {
	e, err := a.policyWriter(q)
	if err != nil {
		return 0, nil, err
	}
	id := policyID(q)
	d, err := a.policyDocument(q, e)
	if err != nil {
		return 0, nil, err
	}
	ver, err := a.changeBase(q, e, id)
	if err != nil {
		return 0, nil, err
	}
	if a.d.Policies.ChangeApprovals > 0 {
		return a.requestChange(q, approval.PolicyChange{Op: signpolicy.OpUpdate, Policy: id, BaseVersion: ver, Document: d})
	}
	p, err := e.Update(q.ctx(), id, d, actor(q.principal), ver)
	if err != nil {
		return 0, nil, err
	}
	return 200, p, nil
}

func (a *API) deletePolicy(q *request) (int, any, error) {
	e, err := a.policyWriter(q)
	if err != nil {
		return 0, nil, err
	}
	id := policyID(q)
	ver, err := a.changeBase(q, e, id)
	if err != nil {
		return 0, nil, err
	}
	if a.d.Policies.ChangeApprovals > 0 {
		return a.requestChange(q, approval.PolicyChange{Op: signpolicy.OpDelete, Policy: id, BaseVersion: ver})
	}
	if err := e.Delete(q.ctx(), id, actor(q.principal), ver); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

// evaluation is the dry run's answer.
type evaluation struct {
	Decision signpolicy.Decision   `json:"decision"`
	Matched  []signpolicy.Match    `json:"matched"`
	Intent   *signpolicy.IntentDoc `json:"intent"`
}

// evaluatePolicies is the dry run: the sign pipeline up to the policy
// step, which evaluates without reserving limits and signs nothing. An
// admin may evaluate any account, and as any principal (to try a rule on
// API keys, say); a user or API key, the accounts it may sign with, as
// itself.
func (a *API) evaluatePolicies(q *request) (int, any, error) {
	if _, err := a.engine(); err != nil {
		return 0, nil, err
	}
	var req struct {
		Account   string          `json:"account"`
		Operation string          `json:"operation"`
		Request   json.RawMessage `json:"request"`
		Principal string          `json:"principal"`
		AMR       []string        `json:"amr"`
	}
	if err := decode(q, &req, false); err != nil {
		return 0, nil, err
	}
	if req.Account == "" {
		return 0, nil, errField("account", `is required: "name", or "owner/name"`)
	}
	if op, ok := signOps[req.Operation]; !ok || !op.rest {
		return 0, nil, errField("operation", "must be one of "+strings.Join(restSignOps(), ", "))
	}
	if len(req.Request) == 0 || req.Request[0] != '{' {
		return 0, nil, errField("request", "is required: the sign endpoint's body, a JSON object")
	}
	p := q.principal
	admin := p.Role == identity.RoleAdmin && !p.IsAPIKey()
	if !admin && (req.Principal != "" || req.AMR != nil) {
		return 0, nil, errForbidden("only admins may evaluate as another principal or with other authentication methods")
	}
	if len(req.Principal) > 128 || len(req.AMR) > 8 {
		return 0, nil, errField("principal", "is too long")
	}
	q.dry = &dryRun{admin: admin, principal: req.Principal, amr: req.AMR}
	ref := accountRef{path: strings.Replace(req.Account, "/", ":", 1)}
	_, err := a.runSign(q, req.Operation, ref, req.Request)
	if !errors.Is(err, errDryRun) {
		if err == nil {
			err = errors.New("httpapi: the dry run reached the signer")
		}
		return 0, nil, err
	}
	d := q.dry
	return 200, evaluation{Decision: d.result.Decision, Matched: d.result.Matched, Intent: signpolicy.DescribeIntent(d.intent)}, nil
}

func restSignOps() []string {
	var out []string
	for name, op := range signOps {
		if op.rest {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
