package postgres_test

import (
	"testing"

	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/postgres"
	"github.com/moonvault/moonvault/internal/storage/postgres/pgtest"
	"github.com/moonvault/moonvault/internal/storage/storagetest"
)

func TestSnapshotContract(t *testing.T) {
	storagetest.RunSnapshot(t, func(t *testing.T) storage.Backend {
		b, err := postgres.Open(t.Context(), pgtest.NewDatabase(t), testLogger(t))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return b
	})
}

// TestRestoreSeenByOtherNode: a second node on the same database reads the
// restored rows at once and is told to resync.
func TestRestoreSeenByOtherNode(t *testing.T) {
	url := pgtest.NewDatabase(t)
	a, err := postgres.Open(t.Context(), url, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := postgres.Open(t.Context(), url, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Put(t.Context(), "k", []byte("before")); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Get(t.Context(), "k"); err != nil || string(v) != "before" { // prepares the statement on b
		t.Fatalf("Get = %q, %v", v, err)
	}
	resync := make(chan struct{}, 16)
	defer b.Subscribe(func(k string) {
		if k == "" {
			resync <- struct{}{}
		}
	})()
	// The listener announces a resync when it connects; drain it.
	select {
	case <-resync:
	case <-t.Context().Done():
	}
	s, err := a.BeginRestore(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "k", []byte("restored")); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Get(t.Context(), "k"); err != nil || string(v) != "restored" {
		t.Fatalf("other node reads %q, %v after the restore", v, err)
	}
	select {
	case <-resync:
	case <-t.Context().Done():
		t.Fatal("no resync notification on the other node")
	}
}
