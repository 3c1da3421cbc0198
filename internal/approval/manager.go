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

// Storage layout (behind the barrier). Records are the truth; the indexes
// are written before the record and cleaned lazily, so an index entry may
// point at nothing (skipped) but a record is never missing from its index.
const (
	recordPrefix = "approval/records/"
	userPrefix   = "approval/by-user/"  // <user>/<id>: requester, requester's owner, listed approvers
	adminPrefix  = "approval/by-admin/" // <id>: approvals any admin may vote on
	openPrefix   = "approval/open/"     // <id>: pending or approved, for expiry sweeps
)

// Options are the manager's settings.
type Options struct {
	Now       func() time.Time // nil: time.Now
	TTL       time.Duration    // 0: DefaultTTL
	MFAMaxAge time.Duration    // 0: DefaultMFAMaxAge
	Logger    *slog.Logger
}

// Manager stores approvals and applies their rules. Safe for concurrent
// use, on any number of nodes sharing the storage.
type Manager struct {
	kv     Storage
	now    func() time.Time
	ttl    time.Duration
	mfaAge time.Duration
	log    *slog.Logger
}

// New returns a manager over kv.
func New(kv Storage, opts Options) *Manager {
	m := &Manager{kv: kv, now: opts.Now, ttl: opts.TTL, mfaAge: opts.MFAMaxAge, log: opts.Logger}
	if m.now == nil {
		m.now = time.Now
	}
	if m.ttl <= 0 {
		m.ttl = DefaultTTL
	}
	if m.mfaAge <= 0 {
		m.mfaAge = DefaultMFAMaxAge
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
}

// CreateSign records a pending approval for a signing request.
func (m *Manager) CreateSign(ctx context.Context, r SignRequest) (*Approval, error) {
	if r.Requester == nil || r.Intent == nil || r.Operation == "" {
		return nil, errors.New("approval: CreateSign needs a requester, an intent and an operation")
	}
	if len(r.Request) > MaxRequestSize {
		return nil, errkind.New(errkind.TooLarge, "payload_too_large", "request body too large to hold for approval")
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
	for _, req := range reqs {
		others := 0
		for _, u := range req.Approvers {
			if !a.isRequester(u) {
				others++
			}
		}
		if others < req.Threshold {
			return nil, fmt.Errorf("%w (policy %q needs %d, has %d)", ErrUnsatisfiable, req.Name, req.Threshold, others)
		}
	}
	return a, m.create(ctx, a)
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
	return a, m.create(ctx, a)
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

// create writes the indexes, then the record (create-only).
func (m *Manager) create(ctx context.Context, a *Approval) error {
	users := []string{a.Requester}
	if a.RequesterOwner != "" {
		users = append(users, a.RequesterOwner)
	}
	anyAdmin := false
	for _, r := range a.Requirements {
		users = append(users, r.Approvers...)
		anyAdmin = anyAdmin || r.AnyAdmin
	}
	slices.Sort(users)
	keys := []string{openPrefix + a.ID}
	for _, u := range slices.Compact(users) {
		keys = append(keys, userPrefix+u+"/"+a.ID)
	}
	if anyAdmin {
		keys = append(keys, adminPrefix+a.ID)
	}
	for _, k := range keys {
		if err := m.kv.Put(ctx, k, nil); err != nil {
			return storageErr("index approval", err)
		}
	}
	raw, err := encode(a)
	if err != nil {
		return err
	}
	err = m.kv.Update(ctx, recordPrefix+a.ID, func(_ []byte, found bool) ([]byte, bool, error) {
		if found {
			return nil, false, errors.New("approval: id collision")
		}
		return raw, false, nil
	})
	if err != nil {
		return storageErr("write approval", err)
	}
	return nil
}

func encode(a *Approval) ([]byte, error) {
	return json.Marshal(record{Approval: *a, Body: a.Request})
}

func decode(raw []byte) (*Approval, error) {
	var r record
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, errkind.Wrap(errkind.Integrity, fmt.Errorf("approval record: %w", err))
	}
	a := r.Approval
	a.Request = Body(r.Body)
	return &a, nil
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
	a, err := decode(raw)
	if err != nil {
		return nil, err
	}
	return m.view(a), nil
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
		if err := m.kv.Delete(ctx, openPrefix+id); err != nil {
			m.log.Warn("approval: could not drop the open index; the next sweep will", "approval", id, "err", err)
		}
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

// Filter selects approvals for List.
type Filter struct {
	// User lists what this user requested (or their API keys did) or may
	// vote on. Empty with All lists everything.
	User string
	// Admin adds the approvals any admin may vote on (policy changes).
	Admin bool
	// All lists every approval (an auditor's view); User is then ignored.
	All bool
	// Status keeps only approvals in this status ("" any).
	Status Status
	// Limit bounds the answer (0: 100), newest first.
	Limit int
}

// List returns approvals, newest first.
func (m *Manager) List(ctx context.Context, f Filter) ([]*Approval, error) {
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	var ids []string
	add := func(prefix string) error {
		keys, err := m.kv.List(ctx, prefix, "", 0)
		if err != nil {
			return storageErr("list approvals", err)
		}
		for _, k := range keys {
			ids = append(ids, k[strings.LastIndexByte(k, '/')+1:])
		}
		return nil
	}
	var err error
	switch {
	case f.All:
		err = add(recordPrefix)
	case f.User == "":
		return nil, errors.New("approval: List needs a user or All")
	default:
		err = add(userPrefix + f.User + "/")
		if err == nil && f.Admin {
			err = add(adminPrefix)
		}
	}
	if err != nil {
		return nil, err
	}
	if f.Status == StatusPending || f.Status == StatusApproved {
		open, err := m.kv.List(ctx, openPrefix, "", 0)
		if err != nil {
			return nil, storageErr("list approvals", err)
		}
		set := make(map[string]bool, len(open))
		for _, k := range open {
			set[strings.TrimPrefix(k, openPrefix)] = true
		}
		ids = slices.DeleteFunc(ids, func(id string) bool { return !set[id] })
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	slices.Reverse(ids) // ids are time-ordered: newest first
	var out []*Approval
	for _, id := range ids {
		if len(out) == limit {
			break
		}
		a, err := m.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue // an index written before a record that never was
		}
		if err != nil {
			return nil, err
		}
		if f.Status == "" || a.Status == f.Status {
			out = append(out, a)
		}
	}
	return out, nil
}

// Expire persists the expiry of every pending approval past its expiry
// (and of approved ones whose signing never finished, after a grace
// period), and returns the approvals it expired, for the audit log. Run it
// periodically on any node.
func (m *Manager) Expire(ctx context.Context) ([]*Approval, error) {
	keys, err := m.kv.List(ctx, openPrefix, "", 0)
	if err != nil {
		return nil, storageErr("list open approvals", err)
	}
	var out []*Approval
	for _, k := range keys {
		id := strings.TrimPrefix(k, openPrefix)
		changed := false
		a, err := m.transition(ctx, id, func(a *Approval, now time.Time) (error, error) {
			changed = false
			switch {
			case expireIfDue(a, now):
			case a.Status == StatusApproved && !now.Before(a.ExpiresAt.Add(approvedGrace)):
				a.Status = StatusExpired
				a.Reason = "approved but not signed before it expired"
			case a.Status.Terminal():
				return nil, errTerminal
			default:
				return nil, errNotDue
			}
			changed = true
			return nil, nil
		})
		switch {
		case errors.Is(err, errNotDue):
		case errors.Is(err, ErrNotFound), errors.Is(err, errTerminal):
			_ = m.kv.Delete(ctx, k) // a dangling index entry
		case err != nil:
			return out, err
		case changed:
			out = append(out, a)
		}
	}
	return out, nil
}

var (
	errNotDue   = errkind.New(errkind.Conflict, "", "not due")
	errTerminal = errkind.New(errkind.Conflict, "", "already final")
)
