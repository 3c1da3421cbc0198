// Package approval holds quorum approvals: a signing request that matched
// a require_approval transaction policy, or a policy change or a change of
// who may approve (an admin created, disabled or deleted; an admin's or an
// approver's password reset) made while policy_change_approvals is set,
// waits here until enough approvers other than the requester approve it
// with a fresh MFA login, one of them rejects it, or it expires.
//
// Who may vote is decided once, when the approval is made (review H1):
// each requirement keeps the users eligible then (they existed, were
// enabled and had a second factor confirmed; for admin approvals, they
// were admins), and only they count. A user made after the request, or
// one whose second factor came later, never votes on it.
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
//	pending → approved → applied | denied     (kinds policy_change, user_change)
//	pending → rejected | expired
type Status string

// Statuses.
const (
	StatusPending  Status = "pending"
	StatusApproved Status = "approved" // threshold reached; the vault is signing or applying
	StatusSigned   Status = "signed"   // signed; Result holds the sign endpoint's answer
	StatusApplied  Status = "applied"  // a policy or user change was applied; Result holds the policy version or the user
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
	// KindUserChange: a change of who may approve, under
	// policy_change_approvals (UserChange).
	KindUserChange Kind = "user_change"
)

// Defaults.
const (
	// DefaultTTL is how long an approval waits for its approvers.
	DefaultTTL = 24 * time.Hour
	// DefaultRetention is how long a decided approval (signed, applied,
	// denied, rejected, expired) is kept before a sweep removes it; the
	// audit log keeps its history.
	DefaultRetention = 30 * 24 * time.Hour
	// DefaultMaxPending bounds the approvals one requester may have open
	// (pending or approved) at once.
	DefaultMaxPending = 100
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
	// ErrUnsatisfiable: a policy names fewer eligible approvers (other than
	// the requester: users that exist, are enabled and have a second factor
	// confirmed) than its threshold, so the request could never be approved.
	ErrUnsatisfiable = errkind.New(errkind.Denied, "policy_denied", "the approval policy cannot be satisfied: too few approvers other than the requester (enabled, with a confirmed one-time code)")
	// ErrApproversUnavailable: an admin approval (policy_change_approvals)
	// asks for more admins than there are besides the requester (and the
	// admin concerned), enabled and with a confirmed second factor.
	ErrApproversUnavailable = errkind.New(errkind.Conflict, "approvers_unavailable",
		"policy_change_approvals needs more admins (other than you and the user concerned, enabled, with a confirmed one-time code) than there are")
	// ErrTooManyPending: the requester already has the most open approvals
	// approval_max_pending allows.
	ErrTooManyPending = errkind.New(errkind.RateLimited, "too_many_pending_approvals",
		"you have as many approvals waiting as approval_max_pending allows: wait until some are decided or expire, or ask an approver to reject the ones no longer needed")
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
	// AnyAdmin: admins approve (policy and user changes under
	// policy_change_approvals).
	AnyAdmin bool `json:"any_admin,omitempty"`
	// Eligible are the users who may vote, frozen when the approval was
	// made: of Approvers (or, with AnyAdmin, of the admins) those that
	// existed, were enabled and had a second factor confirmed, never the
	// requester (nor the user a user change concerns). A record without
	// it (made before this rule) has no voters and expires.
	Eligible []string `json:"eligible"`
}

// Vote is one approval or rejection.
type Vote struct {
	User  string    `json:"user"`
	Admin bool      `json:"admin,omitempty"` // the voter was an admin when voting
	At    time.Time `json:"at"`
}

// Body is the original request body (JSON: the sign endpoint's body or a
// JSON-RPC call's params), kept to sign later and shown to the requester
// and the approvers in the approval's JSON (review M4: approvers see what
// they approve). It holds nothing secret (personal_sign's password is
// dropped before it is kept), but it says exactly what the requester
// wants signed, so it is never printed or logged.
type Body []byte

func (Body) String() string       { return "[request body]" }
func (Body) GoString() string     { return "[request body]" }
func (Body) LogValue() slog.Value { return slog.StringValue("[request body]") }

// MarshalJSON shows the body as the JSON it is.
func (b Body) MarshalJSON() ([]byte, error) {
	if len(b) == 0 || !json.Valid(b) {
		return []byte("null"), nil
	}
	return b, nil
}

// UnmarshalJSON reads the body back: JSON as written, or the base64 string
// of records written before the body was shown.
func (b *Body) UnmarshalJSON(data []byte) error {
	switch {
	case string(data) == "null":
		*b = nil
	case len(data) > 0 && data[0] == '"':
		var raw []byte
		if err := json.Unmarshal(data, &raw); err != nil {
			return err
		}
		*b = raw
	default:
		*b = slices.Clone(data)
	}
	return nil
}

// Digest says exactly what the key will sign, so that an approver can
// check it with their own tools: the EIP-191 / EIP-712 / transaction
// signing hash (keccak256) on Ethereum, SHA-256 of the message bytes on
// Solana, SHA-256 of the PSBT on Bitcoin. It is compared again when the
// approved request is run.
type Digest struct {
	Algorithm string `json:"algorithm"` // keccak256, sha256
	Value     string `json:"value"`     // 0x-hex
	// Of names what was hashed: "eip191_message", "eip712_typed_data",
	// "eip155_transaction" (the transaction's signing hash), "solana_message",
	// "solana_offchain_message_bytes", "psbt".
	Of string `json:"of"`
}

// Secret is a value a change needs that nobody may see: a user change's
// password hash (argon2id PHC). It is kept behind the barrier, never in
// the approval's JSON, never printed.
type Secret []byte

func (Secret) String() string       { return "[redacted]" }
func (Secret) GoString() string     { return "[redacted]" }
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// UserChange is a change of who may approve, waiting for the quorum:
// creating an admin (or a user a policy names as an approver), disabling,
// enabling or deleting an admin, resetting the password of an admin or of
// an approver.
type UserChange struct {
	Op       UserOp `json:"op"`
	Username string `json:"username"`
	Role     string `json:"role,omitempty"` // create
	// Why says why it needs the quorum ("the user is an admin", "a policy
	// names the user as an approver").
	Why string `json:"why"`
}

// UserOp is what a user change does.
type UserOp string

// User change operations.
const (
	UserCreate        UserOp = "create"
	UserDelete        UserOp = "delete"
	UserDisable       UserOp = "disable"
	UserEnable        UserOp = "enable"
	UserPasswordReset UserOp = "password_reset"
)

// ValidUserOp reports whether op is a known user change.
func ValidUserOp(op UserOp) bool {
	switch op {
	case UserCreate, UserDelete, UserDisable, UserEnable, UserPasswordReset:
		return true
	}
	return false
}

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
	Operation string                `json:"operation"`
	Intent    *signpolicy.IntentDoc `json:"intent,omitempty"`
	// Request is the original body (sign approvals), shown to the
	// requester and the approvers; Digest what the key will sign.
	Request      Body          `json:"request,omitempty"`
	Digest       *Digest       `json:"digest,omitempty"`
	Change       *PolicyChange `json:"change,omitempty"`
	UserChange   *UserChange   `json:"user_change,omitempty"`
	Requirements []Requirement `json:"requirements"`
	Approvals    []Vote        `json:"approvals"`
	Rejection    *Vote         `json:"rejection,omitempty"`
	Reason       string        `json:"reason,omitempty"` // why denied
	// Result is the sign endpoint's answer (signed), the policy version
	// the change wrote or the user it changed (applied).
	Result    json.RawMessage `json:"result,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	ExpiresAt time.Time       `json:"expires_at"`
	UpdatedAt time.Time       `json:"updated_at"`

	// secret is what a user change needs and nobody sees (Secret).
	secret Secret
}

// record is the stored form: the approval with its request body exactly
// as received (base64; this field shadows Approval.Request, which shows
// it as JSON) and its secret.
type record struct {
	Approval
	Body   []byte `json:"request,omitempty"`
	Secret []byte `json:"secret,omitempty"`
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

// eligible reports whether user (an admin or not, now) may vote on r: one
// of the users frozen when the approval was made; for an admin
// requirement, still an admin.
func (r *Requirement) eligible(user string, admin bool) bool {
	return slices.Contains(r.Eligible, user) && (!r.AnyAdmin || admin)
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
	if p.IsAPIKey() {
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

// voters are every user who may vote on a (for its indexes).
func (a *Approval) voters() []string {
	var out []string
	for _, r := range a.Requirements {
		out = append(out, r.Eligible...)
	}
	return out
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
