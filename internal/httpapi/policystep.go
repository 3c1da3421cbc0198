package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/moonvault/moonvault/internal/approval"
	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/signpolicy"
	"github.com/moonvault/moonvault/internal/wallet"
)

// Policies are the transaction policy engine and the approvals it asks
// for. Without an Engine no policy applies (every request is allowed, as
// before policies existed) and the policy and approval routes answer 501.
type Policies struct {
	Engine    *signpolicy.Engine
	Approvals *approval.Manager
	// ChangeApprovals is policy_change_approvals: when above zero, creating,
	// changing or deleting a policy is an approval that this many admins
	// other than the requester must approve.
	ChangeApprovals int
	// Decided is told every decision on a signing request (metrics).
	Decided func(decision string)
}

// The policy step's outcomes that are not errors of the request.
var (
	// errDryRun ends a dry run at the policy step (the caller reads q.dry).
	errDryRun = errkind.New(errkind.Other, "", "dry run")
	// A request run again at its approval's threshold must be the request
	// that was approved.
	errAccountChanged = errkind.New(errkind.Conflict, "request_changed",
		"the account was deleted and created again since the request was made")
	errIntentChanged = errkind.New(errkind.Conflict, "request_changed",
		"the request no longer decodes to what was approved")
	errDigestChanged = errkind.New(errkind.Conflict, "request_changed",
		"the bytes to sign are no longer those the approvers were shown (digest)")
	errApprovalAgain = errkind.New(errkind.Conflict, "approval_required",
		"another approval policy now applies to this request; request it again")
)

// approvalHeld ends a request that a require_approval policy holds: REST
// answers 202 with the approval, JSON-RPC an error carrying it. It never
// reaches the error mapper.
type approvalHeld struct{ ap *approval.Approval }

func (e *approvalHeld) Error() string { return "the request is held for approval " + e.ap.ID }

// dryRun is a policy evaluation that signs nothing (POST
// /v1/policies/evaluate): the pipeline runs up to the policy step, which
// evaluates without reserving and stops.
type dryRun struct {
	admin     bool     // an admin may evaluate any account, as anyone
	principal string   // evaluate as this principal ("" the caller)
	amr       []string // and with these methods (nil: the caller's)
	result    *signpolicy.Result
	intent    *intent.Intent
}

// checkPolicies is the policy step of the sign pipeline, the one call for
// every chain and operation: it completes the intent with what the
// pipeline knows (account, owner, principal, amr) and asks the engine. A
// deny ends the request with 403 policy_denied; require_approval records
// an approval that keeps op and body to run the request again, and ends
// the request; an allow may have reserved limit spend, which the caller
// releases if signing fails (q.release). Without an engine it costs
// nothing.
func (a *API) checkPolicies(q *request, acc *wallet.Account, in *intent.Intent, op string, body []byte,
	digest func() (*approval.Digest, error)) (*signpolicy.Result, error) {
	pol := a.d.Policies
	if pol.Engine == nil {
		if q.dry != nil {
			return nil, errPoliciesOff // never sign on a dry run
		}
		return nil, nil
	}
	p := q.principal
	in.Account, in.Owner = acc.ID().String(), acc.Owner
	in.Principal, in.AMR = p.Subject, p.AMR
	if p.IsAPIKey() && len(in.AMR) == 0 {
		in.AMR = []string{"apikey"}
	}
	in.Normalize()
	ctx := q.ctx()
	switch {
	case q.dry != nil:
		return nil, q.dry.evaluate(ctx, pol.Engine, in)
	case q.replay != nil:
		d, err := digest()
		if err != nil {
			return nil, err
		}
		if err := sameRequest(q.replay, acc, in, d); err != nil {
			return nil, err
		}
	}
	var opts signpolicy.AuthorizeOptions
	if q.replay != nil {
		opts.Approved = q.replay.PolicyIDs()
	}
	res, err := pol.Engine.Authorize(ctx, in, opts)
	if err != nil {
		return nil, err
	}
	if pol.Decided != nil {
		pol.Decided(string(res.Decision))
	}
	q.noteDecision(res)
	switch res.Decision {
	case signpolicy.DecisionDeny:
		return nil, res.Err()
	case signpolicy.DecisionRequireApproval:
		if q.replay != nil {
			return nil, errApprovalAgain
		}
		d, err := digest()
		if err != nil {
			return nil, err
		}
		// Creating the approval is a state change: its request line is
		// durable first, so that what is not audited did not happen.
		if err := q.recordIntent(); err != nil {
			return nil, err
		}
		ap, err := pol.Approvals.CreateSign(ctx, approval.SignRequest{
			Requester: p, Account: in.Account, Operation: op, Request: body, Intent: in,
			Matched: res.RequiredApprovals(), Digest: d,
		})
		if err != nil {
			return nil, err
		}
		q.noteApproval(ap)
		return nil, &approvalHeld{ap: ap}
	}
	if res.Reservation != nil {
		q.held = append(q.held, res)
	}
	return res, nil
}

func (d *dryRun) evaluate(ctx context.Context, e *signpolicy.Engine, in *intent.Intent) error {
	if d.principal != "" {
		in.Principal, in.AMR = d.principal, d.amr
	} else if d.amr != nil {
		in.AMR = d.amr
	}
	res, err := e.Evaluate(ctx, in)
	if err != nil {
		return err
	}
	d.result, d.intent = res, in
	return errDryRun
}

// sameRequest checks that a request run again at its approval's threshold
// is the one the approvers saw: the same account (not one deleted and
// created again under the name), the same intent, and the same bytes to
// sign (the digest shown to the approvers).
func sameRequest(ap *approval.Approval, acc *wallet.Account, in *intent.Intent, d *approval.Digest) error {
	if acc.ID().String() != ap.Account || acc.CreatedAt.After(ap.CreatedAt) {
		return errAccountChanged
	}
	if ap.Digest == nil || d == nil || *ap.Digest != *d {
		return errDigestChanged
	}
	now, err := json.Marshal(signpolicy.DescribeIntent(in))
	if err != nil {
		return err
	}
	then, err := json.Marshal(ap.Intent)
	if err != nil {
		return err
	}
	if !bytes.Equal(now, then) {
		return errIntentChanged
	}
	return nil
}

// releaseTimeout bounds giving back reserved spend; it runs even when the
// client has gone (the request's context may be cancelled).
const releaseTimeout = 10 * time.Second

// release gives back the limit spend res reserved (signing failed, or the
// answer could not be audited, so nobody has the signature).
func (q *request) release(res *signpolicy.Result) {
	if res == nil || res.Reservation == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(q.ctx()), releaseTimeout)
	defer cancel()
	if err := res.Release(ctx); err != nil {
		q.api.d.Logger.Error("releasing policy limit spend failed; it stays counted until it leaves the window",
			"request_id", requestID(q.Request), "err", err)
	}
	for i, h := range q.held {
		if h == res {
			q.held = append(q.held[:i], q.held[i+1:]...)
			break
		}
	}
}

// releaseAll gives back every reservation of the request.
func (q *request) releaseAll() { q.releaseSince(0) }

// releaseSince gives back the reservations made after the request held n
// (one call of a JSON-RPC batch whose answer could not be made).
func (q *request) releaseSince(n int) {
	for len(q.held) > n {
		q.release(q.held[len(q.held)-1])
	}
}

// noteDecision records a policy decision for the audit line.
func (q *request) noteDecision(res *signpolicy.Result) {
	q.decisions = mergeList(q.decisions, string(res.Decision))
	for _, m := range res.Matched {
		q.policies = appendList(q.policies, m.Policy)
	}
}

// noteApproval records an approval and its status for the audit line;
// a request that moves it twice (approved, then signed) lists both.
func (q *request) noteApproval(ap *approval.Approval) {
	q.approvalID = appendList(q.approvalID, ap.ID)
	q.approvalStatus = appendList(q.approvalStatus, string(ap.Status))
}

// mergeList adds each item of a comma-separated list to list (appendList).
func mergeList(list, items string) string {
	for _, it := range strings.Split(items, ",") {
		if it != "" {
			list = appendList(list, it)
		}
	}
	return list
}
