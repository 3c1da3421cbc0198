package approval

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/signpolicy"
)

// PolicyWriter is the part of *signpolicy.Engine that applies a change.
type PolicyWriter interface {
	CreateWithID(ctx context.Context, id string, d *signpolicy.Document, by signpolicy.Actor) (*signpolicy.Policy, error)
	Update(ctx context.Context, id string, d *signpolicy.Document, by signpolicy.Actor, ifVersion int) (*signpolicy.Policy, error)
	Delete(ctx context.Context, id string, by signpolicy.Actor, ifVersion int) error
	Versions(ctx context.Context, id string) ([]*signpolicy.Version, error)
}

// ApplyPolicyChange applies an approved policy change (the caller got
// ready from Approve) and records the outcome: applied, with the policy's
// new version as Result, or denied when the policy changed since the
// request (a change applies only to the version it was made against) or
// the document no longer compiles. The new version records the requester,
// the approval and its approvers. It is idempotent: after a crash between
// applying and recording, calling it again finds the version this approval
// wrote and records applied.
func (m *Manager) ApplyPolicyChange(ctx context.Context, id string, w PolicyWriter) (*Approval, error) {
	a, err := m.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if a.Kind != KindPolicyChange || a.Status != StatusApproved || a.Change == nil {
		return nil, fmt.Errorf("%w (it is %s %s)", ErrWrongState, a.Kind, a.Status)
	}
	by := signpolicy.Actor{User: a.Requester, Approval: a.ID}
	for _, v := range a.Approvals {
		by.ApprovedBy = append(by.ApprovedBy, v.User)
	}
	ch := a.Change
	switch ch.Op {
	case signpolicy.OpCreate:
		_, err = w.CreateWithID(ctx, ch.Policy, ch.Document, by)
	case signpolicy.OpUpdate:
		_, err = w.Update(ctx, ch.Policy, ch.Document, by, ch.BaseVersion)
	case signpolicy.OpDelete:
		err = w.Delete(ctx, ch.Policy, by, ch.BaseVersion)
	default:
		err = errkind.New(errkind.Invalid, "", fmt.Sprintf("unknown policy change %q", ch.Op))
	}
	if err != nil && errkind.Of(err) != errkind.Conflict && errkind.Of(err) != errkind.NotFound && errkind.Of(err) != errkind.Invalid {
		return nil, err // storage trouble: it stays approved; call again
	}
	// Find the version this approval wrote (now, or before a crash).
	vs, verr := w.Versions(ctx, ch.Policy)
	if verr != nil && errkind.Of(verr) != errkind.NotFound {
		return nil, verr
	}
	var mine *signpolicy.Version
	for _, v := range vs {
		if v.Approval == a.ID {
			mine = v
		}
	}
	if mine == nil {
		if err == nil {
			err = fmt.Errorf("the change left no version")
		}
		return m.MarkDenied(ctx, id, "policy change not applied: "+err.Error())
	}
	raw, err := json.Marshal(mine)
	if err != nil {
		return nil, err
	}
	return m.transition(ctx, id, func(a *Approval, _ time.Time) (error, error) {
		if a.Status != StatusApproved {
			return nil, fmt.Errorf("%w (it is %s)", ErrWrongState, a.Status)
		}
		a.Status, a.Result = StatusApplied, raw
		return nil, nil
	})
}
