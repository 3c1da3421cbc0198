package signpolicy

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/storage"
)

// Storage is what the engine needs from the vault's storage; the barrier
// implements it. Get returns an error wrapping storage.ErrNotFound for a
// missing key. Update is an atomic read-modify-write across every node
// (compare-and-swap underneath, retried on conflict); fn may run more than
// once and must have no side effects beyond its result.
type Storage interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, value []byte) error
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, prefix, after string, limit int) ([]string, error)
	Updater
}

// Updater is the atomic read-modify-write of barrier.Barrier.Update.
type Updater interface {
	Update(ctx context.Context, key string, fn func(cur []byte, found bool) (next []byte, del bool, err error)) error
}

// Storage layout (behind the barrier).
const (
	// PolicyPrefix holds the head record of each policy: the current
	// version. Phase 2 subscribes to it (PostgreSQL NOTIFY) and calls
	// Engine.Changed, so that every node sees a new policy at once.
	PolicyPrefix  = "signpolicy/policies/"
	versionPrefix = "signpolicy/versions/"
	limitPrefix   = "signpolicy/limits/"
)

// Errors of the store.
var (
	ErrNotFound = errkind.New(errkind.NotFound, "policy_not_found", "policy not found")
	// ErrExists: a create of an id that exists (a change applied twice).
	ErrExists = errkind.New(errkind.Conflict, "policy_exists", "policy id already exists")
	// ErrVersionConflict: the policy changed since the version the caller
	// read (optimistic concurrency, If-Match style).
	ErrVersionConflict = errkind.New(errkind.Conflict, "policy_version_conflict", "the policy was changed by someone else; read it again")
)

// Operations recorded in a version.
const (
	OpCreate = "create"
	OpUpdate = "update"
	OpDelete = "delete"
)

// Actor is who made a change: the user, and for a change that went through
// an approval (policy_change_approvals), the approval and its approvers.
type Actor struct {
	User       string
	ApprovedBy []string
	Approval   string
}

// Policy is the current version of a stored policy.
type Policy struct {
	ID      string `json:"id"`
	Version int    `json:"version"`
	Document
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedBy string    `json:"updated_by"`
	UpdatedAt time.Time `json:"updated_at"`
	// Deleted marks the head of a deleted policy; its history stays.
	Deleted bool `json:"deleted,omitempty"`
}

// Version is one immutable entry of a policy's history.
type Version struct {
	ID         string    `json:"id"`
	Version    int       `json:"version"`
	Op         string    `json:"op"`
	Document   *Document `json:"document,omitempty"` // the policy after the change; nil for a delete
	By         string    `json:"by"`
	ApprovedBy []string  `json:"approved_by,omitempty"`
	Approval   string    `json:"approval,omitempty"`
	At         time.Time `json:"at"`
}

var policyIDRE = regexp.MustCompile(`^pol_[a-z2-7]{26}$`)

// ValidID reports whether id has the form of a policy id.
func ValidID(id string) bool { return policyIDRE.MatchString(id) }

// NewID returns a fresh policy id (for a create that waits for approval:
// the id is fixed when the change is requested, so applying it twice
// cannot create two policies).
func NewID() string { return "pol_" + strings.ToLower(rand.Text()) }

func headKey(id string) string              { return PolicyPrefix + id }
func versionKey(id string, v int) string    { return fmt.Sprintf("%s%s/%010d", versionPrefix, id, v) }
func limitKey(id, account string) string    { return limitPrefix + id + "/" + account }
func versionListPrefix(id string) string    { return versionPrefix + id + "/" }
func policyIDFromKey(key string) string     { return strings.TrimPrefix(key, PolicyPrefix) }
func isPolicyKey(key string) bool           { return strings.HasPrefix(key, PolicyPrefix) }
func notFound(id string) error              { return fmt.Errorf("%w: %s", ErrNotFound, id) }
func storageErr(op string, err error) error { return fmt.Errorf("signpolicy: %s: %w", op, err) }

var errLostRace = errors.New("signpolicy: lost a race for the version slot")

// store keeps every version of every policy. A change first claims the
// version slot n+1 (created only if absent), then moves the head from n to
// n+1; a change interrupted between the two is rolled forward by the next
// writer, so history and head never disagree for long and no version is
// ever overwritten.
type store struct {
	kv  Storage
	now func() time.Time
}

func (s *store) getHead(ctx context.Context, id string) (*Policy, bool, error) {
	raw, err := s.kv.Get(ctx, headKey(id))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, storageErr("read policy "+id, err)
	}
	var p Policy
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, false, storageErr("decode policy "+id, errkind.Wrap(errkind.Integrity, err))
	}
	return &p, true, nil
}

func (s *store) getVersion(ctx context.Context, id string, v int) (*Version, bool, error) {
	raw, err := s.kv.Get(ctx, versionKey(id, v))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, storageErr("read policy version", err)
	}
	var ver Version
	if err := json.Unmarshal(raw, &ver); err != nil {
		return nil, false, storageErr("decode policy version", errkind.Wrap(errkind.Integrity, err))
	}
	return &ver, true, nil
}

// write records a change. ifVersion, when not zero, must be the current
// version (optimistic concurrency).
func (s *store) write(ctx context.Context, id, op string, doc *Document, actor Actor, ifVersion int) (*Policy, error) {
	for range 20 {
		head, found, err := s.getHead(ctx, id)
		if err != nil {
			return nil, err
		}
		n := 0
		if found {
			n = head.Version
		}
		// Roll forward a change that claimed its slot but did not finish.
		if pending, ok, err := s.getVersion(ctx, id, n+1); err != nil {
			return nil, err
		} else if ok {
			if err := s.advance(ctx, pending); err != nil {
				return nil, err
			}
			continue
		}
		switch {
		case op == OpCreate && found:
			return nil, ErrExists
		case op != OpCreate && (!found || head.Deleted):
			return nil, notFound(id)
		case ifVersion != 0 && n != ifVersion:
			return nil, fmt.Errorf("%w (current version %d, expected %d)", ErrVersionConflict, n, ifVersion)
		}
		ver := &Version{ID: id, Version: n + 1, Op: op, By: actor.User,
			ApprovedBy: actor.ApprovedBy, Approval: actor.Approval, At: s.now().UTC()}
		if op != OpDelete {
			ver.Document = doc
		}
		raw, err := json.Marshal(ver)
		if err != nil {
			return nil, err
		}
		err = s.kv.Update(ctx, versionKey(id, n+1), func(_ []byte, exists bool) ([]byte, bool, error) {
			if exists {
				return nil, false, errLostRace
			}
			return raw, false, nil
		})
		if errors.Is(err, errLostRace) {
			continue
		}
		if err != nil {
			return nil, storageErr("write policy version", err)
		}
		if err := s.advance(ctx, ver); err != nil {
			return nil, err
		}
		return headFrom(head, ver), nil
	}
	return nil, fmt.Errorf("signpolicy: too many concurrent changes to policy %s: %w", id, storage.ErrConflict)
}

// headFrom is the head after ver is applied to prev (nil: none).
func headFrom(prev *Policy, ver *Version) *Policy {
	p := &Policy{ID: ver.ID, Version: ver.Version, UpdatedBy: ver.By, UpdatedAt: ver.At,
		CreatedBy: ver.By, CreatedAt: ver.At}
	if prev != nil && ver.Op != OpCreate {
		p.CreatedBy, p.CreatedAt = prev.CreatedBy, prev.CreatedAt
		p.Document = prev.Document
	}
	if ver.Document != nil {
		p.Document = *ver.Document
	}
	p.Deleted = ver.Op == OpDelete
	return p
}

// advance moves the head to ver if it is still at ver.Version-1.
func (s *store) advance(ctx context.Context, ver *Version) error {
	err := s.kv.Update(ctx, headKey(ver.ID), func(cur []byte, found bool) ([]byte, bool, error) {
		n := 0
		var base *Policy
		if found {
			var p Policy
			if err := json.Unmarshal(cur, &p); err != nil {
				return nil, false, errkind.Wrap(errkind.Integrity, err)
			}
			n, base = p.Version, &p
		}
		if n >= ver.Version {
			return nil, false, errAlreadyAdvanced
		}
		if n != ver.Version-1 {
			return nil, false, fmt.Errorf("signpolicy: policy %s head at %d, cannot apply version %d", ver.ID, n, ver.Version)
		}
		return mustJSON(headFrom(base, ver)), false, nil
	})
	if err != nil && !errors.Is(err, errAlreadyAdvanced) {
		return storageErr("write policy", err)
	}
	return nil
}

var errAlreadyAdvanced = errors.New("already advanced")

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("signpolicy: marshal %T: %v", v, err)) // only plain structs are marshalled
	}
	return b
}

// get returns the current version of a policy.
func (s *store) get(ctx context.Context, id string) (*Policy, error) {
	if !ValidID(id) {
		return nil, notFound(id)
	}
	p, found, err := s.getHead(ctx, id)
	if err != nil {
		return nil, err
	}
	if !found || p.Deleted {
		return nil, notFound(id)
	}
	return p, nil
}

// list returns every head, deleted ones included, ordered by name then id.
func (s *store) listAll(ctx context.Context) ([]*Policy, error) {
	var out []*Policy
	after := ""
	for {
		keys, err := s.kv.List(ctx, PolicyPrefix, after, 500)
		if err != nil {
			return nil, storageErr("list policies", err)
		}
		for _, k := range keys {
			p, found, err := s.getHead(ctx, policyIDFromKey(k))
			if err != nil {
				return nil, err
			}
			if found {
				out = append(out, p)
			}
		}
		if len(keys) < 500 {
			break
		}
		after = keys[len(keys)-1]
	}
	slices.SortFunc(out, func(a, b *Policy) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// versions returns the history of a policy, oldest first.
func (s *store) versions(ctx context.Context, id string) ([]*Version, error) {
	if !ValidID(id) {
		return nil, notFound(id)
	}
	keys, err := s.kv.List(ctx, versionListPrefix(id), "", 0)
	if err != nil {
		return nil, storageErr("list policy versions", err)
	}
	out := make([]*Version, 0, len(keys))
	for _, k := range keys {
		raw, err := s.kv.Get(ctx, k)
		if err != nil {
			return nil, storageErr("read policy version", err)
		}
		var v Version
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, storageErr("decode policy version", errkind.Wrap(errkind.Integrity, err))
		}
		out = append(out, &v)
	}
	if len(out) == 0 {
		return nil, notFound(id)
	}
	return out, nil
}
