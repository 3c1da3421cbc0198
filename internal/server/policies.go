package server

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/moonvault/moonvault/internal/approval"
	"github.com/moonvault/moonvault/internal/audit"
	"github.com/moonvault/moonvault/internal/auth"
	"github.com/moonvault/moonvault/internal/httpapi"
	"github.com/moonvault/moonvault/internal/identity"
	"github.com/moonvault/moonvault/internal/signpolicy"
)

// Transaction policies and approvals on a node: the engine keeps every
// policy compiled in memory, loaded at unseal and kept current by change
// notifications (PostgreSQL NOTIFY on signpolicy.PolicyPrefix, so every
// node sees a new policy at once) with a periodic full reload as the
// safety net; a sweep expires approvals nobody decided in time.

const (
	policyResync   = 30 * time.Second
	approvalsSweep = time.Minute
)

// policyLoop is the background work of one unsealed period.
type policyLoop struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (n *Node) newPolicies() (err error) {
	n.Policies, err = signpolicy.New(n.barrier, signpolicy.Options{Logger: n.log})
	n.Approvals = approval.New(n.barrier, approval.Options{Directory: userDirectory{n.Auth}, TTL: n.cfg.ApprovalTTL,
		MaxPending: n.cfg.ApprovalMaxPending, Retention: n.cfg.ApprovalRetention, Logger: n.log})
	return err
}

// userDirectory tells approvals who the users are (auth).
type userDirectory struct{ a *auth.Service }

func (d userDirectory) Members(ctx context.Context, names []string) ([]approval.Member, error) {
	var users []auth.User
	if names == nil {
		all, err := d.a.ListUsers(ctx)
		if err != nil {
			return nil, err
		}
		users = all
	}
	for _, name := range names {
		u, err := d.a.GetUser(ctx, name)
		if errors.Is(err, auth.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		users = append(users, *u)
	}
	out := make([]approval.Member, 0, len(users))
	for _, u := range users {
		out = append(out, approval.Member{Name: u.Username, Admin: u.Role == identity.RoleAdmin, Disabled: u.Disabled, MFA: u.MFAEnabled})
	}
	return out, nil
}

func (n *Node) apiPolicies() httpapi.Policies {
	return httpapi.Policies{Engine: n.Policies, Approvals: n.Approvals,
		ChangeApprovals: n.cfg.PolicyChangeApprovals, Decided: n.Metrics.PolicyDecision}
}

// startPolicies loads the policies and starts the loop. A load failure is
// logged: until a reload succeeds, signing fails closed (503
// policies_unavailable).
func (n *Node) startPolicies(ctx context.Context) {
	n.stopPolicies() // one loop per unsealed period
	if err := n.Policies.Reload(ctx); err != nil {
		n.log.Error("transaction policies could not be loaded; signing is refused until they are", "err", err)
	}
	if err := n.Approvals.Migrate(ctx); err != nil {
		n.log.Warn("approval indexes of an earlier build could not be rewritten; retrying at the next sweep", "err", err)
	}
	loopCtx, cancel := context.WithCancel(n.runCtx)
	l := &policyLoop{cancel: cancel}
	feed := make(chan string, 256)
	unsub := n.barrier.Subscribe(func(key string) {
		if key != "" && !strings.HasPrefix(key, signpolicy.PolicyPrefix) {
			return
		}
		select {
		case feed <- key:
		default: // full: ask for a full reload rather than block the listener
			select {
			case feed <- "":
			default:
			}
		}
	})
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer unsub()
		resync := time.NewTicker(policyResync)
		defer resync.Stop()
		sweep := time.NewTicker(approvalsSweep)
		defer sweep.Stop()
		for {
			select {
			case <-loopCtx.Done():
				return
			case key := <-feed:
				if err := n.Policies.Changed(loopCtx, key); err != nil {
					n.log.Warn("transaction policy change could not be loaded; retrying at the next resync", "key", key, "err", err)
				}
			case <-resync.C:
				if err := n.Policies.Reload(loopCtx); err != nil {
					n.log.Warn("transaction policy resync failed", "err", err)
				}
			case <-sweep.C:
				n.sweepApprovals(loopCtx, n.Approvals)
			}
		}
	}()
	n.policyMu.Lock()
	n.policyLoop = l
	n.policyMu.Unlock()
}

// stopPolicies ends the loop (sealing) and makes the engine forget what
// it loaded and the change counters it saw: the next unseal may follow a
// restore, which legitimately takes the storage back.
func (n *Node) stopPolicies() {
	n.policyMu.Lock()
	l := n.policyLoop
	n.policyLoop = nil
	n.policyMu.Unlock()
	if l != nil {
		l.cancel()
		l.wg.Wait()
	}
	if n.Policies != nil {
		n.Policies.Forget()
	}
}

// sweepApprovals expires approvals past their time and removes decided
// ones past approval_retention.
func (n *Node) sweepApprovals(ctx context.Context, m *approval.Manager) {
	if err := m.Migrate(ctx); err != nil {
		n.log.Warn("approval indexes of an earlier build could not be rewritten", "err", err)
	}
	n.expireApprovals(ctx, m)
	if pruned, err := m.Prune(ctx); err != nil {
		n.log.Warn("approval retention sweep failed", "err", err)
	} else if pruned > 0 {
		n.log.Info("decided approvals removed after approval_retention", "count", pruned)
	}
}

// expireApprovals persists the expiry of approvals past their time, one
// audit line each.
func (n *Node) expireApprovals(ctx context.Context, m *approval.Manager) {
	expired, err := m.Expire(ctx)
	if err != nil {
		n.log.Warn("approval expiry sweep failed", "err", err)
	}
	for _, ap := range expired {
		n.log.Info("approval expired", "approval", ap.ID, "kind", ap.Kind)
		if n.Audit == nil {
			continue
		}
		e := &audit.Entry{Time: time.Now().UTC(), Operation: "approvals.expire", Subject: "moonvault",
			Account: ap.Account, Approval: ap.ID, ApprovalStatus: string(ap.Status)}
		if err := n.Audit.Record(ctx, e); err != nil {
			n.log.Error("approval expiry could not be audited", "approval", ap.ID, "err", err)
		}
	}
}
