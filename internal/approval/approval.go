// Package approval holds quorum approvals: a signing request that matched
// a require_approval transaction policy, or a policy change made while
// policy_change_approvals is set, waits here until enough approvers other
// than the requester approve it with a fresh MFA login, one of them
// rejects it, or it expires.
//
// Every transition is one atomic read-modify-write of the record (the
// barrier's Update: compare-and-swap across nodes), so concurrent approvals
// on several nodes never double-count and exactly one caller learns that
// the threshold was reached and goes on to sign (shared/DESIGN.md,
// "Policies"; docs/policies.md, "Approvals").
package approval

import (
	"encoding/json"
	"log/slog"
	"slices"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/signpolicy"
)

// Status of an approval. It only moves forward:
//
//	pending → approved → signed | denied      (kind sign)
//	pending → approved → applied | denied     (kind policy_change)
//	pending → rejected | expired
type Status string

// Statuses.
const (
	StatusPending  Status = "pending"
	StatusApproved Status = "approved" // threshold reached; the vault is signing or applying
	StatusSigned   Status = "signed"   // signed; Result holds the sign endpoint's answer
	StatusApplied  Status = "applied"  // a policy change was applied; Result holds the policy
	StatusDenied   Status = "denied"   // refused at the threshold (a deny policy or a limit); Reason says why
	StatusRejected Status = "rejected" // an approver rejected it
	StatusExpired  Status = "expired"  // not approved in time
)

// Terminal reports whether no further transition is possible.
func (s Status) Terminal() bool {
	switch s {
	case StatusSigned, StatusApplied, StatusDenied, StatusRejected, StatusExpired:
		return true
	}
	return false
}

// Kind of approval.
type Kind string

// Kinds.
const (
	KindSign         Kind = "sign"
	KindPolicyChange Kind = "policy_change"
)

// Defaults.
const (
	// DefaultTTL is how long an approval waits for its approvers.
	DefaultTTL = 24 * time.Hour
	// DefaultMFAMaxAge is how recent an approver's MFA login must be
	// (NIST SP 800-63B §4.2.3 reauthentication, as for step-up).
	DefaultMFAMaxAge = 10 * time.Minute
	// MaxRequestSize bounds the stored request body.
	MaxRequestSize = 1 << 20
	// approvedGrace is how long an approved record may wait for its
	// signature past expiry before a sweep expires it (a node died while
	// signing).
	approvedGrace = 10 * time.Minute
	// clockSkew tolerates an auth_time slightly in the future.
	clockSkew = time.Minute
)

// Errors. Each carries a kind (and an API code) for the HTTP edge.
var (
	ErrNotFound = errkind.New(errkind.NotFound, "approval_not_found", "approval not found")
	// ErrNotPending: the approval already left pending (approved, signed,
	// rejected, expired...).
	ErrNotPending = errkind.New(errkind.Conflict, "approval_not_pending", "approval is no longer pending")
	// ErrExpired: the approval expired before this vote.
	ErrExpired = errkind.New(errkind.Conflict, "approval_expired", "approval has expired")
	// ErrSelfApproval: the requester may not approve or reject.
	ErrSelfApproval = errkind.New(errkind.Denied, "self_approval", "the requester cannot approve or reject their own request")
	// ErrNotApprover: the caller is not an approver of this request.
	ErrNotApprover = errkind.New(errkind.Denied, "not_an_approver", "you are not an approver of this request")
	// ErrAlreadyVoted: each approver counts once.
	ErrAlreadyVoted = errkind.New(errkind.Conflict, "already_voted", "you have already approved this request")
	// ErrMFARequired: approving needs a login with a second factor (amr
	// "otp") within the last 10 minutes.
	ErrMFARequired = errkind.New(errkind.Denied, "mfa_required", "approving needs a fresh login with a one-time code (within 10 minutes)")
	// ErrUnsatisfiable: a policy names fewer approvers (other than the
	// requester) than its threshold, so the request could never be approved.
	ErrUnsatisfiable = errkind.New(errkind.Denied, "policy_denied", "the approval policy cannot be satisfied: too few approvers other than the requester")
	// ErrWrongState: MarkSigned, MarkDenied or ApplyPolicyChange on an
	// approval that is not approved.
	ErrWrongState = errkind.New(errkind.Conflict, "approval_not_approved", "approval is not in the approved state")
)

// Requirement is one policy's approval rule, copied when the approval is
// created (later policy edits do not move the goalposts).
type Requirement struct {
	Policy    string   `json:"policy,omitempty"` // the policy id; "" for a policy change
	Name      string   `json:"name,omitempty"`
	Version   int      `json:"version,omitempty"`
	Reason    string   `json:"reason,omitempty"`
	Threshold int      `json:"threshold"`
	Approvers []string `json:"approvers,omitempty"`
	// AnyAdmin: any admin other than the requester may approve (policy
	// changes under policy_change_approvals).
	AnyAdmin bool `json:"any_admin,omitempty"`
}

// Vote is one approval or rejection.
type Vote struct {
	User  string    `json:"user"`
	Admin bool      `json:"admin,omitempty"` // the voter was an admin when voting
	At    time.Time `json:"at"`
}

// Body is the original request body, kept to sign later. It is not a
// secret, but it says exactly what the requester wants signed: it is
// stored behind the barrier, left out of the approval's JSON, and never
// printed or logged.
type Body []byte

func (Body) String() string                 { return "[request body]" }
func (Body) GoString() string               { return "[request body]" }
func (Body) LogValue() slog.Value           { return slog.StringValue("[request body]") }
func (b Body) MarshalJSON() ([]byte, error) { return json.Marshal("[request body]") }

// PolicyChange is a create, update or delete of a transaction policy
// waiting for approval.
type PolicyChange struct {
	Op          string               `json:"op"`     // signpolicy.OpCreate, OpUpdate, OpDelete
	Policy      string               `json:"policy"` // the policy id (for a create, assigned when requested)
	BaseVersion int                  `json:"base_version,omitempty"`
	Document    *signpolicy.Document `json:"document,omitempty"`
}

// Approval is one approval record.
type Approval struct {
	ID     string `json:"id"`
	Kind   Kind   `json:"kind"`
	Status Status `json:"status"`
	// Requester is the principal who asked (a user, or apikey:<id>);
	// RequesterOwner is the user an API key acts for. Neither may vote.
	Requester      string `json:"requester"`
	RequesterOwner string `json:"requester_owner,omitempty"`
	Account        string `json:"account,omitempty"`
	// Operation is the sign endpoint ("sign-transaction", "sign-message",
	// "sign-typed-data", "sign-psbt", or a JSON-RPC method) or
	// "policy.create" / "policy.update" / "policy.delete".
	Operation    string                `json:"operation"`
	Intent       *signpolicy.IntentDoc `json:"intent,omitempty"`
	Change       *PolicyChange         `json:"change,omitempty"`
	Requirements []Requirement         `json:"requirements"`
	Approvals    []Vote                `json:"approvals"`
	Rejection    *Vote                 `json:"rejection,omitempty"`
	Reason       string                `json:"reason,omitempty"` // why denied
	// Result is the sign endpoint's answer (signed) or the policy version
	// the change wrote (applied).
	Result    json.RawMessage `json:"result,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	ExpiresAt time.Time       `json:"expires_at"`
	UpdatedAt time.Time       `json:"updated_at"`
	// Request is the original body; see Body.
	Request Body `json:"-"`
}

// record is the stored form: the approval with its request body.
type record struct {
	Approval
	Body []byte `json:"request,omitempty"`
}

// PolicyIDs are the policies whose requirements the approval covers: pass
// them as signpolicy.AuthorizeOptions.Approved when re-authorizing at the
// threshold.
func (a *Approval) PolicyIDs() []string {
	var out []string
	for _, r := range a.Requirements {
		if r.Policy != "" {
			out = append(out, r.Policy)
		}
	}
	return out
}

// isRequester reports whether p made the request (or owns the API key that
// did).
func (a *Approval) isRequester(subject string) bool {
	return subject == a.Requester || (a.RequesterOwner != "" && subject == a.RequesterOwner)
}

// eligible reports whether user (an admin or not) may vote on r.
func (r *Requirement) eligible(user string, admin bool) bool {
	return (r.AnyAdmin && admin) || slices.Contains(r.Approvers, user)
}

// canVote reports whether p may approve or reject a (MFA aside).
func (a *Approval) canVote(p *identity.Principal) bool {
	if p.IsAPIKey() || a.isRequester(p.Subject) {
		return false
	}
	admin := p.Role == identity.RoleAdmin
	for i := range a.Requirements {
		if a.Requirements[i].eligible(p.Subject, admin) {
			return true
		}
	}
	return false
}

// VisibleTo reports whether p may see a: its requester (or the owner of
// the requesting API key) and whoever may vote on it.
func (a *Approval) VisibleTo(p *identity.Principal) bool {
	if a.isRequester(p.Subject) || (p.IsAPIKey() && p.Owner != "" && a.isRequester(p.Owner)) {
		return true
	}
	admin := p.Role == identity.RoleAdmin && !p.IsAPIKey()
	for i := range a.Requirements {
		if a.Requirements[i].eligible(p.Subject, admin) {
			return true
		}
	}
	return false
}

// satisfied reports whether every requirement has its threshold.
func (a *Approval) satisfied() bool {
	for i := range a.Requirements {
		r := &a.Requirements[i]
		n := 0
		for _, v := range a.Approvals {
			if r.eligible(v.User, v.Admin) {
				n++
			}
		}
		if n < r.Threshold {
			return false
		}
	}
	return true
}

// checkMFA applies the approver rule: a user (not an API key) whose
// session has amr "otp" and an auth_time at most maxAge old.
func checkMFA(p *identity.Principal, now time.Time, maxAge time.Duration) error {
	if p.IsAPIKey() {
		return ErrNotApprover
	}
	if !slices.Contains(p.AMR, "otp") {
		return ErrMFARequired
	}
	age := now.Sub(p.AuthTime)
	if p.AuthTime.IsZero() || age > maxAge || age < -clockSkew {
		return ErrMFARequired
	}
	return nil
}
