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
}

// Restore replaces the storage with a snapshot read from r: verified while
// it is staged, switched in one step, and only then is anything changed.
// The node is sealed before the switch; it unseals as the snapshot's vault
// did (auto-unseal with the same HSM key starts at once; Shamir waits for
// the operators' shares). Over an initialised vault the snapshot must be
// signed by this vault's key, unless force.
func (n *Node) Restore(ctx context.Context, r io.Reader, force bool) (*RestoreResult, error) {
	rs, ok := n.store.(storage.Restorer)
	if !ok {
		return nil, errNoSnapshots
	}
	st, err := n.Core.Status(ctx)
	if err != nil {
		return nil, err
	}
	var own ed25519.PublicKey
	if st.Initialized {
		if st.Sealed {
			return nil, core.ErrSealed
		}
		key, err := n.snapshotKey(ctx)
		if err != nil {
			return nil, err
		}
		own = key.Public().(ed25519.PublicKey)
		clear(key)
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
	if own != nil && !force && !bytes.Equal(hdr.PublicKey, own) {
		return nil, snapshot.ErrForeign
	}
	m := marker{ID: newID(), RestoredAt: time.Now().UTC(), CreatedAt: hdr.CreatedAt, Storage: hdr.Storage, Records: hdr.Records, PublicKey: hdr.PublicKey}
	raw, _ := json.Marshal(m)
	if err := stage.Put(ctx, restoreMarker, raw); err != nil {
		return nil, err
	}
	// Seal first: no service may write with the old keyring into the
	// restored storage. The switch below then changes everything at once.
	n.Core.Seal()
	if err := stage.Commit(ctx); err != nil {
		n.kickAutoUnseal() // nothing changed: come back as before
		return nil, fmt.Errorf("switch to the restored storage: %w", err)
	}
	committed = true
	n.log.Warn("storage restored from a snapshot; the vault is sealed and unseals as the snapshot's vault did",
		"records", hdr.Records, "snapshot_storage", hdr.Storage, "snapshot_created_at", hdr.CreatedAt, "term", hdr.Term,
		"duration", time.Since(start).String(), "restore_id", m.ID)
	n.kickAutoUnseal()
	return &RestoreResult{Header: *hdr, Sealed: n.Core.Sealed()}, nil
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
