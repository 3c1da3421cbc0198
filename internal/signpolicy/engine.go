// Package signpolicy is the transaction policy engine: admins write
// policies whose CEL conditions read the chain-neutral intent of a signing
// request (package intent); every signing request is evaluated against the
// policies in its scope before it is signed. Deny wins, then
// require_approval, then allow; no matching policy allows, as before
// policies existed. Stateful limits cap the spend or count of signed
// requests per policy and account in a sliding window, shared by every node
// through atomic storage updates. (The package named policy is the
// authorization layer: who may call what.)
//
// The contract is shared/DESIGN.md, "Policies"; docs/policies.md is the
// user's guide.
package signpolicy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/intent"
)

// Decision is the outcome of evaluating a request.
type Decision string

// Decisions.
const (
	DecisionAllow           Decision = "allow"
	DecisionDeny            Decision = "deny"
	DecisionRequireApproval Decision = "require_approval"
)

// ErrNotLoaded means the engine has no policy set (storage was unreachable
// at start): evaluation fails closed until Reload succeeds.
var ErrNotLoaded = errkind.New(errkind.Unavailable, "policies_unavailable", "transaction policies are not loaded")

// ErrPolicyDenied is the sentinel of a request that a deny policy (or a
// limit) refused: 403 policy_denied. The error returned is a *DeniedError
// naming the policy and the reason.
var ErrPolicyDenied = errkind.New(errkind.Denied, "policy_denied", "denied by a transaction policy")

// DeniedError is a refusal by one policy.
type DeniedError struct{ Match Match }

func (e *DeniedError) Error() string {
	return fmt.Sprintf("denied by policy %q (%s): %s", e.Match.Name, e.Match.Policy, e.Match.Reason)
}

// Unwrap makes errors.Is(err, ErrPolicyDenied) hold and gives the kind.
func (e *DeniedError) Unwrap() error { return ErrPolicyDenied }

// Err returns the refusal of a deny result (a *DeniedError), else nil.
func (r *Result) Err() error {
	if d := r.Denial(); d != nil {
		return &DeniedError{Match: *d}
	}
	return nil
}

// Match is one policy that matched a request, with a human reason.
type Match struct {
	Policy  string `json:"policy"` // the policy id
	Name    string `json:"name"`
	Version int    `json:"version"`
	Effect  Effect `json:"effect"`
	Reason  string `json:"reason"`
	// Approvals is the policy's approval rule (require_approval).
	Approvals *Approvals `json:"approvals,omitempty"`
	// Approved marks a require_approval match that a completed approval
	// covers (AuthorizeOptions.Approved); it does not affect the decision.
	Approved bool `json:"approved,omitempty"`
}

// Result is a decision and every policy that matched, strongest first.
type Result struct {
	Decision Decision `json:"decision"`
	Matched  []Match  `json:"matched"`
	// Reservation holds limit spend recorded by Authorize for an allowed
	// request; Release it if signing fails. Nil when nothing was reserved.
	Reservation *Reservation `json:"-"`
}

// Release releases the result's reservation, if any.
func (r *Result) Release(ctx context.Context) error { return r.Reservation.Release(ctx) }

// Denial returns the first deny match, for the 403 answer; nil if none.
func (r *Result) Denial() *Match { return r.first(EffectDeny) }

func (r *Result) first(e Effect) *Match {
	for i := range r.Matched {
		if r.Matched[i].Effect == e && !r.Matched[i].Approved {
			return &r.Matched[i]
		}
	}
	return nil
}

// RequiredApprovals returns the require_approval matches that decide the
// result (not already approved): the approval record needs each of them.
func (r *Result) RequiredApprovals() []Match {
	var out []Match
	for _, m := range r.Matched {
		if m.Effect == EffectRequireApproval && !m.Approved {
			out = append(out, m)
		}
	}
	return out
}

// Options are the engine's dependencies.
type Options struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives load and compile problems (never request contents).
	Logger *slog.Logger
}

// Engine stores, compiles and evaluates transaction policies. It keeps
// every policy compiled in memory (a copy-on-write set: evaluation takes no
// lock and does no storage I/O unless a limit applies). It is safe for
// concurrent use.
type Engine struct {
	c     *compiler
	store *store
	lim   *limiter
	now   func() time.Time
	log   *slog.Logger

	set atomic.Pointer[policySet]
	mu  sync.Mutex // serializes set rebuilds
	// seen is the highest policy index counter this engine loaded (under
	// mu): an index that goes back is refused (store.go, policyIndex).
	seen uint64
}

// New returns an engine over kv. Call Reload before evaluating.
func New(kv Storage, opts Options) (*Engine, error) {
	c, err := newCompiler()
	if err != nil {
		return nil, err
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{
		c: c, now: now, log: log,
		store: &store{kv: kv, now: now},
		lim:   &limiter{kv: kv, now: now, locks: newKeyLocks(), seen: newSeqCache()},
	}, nil
}

// compiled is one policy, ready to evaluate.
type compiled struct {
	pol   *Policy
	prg   *program   // nil when broken
	limit *limitSpec // nil without a limit
	// reason is the reason of a stateless match.
	reason string
	// broken is why a stored policy does not compile (for example after an
	// upgrade changed the language). A broken deny or require_approval
	// policy matches every request in scope: it fails closed.
	broken error
}

type policySet struct {
	// err, when set, is why the stored policies cannot be trusted: every
	// evaluation fails with it (ErrStoreInconsistent, 503).
	err       error
	global    []*compiled
	byOwner   map[string][]*compiled
	byAccount map[string][]*compiled
	byID      map[string]*compiled
}

func (s *policySet) scope(in *intent.Intent) []*compiled {
	o, a := s.byOwner[in.Owner], s.byAccount[in.Account]
	if len(o) == 0 && len(a) == 0 {
		return s.global
	}
	out := make([]*compiled, 0, len(s.global)+len(o)+len(a))
	return append(append(append(out, s.global...), o...), a...)
}

func buildSet(ps []*compiled) *policySet {
	s := &policySet{byOwner: map[string][]*compiled{}, byAccount: map[string][]*compiled{}, byID: map[string]*compiled{}}
	slices.SortFunc(ps, func(a, b *compiled) int {
		if c := strings.Compare(a.pol.Name, b.pol.Name); c != 0 {
			return c
		}
		return strings.Compare(a.pol.ID, b.pol.ID)
	})
	for _, p := range ps {
		s.byID[p.pol.ID] = p
		switch {
		case len(p.pol.Accounts) > 0:
			for _, a := range p.pol.Accounts {
				s.byAccount[a] = append(s.byAccount[a], p)
			}
		case len(p.pol.Owners) > 0:
			for _, o := range p.pol.Owners {
				s.byOwner[o] = append(s.byOwner[o], p)
			}
		default:
			s.global = append(s.global, p)
		}
	}
	return s
}

// compileDoc validates and compiles a document.
func (e *Engine) compileDoc(d *Document) (*program, *limitSpec, error) {
	if err := d.Validate(); err != nil {
		return nil, nil, err
	}
	prg, err := e.c.compile(d.Condition)
	if err != nil {
		var f *errkind.Field
		if errors.As(err, &f) {
			return nil, nil, fieldErr(f.Name, f.Msg)
		}
		return nil, nil, err
	}
	var l *limitSpec
	if d.Limit != nil {
		if l, err = d.Limit.spec(); err != nil {
			return nil, nil, err
		}
	}
	return prg, l, nil
}

// Compile validates a document and type-checks its condition without
// storing it (for a policy change that waits for approval). Errors are
// *errkind.Field naming the field; CEL errors name line and column.
func (e *Engine) Compile(d *Document) error {
	_, _, err := e.compileDoc(d)
	return err
}

func (e *Engine) compilePolicy(p *Policy) *compiled {
	prg, l, err := e.compileDoc(&p.Document)
	if err != nil {
		e.log.Error("stored transaction policy does not compile; it fails closed", "policy", p.ID, "err", err)
		return &compiled{pol: p, broken: err}
	}
	return &compiled{pol: p, prg: prg, limit: l, reason: "condition holds: " + truncate(p.Condition, 200)}
}

// Reload reads and compiles every policy, checked against the policy
// index (store.go). Until it first succeeds, evaluation fails with
// ErrNotLoaded. When the stored policies are inconsistent (a record
// missing or older than the index, the index gone back), evaluation fails
// with ErrStoreInconsistent until a Reload finds them consistent again;
// other errors (storage unreachable) keep the set loaded before.
func (e *Engine) Reload(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	all, seq, err := e.store.loadVerified(ctx)
	if err == nil && seq < e.seen {
		err = inconsistent("the policy index went back from change %d to change %d: an older copy was put back", e.seen, seq)
	}
	if errors.Is(err, ErrStoreInconsistent) {
		e.log.Error("transaction policies in storage are inconsistent; signing is refused until they are repaired", "err", err)
		e.set.Store(&policySet{err: err})
		return err
	}
	if err != nil {
		return err
	}
	e.seen = seq
	var ps []*compiled
	for _, p := range all {
		if !p.Deleted {
			ps = append(ps, e.compilePolicy(p))
		}
	}
	e.set.Store(buildSet(ps))
	return nil
}

// Forget drops what the engine loaded and saw (sealing: a restore may
// legitimately take the storage back); evaluation fails with ErrNotLoaded
// until the next Reload.
func (e *Engine) Forget() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seen = 0
	e.set.Store(nil)
	e.lim.forget()
}

// Changed tells the engine that a storage key changed, possibly on another
// node (wire it to the barrier's Subscribe). A key under PolicyPrefix, or
// "" (changes may have been missed), reloads every policy: a load checks
// the whole set against the index, so one record cannot be read alone.
func (e *Engine) Changed(ctx context.Context, key string) error {
	if key == "" || isPolicyKey(key) {
		return e.Reload(ctx)
	}
	return nil
}

// refresh reloads after a change made here; before the first Reload it
// does nothing (Reload will read the change).
func (e *Engine) refresh(ctx context.Context) error {
	if e.set.Load() == nil {
		return nil
	}
	return e.Reload(ctx)
}

// Create validates, compiles and stores a new policy.
func (e *Engine) Create(ctx context.Context, d *Document, by Actor) (*Policy, error) {
	return e.CreateWithID(ctx, NewID(), d, by)
}

// CreateWithID is Create with an id from NewID; a second create of the
// same id fails with a conflict.
func (e *Engine) CreateWithID(ctx context.Context, id string, d *Document, by Actor) (*Policy, error) {
	if !ValidID(id) {
		return nil, fieldErr("id", "must come from NewID")
	}
	if _, _, err := e.compileDoc(d); err != nil {
		return nil, err
	}
	p, err := e.store.write(ctx, id, OpCreate, d, by, 0)
	if err != nil {
		return nil, err
	}
	return p, e.refresh(ctx)
}

// Update replaces a policy's document. ifVersion, when not zero, must be
// the current version, else ErrVersionConflict.
func (e *Engine) Update(ctx context.Context, id string, d *Document, by Actor, ifVersion int) (*Policy, error) {
	if !ValidID(id) {
		return nil, notFound(id)
	}
	if _, _, err := e.compileDoc(d); err != nil {
		return nil, err
	}
	p, err := e.store.write(ctx, id, OpUpdate, d, by, ifVersion)
	if err != nil {
		return nil, err
	}
	return p, e.refresh(ctx)
}

// Delete removes a policy; its history is kept.
func (e *Engine) Delete(ctx context.Context, id string, by Actor, ifVersion int) error {
	if !ValidID(id) {
		return notFound(id)
	}
	if _, err := e.store.write(ctx, id, OpDelete, nil, by, ifVersion); err != nil {
		return err
	}
	return e.refresh(ctx)
}

// Get returns the current version of a policy.
func (e *Engine) Get(ctx context.Context, id string) (*Policy, error) { return e.store.get(ctx, id) }

// List returns every policy, ordered by name.
func (e *Engine) List(ctx context.Context) ([]*Policy, error) {
	all, err := e.store.listAll(ctx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(p *Policy) bool { return p.Deleted }), nil
}

// Versions returns every version of a policy, oldest first (also after it
// was deleted).
func (e *Engine) Versions(ctx context.Context, id string) ([]*Version, error) {
	return e.store.versions(ctx, id)
}

// AuthorizeOptions modify Authorize.
type AuthorizeOptions struct {
	// Approved lists policy ids whose require_approval a completed approval
	// covers: at the threshold the caller re-authorizes the request with
	// them, so that deny policies and limits are checked again while the
	// approved requirement no longer holds the request back. Spend of such
	// a request is recorded against the approved policies' limits even
	// past them.
	Approved []string
}

// Evaluate is the dry run: the decision for in and every matching policy,
// with limits read but not consumed. It signs nothing and writes nothing.
func (e *Engine) Evaluate(ctx context.Context, in *intent.Intent) (*Result, error) {
	return e.evaluate(ctx, in, nil, false)
}

// Authorize decides a request that is about to be signed. When the
// decision is allow, the request's spend has been reserved against every
// limit that counts it (Result.Reservation): release it if signing fails.
// An error (storage unreachable, policies not loaded) means the request
// must not be signed.
func (e *Engine) Authorize(ctx context.Context, in *intent.Intent, opts AuthorizeOptions) (*Result, error) {
	return e.evaluate(ctx, in, opts.Approved, true)
}

func (e *Engine) evaluate(ctx context.Context, in *intent.Intent, approved []string, consume bool) (*Result, error) {
	set := e.set.Load()
	switch {
	case set == nil:
		return nil, ErrNotLoaded
	case set.err != nil:
		return nil, set.err
	}
	scope := set.scope(in)
	res := &Result{Decision: DecisionAllow, Matched: []Match{}}
	if len(scope) == 0 {
		return res, nil
	}
	now := e.now()
	act := e.c.newActivation(in, now)
	var limited []*compiled
	for _, p := range scope {
		if p.broken != nil {
			if p.pol.Effect != EffectAllow {
				res.add(p, "policy does not compile, so it matches every request (fails closed): "+p.broken.Error(), approved)
			}
			continue
		}
		if p.prg.guard.excludes(in) {
			continue // the condition is false for this chain or kind
		}
		out, err := p.prg.eval(act)
		switch {
		case (err != nil || out == outUnknown) && p.pol.Effect == EffectAllow:
			continue
		case err != nil:
			res.add(p, "condition could not be evaluated, so the policy applies (fails closed): "+err.Error(), approved)
		case out == outFalse:
			continue
		case p.limit != nil && (in.Decoded || covered(p, approved) || (out == outTrue && countable(p.limit, in))):
			limited = append(limited, p)
		case p.limit != nil:
			res.add(p, undecodedReason(in, "a limit cannot count what the request does not state"), approved)
		case out == outUnknown:
			res.add(p, undecodedReason(in, "the condition depends on what it moves"), approved)
		default:
			res.add(p, p.reason, approved)
		}
	}
	res.decide()
	if len(limited) > 0 && res.Decision != DecisionDeny {
		if err := e.applyLimits(ctx, res, in, limited, approved, consume); err != nil {
			return nil, err
		}
	}
	res.sort()
	return res, nil
}

// applyLimits checks the limits whose conditions hold. While the request
// would be allowed and consume is set, each is reserved atomically; any
// limit that would be exceeded matches, and then every reservation made
// for this request is released (it will not be signed now).
func (e *Engine) applyLimits(ctx context.Context, res *Result, in *intent.Intent, limited []*compiled, approved []string, consume bool) error {
	if in.Account == "" {
		return errkind.New(errkind.Invalid, "", "signpolicy: a limited request must name its account")
	}
	value := in.Spend() // value and the most the fee can take
	rsv := &Reservation{kv: e.lim.kv, locks: e.lim.locks, seen: e.lim.seen}
	fail := func(err error) error {
		if rerr := rsv.Release(ctx); rerr != nil {
			e.log.Error("releasing limit reservations failed; the spend stays counted", "err", rerr)
		}
		return err
	}
	for _, p := range limited {
		key := limitKey(p.pol.ID, in.Account)
		var chk limitCheck
		if consume && res.Decision == DecisionAllow {
			c, r, err := e.lim.reserve(ctx, key, p.limit, in.Chain, value, covered(p, approved))
			if err != nil {
				return fail(err)
			}
			chk = c
			if r != nil {
				rsv.entries = append(rsv.entries, *r)
			}
		} else {
			c, err := e.lim.peek(ctx, key, p.limit, in.Chain, value)
			if err != nil {
				return fail(err)
			}
			chk = c
		}
		if !chk.exceeded {
			continue
		}
		res.add(p, chk.reason, approved)
		res.decide()
		if res.Decision == DecisionDeny && consume {
			break // deny wins: nothing below can change the answer
		}
	}
	if res.Decision != DecisionAllow {
		return fail(nil)
	}
	if len(rsv.entries) > 0 {
		res.Reservation = rsv
	}
	return nil
}

// covered reports whether a completed approval covers p's
// require_approval: its limit then records the request's spend (what the
// request states) even when it is not fully decoded.
// countable says a limit can count an undecoded request whose condition
// holds: a count limit counts requests, whatever they move; an amount limit
// counts native value, which some undecoded requests still state exactly
// (intent.ValueKnown: an EVM call to a contract whose calldata the vault
// does not decode still states its ether and fee).
func countable(l *limitSpec, in *intent.Intent) bool {
	return l.amount == nil || in.ValueKnown
}

func covered(p *compiled, approved []string) bool {
	return p.pol.Effect == EffectRequireApproval && slices.Contains(approved, p.pol.ID)
}

// undecodedReason explains a match on a request that is not fully decoded
// (docs/policies.md, "Requests the vault cannot fully decode").
func undecodedReason(in *intent.Intent, why string) string {
	detail := "no reason given"
	if len(in.Undecoded) > 0 {
		detail = truncate(in.Undecoded[0], 200)
		if n := len(in.Undecoded) - 1; n > 0 {
			detail += fmt.Sprintf("; and %d more", n)
		}
	}
	return fmt.Sprintf("the request is not fully decoded (%s), and %s, so the policy applies (fails closed)", detail, why)
}

func (r *Result) add(p *compiled, reason string, approved []string) {
	m := Match{Policy: p.pol.ID, Name: p.pol.Name, Version: p.pol.Version, Effect: p.pol.Effect, Reason: reason,
		Approvals: p.pol.Approvals}
	if m.Effect == EffectRequireApproval && slices.Contains(approved, m.Policy) {
		m.Approved = true
	}
	r.Matched = append(r.Matched, m)
}

// decide applies deny > require_approval > allow over the matches.
func (r *Result) decide() {
	r.Decision = DecisionAllow
	for _, m := range r.Matched {
		switch {
		case m.Effect == EffectDeny:
			r.Decision = DecisionDeny
			return
		case m.Effect == EffectRequireApproval && !m.Approved:
			r.Decision = DecisionRequireApproval
		}
	}
}

var effectRank = map[Effect]int{EffectDeny: 0, EffectRequireApproval: 1, EffectAllow: 2}

func (r *Result) sort() {
	slices.SortStableFunc(r.Matched, func(a, b Match) int { return effectRank[a.Effect] - effectRank[b.Effect] })
	if r.Matched == nil {
		r.Matched = []Match{}
	}
}

// String is for logs: the decision and the matched policy ids.
func (r *Result) String() string {
	ids := make([]string, len(r.Matched))
	for i, m := range r.Matched {
		ids[i] = m.Policy
	}
	return fmt.Sprintf("%s [%s]", r.Decision, strings.Join(ids, " "))
}
