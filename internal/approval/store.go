package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/storage"
)

// Storage layout (behind the barrier). Records are the truth; the indexes
// are written before the record and cleaned lazily, so an index entry may
// point at nothing (skipped) but a record is never missing from its index.
//
// Every index is bounded or swept (review L1): a requester has at most
// MaxPending open approvals; decided ones are removed, record and index
// entries, Retention after they were decided; lists are read a page at a
// time from a per-user index ordered newest first.
const (
	recordPrefix  = "approval/records/" // <id>
	userPrefix    = "approval/user/"    // <user>/<newest-first key>: requester, requester's owner, eligible voters
	openPrefix    = "approval/open/"    // <id>: pending or approved, for expiry sweeps
	pendingPrefix = "approval/pending/" // <requesting user>/<id>: open approvals per requester
	donePrefix    = "approval/done/"    // <decided at, ms, 12 hex>/<id>: for pruning
	layoutKey     = "approval/meta/layout"
	layoutVersion = "2"
	// The indexes of earlier builds, rewritten once by Migrate.
	oldUserPrefix  = "approval/by-user/"
	oldAdminPrefix = "approval/by-admin/"

	maxMillis = 1<<48 - 1 // 12 hex digits of milliseconds
	// listScan bounds the index entries one List call reads past the
	// ones it returns (a status filter that matches few): it then answers
	// what it found and a cursor.
	listScan  = 1000
	pruneBulk = 1000
)

// newestFirst is an approval's key in a user index: its id's milliseconds
// subtracted from the largest, so that ascending keys are newest first.
func newestFirst(id string) (string, bool) {
	if !idRE.MatchString(id) {
		return "", false
	}
	ms, err := strconv.ParseInt(id[4:16], 16, 64)
	if err != nil {
		return "", false
	}
	return fmt.Sprintf("%012x", maxMillis-ms) + id[16:], true
}

// idOf reverses newestFirst.
func idOf(key string) (string, bool) {
	if len(key) != 28 {
		return "", false
	}
	inv, err := strconv.ParseInt(key[:12], 16, 64)
	if err != nil {
		return "", false
	}
	id := fmt.Sprintf("apr_%012x", maxMillis-inv) + key[12:]
	return id, idRE.MatchString(id)
}

func userKey(user, id string) string {
	k, _ := newestFirst(id)
	return userPrefix + user + "/" + k
}

// requestingUser is whom an open approval counts against: the user, or
// the owner of the requesting API key.
func (a *Approval) requestingUser() string {
	if a.RequesterOwner != "" {
		return a.RequesterOwner
	}
	return a.Requester
}

// indexUsers are the users whose lists show a.
func (a *Approval) indexUsers() []string {
	users := append([]string{a.Requester}, a.voters()...)
	if a.RequesterOwner != "" {
		users = append(users, a.RequesterOwner)
	}
	slices.Sort(users)
	return slices.Compact(users)
}

func encode(a *Approval) ([]byte, error) {
	return json.Marshal(record{Approval: *a, Body: a.Request, Secret: a.secret})
}

func decode(raw []byte) (*Approval, error) {
	var r record
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, errkind.Wrap(errkind.Integrity, fmt.Errorf("approval record: %w", err))
	}
	a := r.Approval
	a.Request, a.secret = Body(r.Body), r.Secret
	return &a, nil
}

// create writes the indexes, then the record (create-only), unless the
// requester already has MaxPending open approvals.
func (m *Manager) create(ctx context.Context, a *Approval) error {
	if err := m.checkPending(ctx, a.requestingUser()); err != nil {
		return err
	}
	keys := []string{openPrefix + a.ID, pendingPrefix + a.requestingUser() + "/" + a.ID}
	for _, u := range a.indexUsers() {
		keys = append(keys, userKey(u, a.ID))
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

// checkPending refuses a new approval for user when MaxPending of theirs
// are open. Entries of approvals decided meanwhile (a node that could not
// drop the entry, an expiry not yet swept) are dropped here. Requests
// made at the same moment on several nodes may pass it together, so the
// bound can be exceeded by as many; it stays a bound.
func (m *Manager) checkPending(ctx context.Context, user string) error {
	prefix := pendingPrefix + user + "/"
	keys, err := m.kv.List(ctx, prefix, "", 0)
	if err != nil {
		return storageErr("count open approvals", err)
	}
	if len(keys) < m.maxPending {
		return nil
	}
	open := 0
	for _, k := range keys {
		a, err := m.Get(ctx, strings.TrimPrefix(k, prefix))
		switch {
		case errors.Is(err, ErrNotFound) || (err == nil && a.Status.Terminal()):
			_ = m.kv.Delete(ctx, k)
		case err != nil:
			return err
		default:
			open++
		}
	}
	if open >= m.maxPending {
		return fmt.Errorf("%w (%d open, approval_max_pending is %d)", ErrTooManyPending, open, m.maxPending)
	}
	return nil
}

// decided files a decided approval for pruning and drops it from the open
// indexes. A failure is logged: the expiry sweep finds the record through
// the open index, which is dropped last, and files it again.
func (m *Manager) decided(ctx context.Context, a *Approval) {
	at := min(max(a.UpdatedAt.UnixMilli(), 0), maxMillis)
	if err := m.kv.Put(ctx, fmt.Sprintf("%s%012x/%s", donePrefix, at, a.ID), nil); err != nil {
		m.log.Warn("approval: could not file a decided approval for pruning; the next sweep will", "approval", a.ID, "err", err)
		return
	}
	for _, k := range []string{pendingPrefix + a.requestingUser() + "/" + a.ID, openPrefix + a.ID} {
		if err := m.kv.Delete(ctx, k); err != nil {
			m.log.Warn("approval: could not drop an open index entry; the next sweep will", "approval", a.ID, "err", err)
		}
	}
}

// Filter selects approvals for List.
type Filter struct {
	// User lists what this user requested (or their API keys did) or may
	// vote on.
	User string
	// Status keeps only approvals in this status ("" any).
	Status Status
	// Limit bounds the answer (0: 100; at most 1000), newest first.
	Limit int
	// After continues a list: the Next of the previous page (an approval
	// id); the answer holds older approvals.
	After string
}

// ErrBadCursor: After is not a cursor List made.
var ErrBadCursor = &errkind.Field{Name: "after", Msg: "is not a cursor from a previous page (the next of its answer)"}

// List returns approvals of f.User, newest first, and the cursor of the
// next page ("" when there is none). It reads at most Limit + 1000 index
// entries: with a status filter that few match, a page may hold fewer than
// Limit approvals and still have a next.
func (m *Manager) List(ctx context.Context, f Filter) ([]*Approval, string, error) {
	if f.User == "" {
		return nil, "", errors.New("approval: List needs a user")
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	prefix := userPrefix + f.User + "/"
	after := ""
	if f.After != "" {
		k, ok := newestFirst(f.After)
		if !ok {
			return nil, "", ErrBadCursor
		}
		after = prefix + k
	}
	out := []*Approval{}
	for scanned := 0; scanned < limit+listScan; {
		keys, err := m.kv.List(ctx, prefix, after, min(limit+1, 256))
		if err != nil {
			return nil, "", storageErr("list approvals", err)
		}
		if len(keys) == 0 {
			return out, "", nil
		}
		for _, k := range keys {
			after = k
			scanned++
			id, ok := idOf(strings.TrimPrefix(k, prefix))
			if !ok {
				continue
			}
			a, err := m.Get(ctx, id)
			if errors.Is(err, ErrNotFound) {
				continue // an index written before a record that never was, or pruned
			}
			if err != nil {
				return nil, "", err
			}
			if f.Status == "" || a.Status == f.Status {
				out = append(out, a)
			}
			if len(out) == limit {
				more, err := m.kv.List(ctx, prefix, after, 1)
				if err != nil {
					return nil, "", storageErr("list approvals", err)
				}
				if len(more) == 0 {
					return out, "", nil
				}
				return out, id, nil
			}
		}
	}
	id, _ := idOf(strings.TrimPrefix(after, prefix))
	return out, id, nil
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
		case errors.Is(err, errTerminal):
			// Decided on a node that could not file it: file it now.
			if cur, gerr := m.Get(ctx, id); gerr == nil {
				m.decided(ctx, cur)
			}
		case errors.Is(err, ErrNotFound):
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

// Prune removes approvals decided more than Retention ago, records and
// index entries (the audit log keeps their history), at most 1000 a call,
// oldest first, and returns how many. Run it periodically on any node.
func (m *Manager) Prune(ctx context.Context) (int, error) {
	cutoff := m.now().Add(-m.retention).UnixMilli()
	keys, err := m.kv.List(ctx, donePrefix, "", pruneBulk)
	if err != nil {
		return 0, storageErr("list decided approvals", err)
	}
	n := 0
	for _, k := range keys {
		msHex, id, ok := strings.Cut(strings.TrimPrefix(k, donePrefix), "/")
		ms, perr := strconv.ParseInt(msHex, 16, 64)
		if !ok || perr != nil || !idRE.MatchString(id) {
			_ = m.kv.Delete(ctx, k)
			continue
		}
		if ms > cutoff {
			break // the rest are newer
		}
		if err := m.remove(ctx, id); err != nil {
			return n, err
		}
		if err := m.kv.Delete(ctx, k); err != nil {
			return n, storageErr("prune approval", err)
		}
		n++
	}
	return n, nil
}

// remove deletes an approval's index entries, then its record.
func (m *Manager) remove(ctx context.Context, id string) error {
	raw, err := m.kv.Get(ctx, recordPrefix+id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return storageErr("prune approval", err)
	}
	a, err := decode(raw)
	if err != nil {
		m.log.Warn("approval: pruning a record that fails to decode", "approval", id, "err", err)
		a = &Approval{ID: id}
	}
	keys := []string{openPrefix + id}
	if a.Requester != "" {
		keys = append(keys, pendingPrefix+a.requestingUser()+"/"+id)
	}
	for _, u := range a.indexUsers() {
		if u != "" {
			keys = append(keys, userKey(u, id))
		}
	}
	keys = append(keys, recordPrefix+id)
	for _, k := range keys {
		if err := m.kv.Delete(ctx, k); err != nil {
			return storageErr("prune approval", err)
		}
	}
	return nil
}

// Migrate rewrites the indexes of earlier builds (approval/by-user/,
// approval/by-admin/, one unbounded list per user) into this layout, once;
// every node may run it at unseal (it is idempotent). Approvals made
// before eligible voters were frozen have none: those still pending cannot
// be approved and expire (review H1; ask again).
func (m *Manager) Migrate(ctx context.Context) error {
	if v, err := m.kv.Get(ctx, layoutKey); err == nil && string(v) == layoutVersion {
		return nil
	} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return storageErr("read approval layout", err)
	}
	after := ""
	for {
		keys, err := m.kv.List(ctx, recordPrefix, after, 256)
		if err != nil {
			return storageErr("migrate approvals", err)
		}
		if len(keys) == 0 {
			break
		}
		for _, k := range keys {
			after = k
			a, err := m.load(ctx, strings.TrimPrefix(k, recordPrefix))
			if errors.Is(err, ErrNotFound) || errkind.Of(err) == errkind.Integrity {
				continue
			}
			if err != nil {
				return err
			}
			idx := []string{}
			for _, u := range a.indexUsers() {
				idx = append(idx, userKey(u, a.ID))
			}
			if a.Status.Terminal() {
				at := min(max(a.UpdatedAt.UnixMilli(), 0), maxMillis)
				idx = append(idx, fmt.Sprintf("%s%012x/%s", donePrefix, at, a.ID))
			} else {
				idx = append(idx, pendingPrefix+a.requestingUser()+"/"+a.ID, openPrefix+a.ID)
			}
			for _, key := range idx {
				if err := m.kv.Put(ctx, key, nil); err != nil {
					return storageErr("migrate approvals", err)
				}
			}
		}
	}
	for _, prefix := range []string{oldUserPrefix, oldAdminPrefix} {
		for {
			keys, err := m.kv.List(ctx, prefix, "", 256)
			if err != nil {
				return storageErr("migrate approvals", err)
			}
			if len(keys) == 0 {
				break
			}
			for _, k := range keys {
				if err := m.kv.Delete(ctx, k); err != nil {
					return storageErr("migrate approvals", err)
				}
			}
		}
	}
	if err := m.kv.Put(ctx, layoutKey, []byte(layoutVersion)); err != nil {
		return storageErr("migrate approvals", err)
	}
	return nil
}
