package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/identity"
)

// CreateUserChange records a change of who may approve (see UserChange)
// that n admins other than the requester and the user concerned must
// approve (policy_change_approvals = n). secret is what applying it needs
// and nobody may see (a password hash); it is kept with the record, never
// shown. Validate the change (the user exists, the password is good)
// before calling.
func (m *Manager) CreateUserChange(ctx context.Context, requester *identity.Principal, ch UserChange, secret []byte, n int) (*Approval, error) {
	if requester == nil || n < 1 || ch.Username == "" || !ValidUserOp(ch.Op) {
		return nil, errors.New("approval: CreateUserChange needs a requester, a user, a known operation and n >= 1")
	}
	if (ch.Op == UserCreate || ch.Op == UserPasswordReset) != (len(secret) > 0) {
		return nil, errors.New("approval: a create or password reset needs its password hash, nothing else does")
	}
	reason := fmt.Sprintf("changes of who may approve need %d other admins (policy_change_approvals): %s", n, ch.Why)
	a := m.newApproval(KindUserChange, requester, "user."+string(ch.Op),
		[]Requirement{{Threshold: n, AnyAdmin: true, Reason: reason}})
	a.UserChange = &ch
	a.secret = slices.Clone(secret)
	if err := m.adminQuorum(ctx, a, n); err != nil {
		return nil, err
	}
	return a, m.create(ctx, a)
}

// UserApplier applies an approved user change; secret is the one given to
// CreateUserChange. It returns what the approval keeps as its result (the
// user), or an error: of kind Conflict, NotFound or Invalid when the
// change can no longer be made (it is then denied), of another kind for a
// passing failure (it stays approved; call ApplyUserChange again). It
// must be idempotent: a node may die after applying and before recording.
type UserApplier func(ctx context.Context, ch *UserChange, secret []byte) (json.RawMessage, error)

// ApplyUserChange applies an approved user change (the caller got ready
// from Approve) and records the outcome: applied with the result, or
// denied with the reason.
func (m *Manager) ApplyUserChange(ctx context.Context, id string, apply UserApplier) (*Approval, error) {
	a, err := m.load(ctx, id)
	if err != nil {
		return nil, err
	}
	if a.Kind != KindUserChange || a.Status != StatusApproved || a.UserChange == nil {
		return nil, fmt.Errorf("%w (it is %s %s)", ErrWrongState, a.Kind, a.Status)
	}
	result, err := apply(ctx, a.UserChange, a.secret)
	if err != nil {
		switch errkind.Of(err) {
		case errkind.Conflict, errkind.NotFound, errkind.Invalid:
			return m.MarkDenied(ctx, id, "user change not applied: "+err.Error())
		}
		return nil, err
	}
	return m.transition(ctx, id, func(a *Approval, _ time.Time) (error, error) {
		if a.Status != StatusApproved {
			return nil, fmt.Errorf("%w (it is %s)", ErrWrongState, a.Status)
		}
		a.Status, a.Result, a.secret = StatusApplied, result, nil
		return nil, nil
	})
}
