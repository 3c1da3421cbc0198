package approval

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/intent"
	"github.com/moonvault/moonvault/internal/signpolicy"
	"github.com/moonvault/moonvault/internal/storage"
)

// Storage is what approvals need from the vault's storage; the barrier
// implements it. Update is an atomic read-modify-write across nodes; fn
// may run more than once and must have no side effects beyond its result.
type Storage interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, value []byte) error
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, prefix, after string, limit int) ([]string, error)
	Update(ctx context.Context, key string, fn func(cur []byte, found bool) (next []byte, del bool, err error)) error
}

// Member is a user as an approval sees them when it is made.
type Member struct {
	Name     string
	Admin    bool
	Disabled bool
	// MFA: a second factor (TOTP) is confirmed.
	MFA bool
}

// Directory says who the users are now (internal/auth behind it).
type Directory interface {
	// Members returns the named users that exist, in any order, or every
	// user when names is nil.
	Members(ctx context.Context, names []string) ([]Member, error)
}

// Options are the manager's settings.
type Options struct {
	// Directory decides who may vote when an approval is made. Without it
	// no approval can be made (fail closed).
	Directory Directory
	Now       func() time.Time // nil: time.Now
	TTL       time.Duration    // 0: DefaultTTL
	MFAMaxAge time.Duration    // 0: DefaultMFAMaxAge
	// Retention is how long decided approvals are kept (0:
	// DefaultRetention); MaxPending bounds one requester's open approvals
	// (0: DefaultMaxPending).
	Retention  time.Duration
	MaxPending int
	Logger     *slog.Logger
}

// Manager stores approvals and applies their rules. Safe for concurrent
// use, on any number of nodes sharing the storage.
type Manager struct {
	kv         Storage
	dir        Directory
	now        func() time.Time
	ttl        time.Duration
	mfaAge     time.Duration
	retention  time.Duration
	maxPending int
	log        *slog.Logger
}

// New returns a manager over kv.
func New(kv Storage, opts Options) *Manager {
	m := &Manager{kv: kv, dir: opts.Directory, now: opts.Now, ttl: opts.TTL, mfaAge: opts.MFAMaxAge,
		retention: opts.Retention, maxPending: opts.MaxPending, log: opts.Logger}
	if m.now == nil {
		m.now = time.Now
	}
	if m.ttl <= 0 {
		m.ttl = DefaultTTL
	}
	if m.mfaAge <= 0 {
		m.mfaAge = DefaultMFAMaxAge
	}
	if m.retention <= 0 {
		m.retention = DefaultRetention
	}
	if m.maxPending <= 0 {
		m.maxPending = DefaultMaxPending
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	return m
}

var idRE = regexp.MustCompile(`^apr_[0-9a-f]{12}[a-z2-7]{16}$`)

// newID is time-ordered (milliseconds, hex) then random.
func (m *Manager) newID() string {
	return fmt.Sprintf("apr_%012x%s", m.now().UnixMilli(), strings.ToLower(rand.Text()[:16]))
}

func storageErr(op string, err error) error { return fmt.Errorf("approval: %s: %w", op, err) }

// SignRequest is a signing request held for approval.
type SignRequest struct {
	Requester *identity.Principal
	Account   string
	Operation string
	Request   []byte
	Intent    *intent.Intent
	// Matched are the require_approval matches of the policy decision
	// (signpolicy.Result.RequiredApprovals()).
	Matched []signpolicy.Match
	// Digest is what the key will sign (shown to approvers, compared
	// when the approved request runs).
	Digest *Digest
}

// CreateSign records a pending approval for a signing request. The
// eligible approvers of each requirement are frozen now: the policy's
// approvers that exist, are enabled and have a second factor confirmed,
// other than the requester.
func (m *Manager) CreateSign(ctx context.Context, r SignRequest) (*Approval, error) {
	if r.Requester == nil || r.Intent == nil || r.Operation == "" {
		return nil, errors.New("approval: CreateSign needs a requester, an intent and an operation")
	}
	if len(r.Request) > MaxRequestSize {
		return nil, errkind.New(errkind.TooLarge, "payload_too_large", "request body too large to hold for approval")
	}
	if len(r.Request) > 0 && !json.Valid(r.Request) {
		return nil, errors.New("approval: the request body to keep is not JSON")
	}
	var reqs []Requirement
	for _, mt := range r.Matched {
		if mt.Effect != signpolicy.EffectRequireApproval || mt.Approved || mt.Approvals == nil {
			continue
		}
		reqs = append(reqs, Requirement{Policy: mt.Policy, Name: mt.Name, Version: mt.Version, Reason: mt.Reason,
			Threshold: mt.Approvals.Threshold, Approvers: slices.Clone(mt.Approvals.Approvers)})
	}
	if len(reqs) == 0 {
		return nil, errors.New("approval: CreateSign without a require_approval match")
	}
	a := m.newApproval(KindSign, r.Requester, r.Operation, reqs)
	a.Account = r.Account
	a.Intent = signpolicy.DescribeIntent(r.Intent)
	a.Request = Body(slices.Clone(r.Request))
	a.Digest = r.Digest
	for i := range a.Requirements {
		req := &a.Requirements[i]
		voters, err := m.voters(ctx, req.Approvers, false, a)
		if err != nil {
			return nil, err
		}
		if len(voters) < req.Threshold {
			return nil, fmt.Errorf("%w (policy %q needs %d, has %d)", ErrUnsatisfiable, req.Name, req.Threshold, len(voters))
		}
		req.Eligible = voters
	}
	return a, m.create(ctx, a)
}

// voters are the users who may vote on a requirement of a, as of now: of
// names (every admin when admins), those that exist, are enabled, have a
// second factor confirmed (and are admins when admins), other than the
// requester and the user a user change concerns.
func (m *Manager) voters(ctx context.Context, names []string, admins bool, a *Approval) ([]string, error) {
	if m.dir == nil {
		return nil, errors.New("approval: no user directory: approvals cannot be made")
	}
	if !admins && len(names) == 0 {
		return []string{}, nil
	}
	var ask []string
	if !admins {
		ask = names
	}
	members, err := m.dir.Members(ctx, ask)
	if err != nil {
		return nil, fmt.Errorf("approval: who may approve: %w", err)
	}
	out := []string{}
	for _, u := range members {
		switch {
		case u.Disabled || !u.MFA || a.isRequester(u.Name):
		case admins && !u.Admin:
		case !admins && !slices.Contains(names, u.Name):
		case a.UserChange != nil && u.Name == a.UserChange.Username:
		default:
			out = append(out, u.Name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// CreatePolicyChange records a policy change that n admins other than the
// requester must approve (policy_change_approvals = n). Validate the
// document (signpolicy.Engine.Compile) before calling.
func (m *Manager) CreatePolicyChange(ctx context.Context, requester *identity.Principal, ch PolicyChange, n int) (*Approval, error) {
	if requester == nil || n < 1 {
		return nil, errors.New("approval: CreatePolicyChange needs a requester and n >= 1")
	}
	switch ch.Op {
	case signpolicy.OpCreate:
		if ch.Document == nil || ch.Policy != "" {
			return nil, errors.New("approval: a create needs a document and no policy id")
		}
		ch.Policy = signpolicy.NewID() // fixed now, so that applying twice cannot create two
	case signpolicy.OpUpdate:
		if ch.Document == nil || !signpolicy.ValidID(ch.Policy) {
			return nil, errors.New("approval: an update needs a policy id and a document")
		}
	case signpolicy.OpDelete:
		if ch.Document != nil || !signpolicy.ValidID(ch.Policy) {
			return nil, errors.New("approval: a delete needs a policy id and no document")
		}
	default:
		return nil, fmt.Errorf("approval: unknown policy change %q", ch.Op)
	}
	a := m.newApproval(KindPolicyChange, requester, "policy."+ch.Op,
		[]Requirement{{Threshold: n, AnyAdmin: true, Reason: fmt.Sprintf("policy changes need %d other admins (policy_change_approvals)", n)}})
	a.Change = &ch
	if err := m.adminQuorum(ctx, a, n); err != nil {
		return nil, err
	}
	return a, m.create(ctx, a)
}

// adminQuorum freezes the admins who may vote on a, and refuses a change
// that fewer than n of them could approve.
func (m *Manager) adminQuorum(ctx context.Context, a *Approval, n int) error {
	voters, err := m.voters(ctx, nil, true, a)
	if err != nil {
		return err
	}
	if len(voters) < n {
		return fmt.Errorf("%w (%d needed, %d available)", ErrApproversUnavailable, n, len(voters))
	}
	a.Requirements[0].Eligible = voters
	return nil
}

func (m *Manager) newApproval(kind Kind, p *identity.Principal, op string, reqs []Requirement) *Approval {
	now := m.now().UTC()
	a := &Approval{ID: m.newID(), Kind: kind, Status: StatusPending, Requester: p.Subject,
		Operation: op, Requirements: reqs, Approvals: []Vote{},
		CreatedAt: now, ExpiresAt: now.Add(m.ttl), UpdatedAt: now}
	if p.Owner != "" && p.Owner != p.Subject {
		a.RequesterOwner = p.Owner
	}
	return a
}

// view marks a pending approval past its expiry as expired (what a read
// shows before a sweep or a vote persists it).
func (m *Manager) view(a *Approval) *Approval {
	if a.Status == StatusPending && !m.now().Before(a.ExpiresAt) {
		a.Status = StatusExpired
	}
	return a
}

// Get returns an approval. Check VisibleTo before showing it to a caller.
func (m *Manager) Get(ctx context.Context, id string) (*Approval, error) {
	a, err := m.load(ctx, id)
	if err != nil {
		return nil, err
	}
	return m.view(a), nil
}

// load reads a record as stored.
func (m *Manager) load(ctx context.Context, id string) (*Approval, error) {
	if !idRE.MatchString(id) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	raw, err := m.kv.Get(ctx, recordPrefix+id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, storageErr("read approval", err)
	}
	return decode(raw)
}

// transition applies fn to the record atomically. fn returns an error to
// refuse (nothing written), or a non-nil "after" error to write the change
// and still fail (an expiry found while voting).
func (m *Manager) transition(ctx context.Context, id string, fn func(a *Approval, now time.Time) (after error, err error)) (*Approval, error) {
	if !idRE.MatchString(id) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	var out *Approval
	var after error
	err := m.kv.Update(ctx, recordPrefix+id, func(cur []byte, found bool) ([]byte, bool, error) {
		out, after = nil, nil
		if !found {
			return nil, false, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		a, err := decode(cur)
		if err != nil {
			return nil, false, err
		}
		now := m.now().UTC()
		if after, err = fn(a, now); err != nil {
			return nil, false, err
		}
		if a.Status.Terminal() {
			a.secret = nil // a password hash is kept no longer than needed
		}
		a.UpdatedAt = now
		raw, err := encode(a)
		if err != nil {
			return nil, false, err
		}
		out = a
		return raw, false, nil
	})
	if err != nil {
		if errkind.Of(err) == errkind.Other {
			return nil, storageErr("update approval", err)
		}
		return nil, err
	}
	if out.Status.Terminal() {
		m.decided(ctx, out)
	}
	return out, after
}

// expireIfDue moves a pending approval past its expiry to expired.
func expireIfDue(a *Approval, now time.Time) bool {
	if a.Status == StatusPending && !now.Before(a.ExpiresAt) {
		a.Status = StatusExpired
		return true
	}
	return false
}

// Approve records p's approval. ready is true for exactly one caller: the
// one whose vote reached every threshold (status approved). That caller
// re-authorizes the request (signpolicy.Engine.Authorize with
// AuthorizeOptions{Approved: a.PolicyIDs()}), signs, and records the
// outcome with MarkSigned or MarkDenied (or, for a policy change,
// ApplyPolicyChange).
func (m *Manager) Approve(ctx context.Context, id string, p *identity.Principal) (a *Approval, ready bool, err error) {
	if err := checkMFA(p, m.now(), m.mfaAge); err != nil {
		return nil, false, err
	}
	a, err = m.transition(ctx, id, func(a *Approval, now time.Time) (error, error) {
		ready = false
		if err := voteAllowed(a, p, now); err != nil {
			return nil, err
		}
		if expireIfDue(a, now) {
			return ErrExpired, nil
		}
		if slices.ContainsFunc(a.Approvals, func(v Vote) bool { return v.User == p.Subject }) {
			return nil, ErrAlreadyVoted
		}
		a.Approvals = append(a.Approvals, Vote{User: p.Subject, Admin: p.Role == identity.RoleAdmin, At: now})
		if a.satisfied() {
			a.Status = StatusApproved
			ready = true
		}
		return nil, nil
	})
	if err != nil {
		return a, false, err
	}
	return a, ready, nil
}

// Reject records p's rejection: one rejection rejects the request.
func (m *Manager) Reject(ctx context.Context, id string, p *identity.Principal) (*Approval, error) {
	if err := checkMFA(p, m.now(), m.mfaAge); err != nil {
		return nil, err
	}
	return m.transition(ctx, id, func(a *Approval, now time.Time) (error, error) {
		if err := voteAllowed(a, p, now); err != nil {
			return nil, err
		}
		if expireIfDue(a, now) {
			return ErrExpired, nil
		}
		a.Status = StatusRejected
		a.Rejection = &Vote{User: p.Subject, Admin: p.Role == identity.RoleAdmin, At: now}
		return nil, nil
	})
}

// voteAllowed applies the approver rules to a record.
func voteAllowed(a *Approval, p *identity.Principal, now time.Time) error {
	switch {
	case a.isRequester(p.Subject):
		return ErrSelfApproval
	case !a.canVote(p):
		return ErrNotApprover
	case a.Status == StatusPending && !now.Before(a.ExpiresAt):
		return nil // expired: the caller persists it
	case a.Status != StatusPending:
		return fmt.Errorf("%w (it is %s)", ErrNotPending, a.Status)
	}
	return nil
}

// MarkSigned records the signature (the sign endpoint's answer) of an
// approved signing request.
func (m *Manager) MarkSigned(ctx context.Context, id string, result json.RawMessage) (*Approval, error) {
	if !json.Valid(result) {
		return nil, errors.New("approval: MarkSigned needs the JSON answer of the sign endpoint")
	}
	return m.finish(ctx, id, KindSign, StatusSigned, "", result)
}

// MarkDenied records that an approved request was refused when it was
// re-checked (a deny policy or a limit), with the reason.
func (m *Manager) MarkDenied(ctx context.Context, id, reason string) (*Approval, error) {
	return m.finish(ctx, id, "", StatusDenied, reason, nil)
}

func (m *Manager) finish(ctx context.Context, id string, kind Kind, to Status, reason string, result json.RawMessage) (*Approval, error) {
	a, err := m.transition(ctx, id, func(a *Approval, _ time.Time) (error, error) {
		if a.Status != StatusApproved || (kind != "" && a.Kind != kind) {
			return nil, fmt.Errorf("%w (it is %s %s)", ErrWrongState, a.Kind, a.Status)
		}
		a.Status, a.Reason, a.Result = to, reason, result
		return nil, nil
	})
	return a, err
}
