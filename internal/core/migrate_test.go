package core

import (
	"context"
	"errors"
	"testing"

	"github.com/moonvault/moonvault/internal/barrier"
	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

// failingBatch fails every Batch that touches key (a crash at that write).
type failingBatch struct {
	storage.Backend
	key string
}

func (f failingBatch) Batch(ctx context.Context, ops []storage.Op) error {
	for _, op := range ops {
		if op.Key == f.key {
			return errors.New("injected: storage went away")
		}
	}
	return f.Backend.Batch(ctx, ops)
}

// TestMigrationNewRootAndResume (issue 13 item 10): a Shamir -> HSM
// migration moves the keyring to a new root key, so the old unseal key
// opens nothing afterwards; when the last write of the migration fails
// (the keyring already switched, core/root-key still the old one), the
// recovery shares are still returned and the next auto-unseal finishes the
// job from core/root-key-next.
func TestMigrationNewRootAndResume(t *testing.T) {
	ctx := context.Background()
	st := openBolt(t, t.TempDir())
	n := newNode(t, st, nil)
	res, err := n.core.Init(ctx, InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	oldRoot := res.Keys[0]
	n.core.Seal()

	hsm := newSoftSeal(t)
	m := newNode(t, failingBatch{Backend: st, key: keyNextRoot}, hsm)
	stt, rec, err := m.core.UnsealMigrate(ctx, oldRoot)
	if err != nil || stt.Sealed || len(rec) != 1 {
		t.Fatalf("migration whose last write fails: %+v, %d recovery shares, %v", stt, len(rec), err)
	}
	if !errors.Is(m.barrier.CheckRoot(ctx, oldRoot, nil), barrier.ErrWrongRootKey) {
		t.Fatal("the keyring still opens with the old root key")
	}
	m.core.Seal()
	if _, err := st.Get(ctx, keyNextRoot); err != nil {
		t.Fatalf("core/root-key-next: %v", err)
	}

	// The old unseal key opens nothing: not the keyring, with or without
	// the seal wrap.
	b := barrier.New(st, barrier.Options{})
	if err := b.Unseal(ctx, secret.Bytes(oldRoot), nil); err == nil {
		t.Fatal("old unseal key opens the keyring")
	}

	// The next start finishes the migration by itself.
	r := newNode(t, st, hsm)
	if err := r.core.AutoUnseal(ctx); err != nil || r.core.Sealed() {
		t.Fatalf("auto-unseal after the interrupted migration: %v", err)
	}
	if _, err := st.Get(ctx, keyNextRoot); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("core/root-key-next after resuming: %v", err)
	}
	if err := r.core.VerifyShares(ctx, [][]byte{rec[0]}); err != nil {
		t.Fatalf("the recovery share returned by the interrupted migration: %v", err)
	}
	r.core.Seal()
	again := newNode(t, st, hsm)
	if err := again.core.AutoUnseal(ctx); err != nil {
		t.Fatalf("auto-unseal once finished: %v", err)
	}
}
