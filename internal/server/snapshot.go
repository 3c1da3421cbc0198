package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/moonvault/moonvault/internal/core"
	"github.com/moonvault/moonvault/internal/errkind"
	"github.com/moonvault/moonvault/internal/snapshot"
	"github.com/moonvault/moonvault/internal/storage"
)

const (
	// snapshotSigningKey is the seed of the Ed25519 key that signs this
	// vault's snapshots: a seal-wrapped CSP behind the barrier, so it is
	// itself in every snapshot and a restored vault keeps its identity.
	snapshotSigningKey = "sys/snapshot/signing-key"
	// restoreMarker is written by every restore, outside the barrier: who
	// restored what, so that other nodes notice and a restored vault checks
	// its snapshot's signer at unseal.
	restoreMarker = "core/restore"
)

var (
	errNoSnapshots = errkind.New(errkind.Invalid, "not_supported", "this storage backend does not support snapshots")
	// errRestoreNeedsInit: there is no unauthenticated restore; a new
	// vault is initialised first and restored by its admin.
	errRestoreNeedsInit = errkind.New(errkind.Conflict, "not_initialized",
		"the vault is not initialised: initialise it (moonvault operator init), then restore with -force using its root token (docs/operations.md)")
	// errVaultChanged: the vault the restore was authorised against
	// changed before the switch (another node restored, rotated or
	// rekeyed it); nothing changed.
	errVaultChanged = errkind.New(errkind.Conflict, "vault_changed",
		"the vault changed while the snapshot was uploading (its keyring was rotated or rekeyed, or another restore ran); nothing was restored: check the vault and run the restore again")
	// errForgedSnapshot: the restored data does not hold the key that
	// signed the snapshot, so the snapshot was not made by this vault.
	errForgedSnapshot = errkind.New(errkind.Integrity, "snapshot_signer_mismatch",
		"the restored snapshot was not signed by the vault it contains (its signing key is not the one inside the data); the vault stays sealed: restore a genuine snapshot")
)

// marker is the JSON at core/restore.
type marker struct {
	ID         string    `json:"id"`
	RestoredAt time.Time `json:"restored_at"`
	CreatedAt  time.Time `json:"snapshot_created_at"`
	Storage    string    `json:"snapshot_storage"`
	Records    int64     `json:"records"`
	// PublicKey is the key that signed the snapshot; the restored vault
	// must hold its private half (checked at every unseal).
	PublicKey []byte `json:"public_key"`
}

// restoreState is what a node knows about restores.
type restoreState struct {
	seenID atomic.Pointer[string] // marker id at the last unseal
	// autoUnsealing is set while a loop started by a restore runs.
	autoUnsealing atomic.Bool
}

func (n *Node) snapshotKey(ctx context.Context) (ed25519.PrivateKey, error) {
	seed, err := n.loadOrCreateCSP(ctx, snapshotSigningKey, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("snapshot signing key: %w", err)
	}
	defer seed.Destroy()
	return ed25519.NewKeyFromSeed(seed), nil
}

// Snapshot opens a consistent view of storage and returns the function that
// streams it as a signed snapshot. The signing key exists before the view
// is taken, so every snapshot contains the key that signed it.
func (n *Node) Snapshot(ctx context.Context) (func(w io.Writer) error, error) {
	if n.Core.Sealed() {
		return nil, core.ErrSealed
	}
	snap, ok := n.store.(storage.Snapshotter)
	if !ok {
		return nil, errNoSnapshots
	}
	key, err := n.snapshotKey(ctx)
	if err != nil {
		return nil, err
	}
	view, err := snap.View(ctx)
	if err != nil {
		clear(key)
		return nil, fmt.Errorf("open storage view: %w", err)
	}
	hdr := snapshot.Header{Storage: n.cfg.Storage.Kind, Term: n.barrier.Status().Term, Seal: n.Core.SealType(), CreatedAt: time.Now().UTC()}
	// The request context may end before the stream is written (a refused
	// audit line); the view must not outlive it.
	stop := context.AfterFunc(ctx, func() {
		_ = view.Close()
		clear(key)
	})
	return func(w io.Writer) error {
		if !stop() {
			return context.Cause(ctx) // the view was closed unused
		}
		defer view.Close()
		defer clear(key)
		start := time.Now()
		h, err := snapshot.Write(ctx, w, hdr, view, key)
		if err != nil {
			n.log.Error("snapshot stream failed", "err", err)
			return err
		}
		n.log.Info("snapshot taken", "records", h.Records, "term", h.Term, "duration", time.Since(start).String())
		n.Metrics.SnapshotTaken(time.Now())
		return nil
	}, nil
}

// RestoreResult describes a finished restore.
type RestoreResult struct {
	Header snapshot.Header
	Sealed bool
	// Rollback: the snapshot is of this vault, so the restore took it back
	// to an older state; Foreign: it was another vault's.
	Rollback, Foreign bool
	// Replaced is where the replaced data is kept.
	Replaced storage.ReplacedCopy
}

// RestoreOptions qualify a restore.
type RestoreOptions struct {
	// Force replaces the vault with another vault's snapshot, or rolls it
	// back to an older snapshot of its own (every restore over a vault
	// in use is one or the other).
	Force bool
	// Exclusive, when set, runs the switch with no other request in
	// flight on this node (the HTTP layer's gate).
	Exclusive func(fn func() error) error
}

// restoreGuards are the live records a restore is authorised against: the
// switch happens only if they are unchanged (storage.Staging.Expect).
var restoreGuards = []string{"core/keyring", restoreMarker}

// Restore replaces the storage of this initialised, unsealed vault with a
// snapshot read from r: verified while it is staged beside the live data,
// switched in one step, and only then is anything changed. The caller has
// authorised it (an admin with step-up). A snapshot of another vault, or
// of this one (a rollback), needs opts.Force. The node is sealed before
// the switch; it unseals as the snapshot's vault did (auto-unseal with the
// same HSM key starts at once; Shamir waits for the operators' shares).
// The replaced data is kept for restore_retention.
func (n *Node) Restore(ctx context.Context, r io.Reader, opts RestoreOptions) (*RestoreResult, error) {
	rs, own, err := n.restoreTarget(ctx)
	if err != nil {
		return nil, err
	}
	guards, err := n.readGuards(ctx)
	if err != nil {
		return nil, err
	}
	stage, err := rs.BeginRestore(ctx)
	if err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			_ = stage.Abort()
		}
	}()
	start := time.Now()
	hdr, err := snapshot.Read(ctx, r, snapshot.Handler{
		Record: func(key string, value []byte) error {
			if key == restoreMarker {
				return nil // replaced by this restore's marker
			}
			return stage.Put(ctx, key, value)
		},
	})
	if err != nil {
		return nil, err
	}
	// Checked once the file is known intact, so a damaged file is reported
	// as damaged whoever made it.
	foreign := !bytes.Equal(hdr.PublicKey, own)
	if !opts.Force {
		if foreign {
			return nil, snapshot.ErrForeign
		}
		return nil, errRollback(hdr.CreatedAt)
	}
	for k, v := range guards {
		stage.Expect(k, v)
	}
	m := marker{ID: newID(), RestoredAt: time.Now().UTC(), CreatedAt: hdr.CreatedAt, Storage: hdr.Storage, Records: hdr.Records, PublicKey: hdr.PublicKey}
	raw, _ := json.Marshal(m)
	if err := stage.Put(ctx, restoreMarker, raw); err != nil {
		return nil, err
	}
	if n.testRestoreStaged != nil {
		n.testRestoreStaged()
	}
	commit := func() error {
		if err := n.switchToRestored(ctx, stage, guards); err != nil {
			return err
		}
		committed = true
		return nil
	}
	if opts.Exclusive != nil {
		err = opts.Exclusive(commit)
	} else {
		err = commit()
	}
	if err != nil {
		return nil, err
	}
	replaced := stage.Replaced()
	what := "replaced the vault with another vault's snapshot"
	if !foreign {
		what = "ROLLED BACK the vault to an older snapshot of itself: everything since was lost, and sessions and API keys revoked since, users deleted or disabled since, are valid again until revoked again"
	}
	n.log.Warn("storage restored from a snapshot: "+what+"; the vault is sealed and unseals as the snapshot's vault did",
		"rollback", !foreign, "records", hdr.Records, "snapshot_storage", hdr.Storage, "snapshot_created_at", hdr.CreatedAt,
		"term", hdr.Term, "duration", time.Since(start).String(), "restore_id", m.ID,
		"replaced_copy", replaced.Name, "kept_for", n.cfg.Restore.Retention.String())
	n.pruneReplaced(ctx, rs, replaced.Name)
	n.kickAutoUnseal()
	return &RestoreResult{Header: *hdr, Sealed: n.Core.Sealed(), Rollback: !foreign, Foreign: foreign, Replaced: replaced}, nil
}

// restoreTarget is this node's storage, if it can restore and the vault is
// initialised and unsealed, and the vault's snapshot public key (to tell
// its own snapshots from another vault's).
func (n *Node) restoreTarget(ctx context.Context) (storage.Restorer, ed25519.PublicKey, error) {
	rs, ok := n.store.(storage.Restorer)
	if !ok {
		return nil, nil, errNoSnapshots
	}
	st, err := n.Core.Status(ctx)
	if err != nil {
		return nil, nil, err
	}
	if !st.Initialized {
		return nil, nil, errRestoreNeedsInit
	}
	if st.Sealed {
		return nil, nil, core.ErrSealed
	}
	key, err := n.snapshotKey(ctx)
	if err != nil {
		return nil, nil, err
	}
	own := key.Public().(ed25519.PublicKey)
	clear(key)
	return rs, own, nil
}

// switchToRestored switches the storage to the staged snapshot, if the
// guards are unchanged. The node is sealed first, so that no service
// writes with the old keyring into the restored storage; if the switch
// did not happen, auto-unseal brings it back as it was.
func (n *Node) switchToRestored(ctx context.Context, stage storage.Staging, guards map[string][]byte) error {
	// The same check as the switch makes, before sealing: a vault changed
	// meanwhile is reported without sealing it for nothing.
	now, err := n.readGuards(ctx)
	if err != nil {
		return err
	}
	for k, v := range guards {
		if w := now[k]; (w == nil) != (v == nil) || !bytes.Equal(w, v) {
			return errVaultChanged
		}
	}
	n.Core.Seal()
	err = stage.Commit(ctx)
	switch {
	case err == nil:
	case errors.Is(err, storage.ErrRestoreNotDurable):
		// The switch happened: the node serves the restored data. A crash
		// before the storage makes it durable may bring the old data back;
		// the operator is told to check.
		n.log.Error("the restore switched the storage, but making the switch durable failed: after a crash the replaced data may be back; check the vault after any restart", "err", err)
	case errors.Is(err, storage.ErrConflict):
		n.kickAutoUnseal() // nothing changed: come back as before
		return fmt.Errorf("%w (%v)", errVaultChanged, err)
	default:
		n.kickAutoUnseal()
		return fmt.Errorf("switch to the restored storage: %w", err)
	}
	return nil
}

// errRollback refuses, without force, a snapshot of this vault: restoring
// it takes the vault back to when it was made.
func errRollback(at time.Time) error {
	return &errkind.Error{Kind: errkind.Conflict, Code: "snapshot_rollback", Msg: fmt.Sprintf(
		"the snapshot is of this vault, made %s (%s ago): restoring it rolls the vault back to then: everything since is lost, and sessions and API keys revoked since, and users deleted or disabled since, become valid again; restore it with force if that is what you want",
		at.UTC().Format(time.RFC3339), time.Since(at).Round(time.Second))}
}

// readGuards reads the live values of restoreGuards (nil: absent).
func (n *Node) readGuards(ctx context.Context) (map[string][]byte, error) {
	out := make(map[string][]byte, len(restoreGuards))
	for _, k := range restoreGuards {
		v, err := n.store.Get(ctx, k)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			out[k] = nil
		case err != nil:
			return nil, fmt.Errorf("read %s: %w", k, err)
		default:
			if v == nil {
				v = []byte{}
			}
			out[k] = v
		}
	}
	return out, nil
}

// pruneReplaced drops the copies of replaced data older than
// restore_retention, never keep (the one this restore made).
func (n *Node) pruneReplaced(ctx context.Context, rs storage.Restorer, keep string) {
	retention := n.cfg.Restore.Retention
	copies, err := rs.ReplacedCopies(ctx)
	if err != nil {
		n.log.Warn("could not list the data kept by earlier restores", "err", err)
		return
	}
	for _, c := range copies {
		if c.Name == keep || time.Since(c.At) < retention {
			continue
		}
		if err := rs.DropReplaced(ctx, c.Name); err != nil {
			n.log.Warn("could not drop data kept by an earlier restore", "name", c.Name, "err", err)
			continue
		}
		n.log.Info("dropped data kept by an earlier restore (older than restore_retention)", "name", c.Name, "replaced_at", c.At)
	}
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on Linux; an id is not secret
	return hex.EncodeToString(b[:])
}

// kickAutoUnseal starts an auto-unseal loop when the node has an HSM and no
// loop started here is running (the start-up loop ends once unsealed).
func (n *Node) kickAutoUnseal() {
	if n.hsm == nil || n.runCtx == nil || !n.restore.autoUnsealing.CompareAndSwap(false, true) {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer n.restore.autoUnsealing.Store(false)
		n.Core.RunAutoUnseal(n.runCtx, time.Second, 30*time.Second)
	}()
}

func (n *Node) readMarker(ctx context.Context) (*marker, error) {
	raw, err := n.store.Get(ctx, restoreMarker)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m marker
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s is corrupt: %w", restoreMarker, err)
	}
	return &m, nil
}

// checkRestored runs at every unseal: when the storage came from a
// snapshot, the vault inside it must hold the key that signed the
// snapshot. A snapshot rewritten and re-signed by anyone else (who cannot
// make a barrier record) fails here, and the vault stays sealed.
func (n *Node) checkRestored(ctx context.Context) error {
	m, err := n.readMarker(ctx)
	if err != nil {
		return err
	}
	if m == nil {
		n.restore.seenID.Store(new(string))
		return nil
	}
	env, err := n.barrier.Get(ctx, snapshotSigningKey)
	if errors.Is(err, storage.ErrNotFound) {
		n.log.Error("refusing to unseal restored data", "err", errForgedSnapshot, "restore_id", m.ID)
		return errForgedSnapshot
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", snapshotSigningKey, err)
	}
	seed, err := n.sealer.Unwrap(ctx, snapshotSigningKey, env)
	if err != nil {
		return fmt.Errorf("unwrap %s: %w", snapshotSigningKey, err)
	}
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	seed.Destroy()
	if !bytes.Equal(pub, m.PublicKey) {
		n.log.Error("refusing to unseal restored data", "err", errForgedSnapshot, "restore_id", m.ID)
		return errForgedSnapshot
	}
	id := m.ID
	n.restore.seenID.Store(&id)
	return nil
}

// watchRestores seals this node when another node restores the shared
// storage (PostgreSQL): the keyring in memory belongs to the replaced data,
// and writing with it would leave records nobody can read. A resync
// notification (the listener reconnected) checks too, so a missed
// notification is caught.
func (n *Node) watchRestores() {
	sub, ok := n.store.(storage.Subscriber)
	if !ok {
		return
	}
	kick := make(chan struct{}, 1)
	cancel := sub.Subscribe(func(key string) {
		if key == "" || key == restoreMarker {
			select {
			case kick <- struct{}{}:
			default:
			}
		}
	})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer cancel()
		for {
			select {
			case <-n.runCtx.Done():
				return
			case <-kick:
				n.checkForeignRestore()
			}
		}
	}()
}

func (n *Node) checkForeignRestore() {
	if n.Core.Sealed() {
		return // the next unseal reads the restored data
	}
	ctx, cancel := context.WithTimeout(n.runCtx, 30*time.Second)
	defer cancel()
	m, err := n.readMarker(ctx)
	if err != nil {
		n.log.Warn("could not check for a restore by another node", "err", err)
		return
	}
	seen := n.restore.seenID.Load()
	if m == nil || seen == nil || m.ID == *seen {
		return
	}
	n.log.Warn("the storage was restored from a snapshot by another node; sealing to reload it", "restore_id", m.ID)
	n.Core.Seal()
	n.kickAutoUnseal()
}
