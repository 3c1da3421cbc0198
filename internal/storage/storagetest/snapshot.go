package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/storage"
)

// RunSnapshot is the contract of storage.Snapshotter and storage.Restorer:
// a View is a consistent point-in-time copy that does not stop writers,
// and a restore replaces everything in one step or changes nothing.
func RunSnapshot(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Open)
	}{
		{"ViewIsPointInTime", testViewPointInTime},
		{"ViewDoesNotBlockWriters", testViewDoesNotBlockWriters},
		{"RestoreReplacesEverything", testRestoreReplaces},
		{"RestoreAbortChangesNothing", testRestoreAbort},
		{"RestoreDuplicateKeyChangesNothing", testRestoreDuplicate},
		{"RestoreOneAtATime", testRestoreOneAtATime},
		{"RestoreExpectHolds", testRestoreExpectHolds},
		{"RestoreExpectFailsChangesNothing", testRestoreExpectFails},
		{"RestoreKeepsReplaced", testRestoreKeepsReplaced},
		{"RoundTrip", testSnapshotRoundTrip},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

func openClosed(t *testing.T, open Open) storage.Backend {
	t.Helper()
	b := open(t)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func mustView(t *testing.T, b storage.Backend) storage.View {
	t.Helper()
	s, ok := b.(storage.Snapshotter)
	if !ok {
		t.Fatalf("%T does not implement storage.Snapshotter", b)
	}
	v, err := s.View(t.Context())
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	return v
}

func mustStage(t *testing.T, b storage.Backend) storage.Staging {
	t.Helper()
	r, ok := b.(storage.Restorer)
	if !ok {
		t.Fatalf("%T does not implement storage.Restorer", b)
	}
	s, err := r.BeginRestore(t.Context())
	if err != nil {
		t.Fatalf("BeginRestore: %v", err)
	}
	return s
}

type kv struct {
	k string
	v []byte
}

func collect(t *testing.T, v storage.View) []kv {
	t.Helper()
	var out []kv
	err := v.Each(t.Context(), func(k string, val []byte) error {
		out = append(out, kv{k, bytes.Clone(val)})
		return nil
	})
	if err != nil {
		t.Fatalf("Each: %v", err)
	}
	return out
}

func dump(t *testing.T, b storage.Backend) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, k := range mustList(t, b, "", "", 0) {
		out[k] = string(mustGet(t, b, k))
	}
	return out
}

func testViewPointInTime(t *testing.T, open Open) {
	b := openClosed(t, open)
	mustPut(t, b, "snap/b", []byte("b1"))
	mustPut(t, b, "snap/a", []byte("a1"))
	mustPut(t, b, "snap/c", []byte{})
	v := mustView(t, b)
	defer v.Close()
	// Changes after the view was taken are invisible to it.
	mustPut(t, b, "snap/a", []byte("a2"))
	mustPut(t, b, "snap/d", []byte("d"))
	if err := b.Delete(t.Context(), "snap/b"); err != nil {
		t.Fatal(err)
	}
	if v.Count() != 3 {
		t.Fatalf("Count = %d, want 3", v.Count())
	}
	got := collect(t, v)
	want := []kv{{"snap/a", []byte("a1")}, {"snap/b", []byte("b1")}, {"snap/c", []byte{}}}
	if len(got) != len(want) {
		t.Fatalf("Each gave %d records, want %d: %q", len(got), len(want), got)
	}
	for i := range want {
		if got[i].k != want[i].k || !bytes.Equal(got[i].v, want[i].v) {
			t.Fatalf("record %d = %q=%q, want %q=%q", i, got[i].k, got[i].v, want[i].k, want[i].v)
		}
	}
	if err := v.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := string(mustGet(t, b, "snap/a")); got != "a2" {
		t.Fatalf("after the view, snap/a = %q, want a2", got)
	}
}

// testViewDoesNotBlockWriters writes a few megabytes while a view is open:
// the writes complete (bbolt would block a write that grows its memory map
// until every read transaction ended).
func testViewDoesNotBlockWriters(t *testing.T, open Open) {
	b := openClosed(t, open)
	mustPut(t, b, "w/0000", []byte("x"))
	v := mustView(t, b)
	defer v.Close()
	done := make(chan error, 1)
	go func() {
		val := bytes.Repeat([]byte{7}, 64<<10)
		for i := 1; i <= 64; i++ {
			if err := b.Put(t.Context(), fmt.Sprintf("w/%04d", i), val); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("write during a view: %v", err)
		}
	case <-time.After(60 * time.Second): // a deadlock, not a slow machine
		t.Fatal("writes did not complete while a view was open")
	}
	if got := collect(t, v); len(got) != 1 {
		t.Fatalf("view sees %d records, want the 1 from before", len(got))
	}
}

func testRestoreReplaces(t *testing.T, open Open) {
	b := openClosed(t, open)
	mustPut(t, b, "old/x", []byte("x"))
	mustPut(t, b, "keep/y", []byte("old"))
	var rec *recorder
	if sub, ok := b.(storage.Subscriber); ok {
		rec = newRecorder()
		defer sub.Subscribe(rec.record)()
	}
	s := mustStage(t, b)
	for _, r := range []kv{{"keep/y", []byte("new")}, {"new/a", []byte("a")}, {"new/b", []byte{}}} {
		if err := s.Put(t.Context(), r.k, r.v); err != nil {
			t.Fatalf("stage %s: %v", r.k, err)
		}
	}
	// Nothing staged is visible before Commit.
	wantMissing(t, b, "new/a")
	if got := string(mustGet(t, b, "keep/y")); got != "old" {
		t.Fatalf("before commit keep/y = %q", got)
	}
	if err := s.Commit(t.Context()); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := s.Abort(); err != nil {
		t.Fatalf("Abort after Commit: %v", err)
	}
	want := map[string]string{"keep/y": "new", "new/a": "a", "new/b": ""}
	if got := dump(t, b); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after restore: %v, want %v", got, want)
	}
	// The backend works normally afterwards (PostgreSQL re-plans prepared
	// statements against the new table).
	mustPut(t, b, "after/p", []byte("p"))
	if err := b.CompareAndSwap(t.Context(), "new/a", []byte("a"), []byte("a2")); err != nil {
		t.Fatalf("CompareAndSwap after restore: %v", err)
	}
	if got := mustList(t, b, "new/", "", 0); !slices.Equal(got, []string{"new/a", "new/b"}) {
		t.Fatalf("List after restore = %q", got)
	}
	if rec != nil {
		rec.waitUntil(t, "resync notification (empty key) after restore", func() bool { return rec.count("") > 0 })
	}
}

func testRestoreAbort(t *testing.T, open Open) {
	b := openClosed(t, open)
	mustPut(t, b, "old/x", []byte("x"))
	s := mustStage(t, b)
	if err := s.Put(t.Context(), "new/a", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.Abort(); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	if got := dump(t, b); fmt.Sprint(got) != fmt.Sprint(map[string]string{"old/x": "x"}) {
		t.Fatalf("after abort: %v", got)
	}
	// A new restore can start after an abort.
	s = mustStage(t, b)
	if err := s.Abort(); err != nil {
		t.Fatal(err)
	}
}

func testRestoreDuplicate(t *testing.T, open Open) {
	b := openClosed(t, open)
	mustPut(t, b, "old/x", []byte("x"))
	s := mustStage(t, b)
	err := s.Put(t.Context(), "dup/a", []byte("1"))
	if err == nil {
		err = s.Put(t.Context(), "dup/a", []byte("2"))
	}
	if err == nil {
		err = s.Commit(t.Context())
	}
	if err == nil {
		t.Fatal("a key staged twice was committed")
	}
	_ = s.Abort()
	if got := dump(t, b); fmt.Sprint(got) != fmt.Sprint(map[string]string{"old/x": "x"}) {
		t.Fatalf("after a refused restore: %v", got)
	}
}

func testRestoreOneAtATime(t *testing.T, open Open) {
	b := openClosed(t, open)
	s := mustStage(t, b)
	defer s.Abort()
	if _, err := b.(storage.Restorer).BeginRestore(t.Context()); err == nil {
		t.Fatal("a second restore started while one was staging")
	}
}

// testSnapshotRoundTrip copies one backend into another through a view
// taken while a writer keeps writing, and checks the copy is exactly the
// view.
func testSnapshotRoundTrip(t *testing.T, open Open) {
	src := openClosed(t, open)
	dst := openClosed(t, open)
	for i := range 500 {
		mustPut(t, src, fmt.Sprintf("rt/%05d", i), []byte(fmt.Sprint(i)))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 500; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := src.Put(t.Context(), fmt.Sprintf("rt/%05d", i), []byte("late")); err != nil {
				t.Errorf("concurrent write: %v", err)
				return
			}
		}
	}()
	v := mustView(t, src)
	s := mustStage(t, dst)
	n := int64(0)
	err := v.Each(t.Context(), func(k string, val []byte) error {
		n++
		return s.Put(t.Context(), k, val)
	})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	if n != v.Count() {
		t.Fatalf("Each gave %d records, Count said %d", n, v.Count())
	}
	if err := s.Commit(t.Context()); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	_ = v.Close()
	got := dump(t, dst)
	if int64(len(got)) != n {
		t.Fatalf("restored %d records, want %d", len(got), n)
	}
	for i := range 500 {
		if got[fmt.Sprintf("rt/%05d", i)] != fmt.Sprint(i) {
			t.Fatalf("record %d missing or wrong after the round trip", i)
		}
	}
}

// testRestoreExpectHolds: a commit whose expectations hold switches.
func testRestoreExpectHolds(t *testing.T, open Open) {
	b := openClosed(t, open)
	mustPut(t, b, "core/k", []byte("v1"))
	mustPut(t, b, "core/empty", []byte{})
	s := mustStage(t, b)
	if err := s.Put(t.Context(), "new/a", []byte("a")); err != nil {
		t.Fatal(err)
	}
	s.Expect("core/k", []byte("v1"))
	s.Expect("core/empty", []byte{})
	s.Expect("core/absent", nil)
	if err := s.Commit(t.Context()); err != nil {
		t.Fatalf("Commit with holding expectations: %v", err)
	}
	if got := dump(t, b); fmt.Sprint(got) != fmt.Sprint(map[string]string{"new/a": "a"}) {
		t.Fatalf("after restore: %v", got)
	}
}

// testRestoreExpectFails: the live records changed after the restore was
// authorised (another node initialised or restored the storage): Commit
// refuses with ErrConflict, changes nothing, and a new restore can start.
func testRestoreExpectFails(t *testing.T, open Open) {
	for _, tc := range []struct {
		name   string
		expect []byte
		change func(b storage.Backend)
	}{
		{"changed", []byte("v1"), func(b storage.Backend) { mustPut(t, b, "core/k", []byte("v2")) }},
		{"deleted", []byte("v1"), func(b storage.Backend) {
			if err := b.Delete(t.Context(), "core/k"); err != nil {
				t.Fatal(err)
			}
		}},
		{"created", nil, func(b storage.Backend) { mustPut(t, b, "core/absent", []byte("x")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := openClosed(t, open)
			mustPut(t, b, "core/k", []byte("v1"))
			s := mustStage(t, b)
			if err := s.Put(t.Context(), "new/a", []byte("a")); err != nil {
				t.Fatal(err)
			}
			key := "core/k"
			if tc.expect == nil {
				key = "core/absent"
			}
			s.Expect(key, tc.expect)
			tc.change(b)
			before := dump(t, b)
			err := s.Commit(t.Context())
			if !errors.Is(err, storage.ErrConflict) {
				t.Fatalf("Commit after %s: %v, want ErrConflict", tc.name, err)
			}
			_ = s.Abort()
			if got := dump(t, b); fmt.Sprint(got) != fmt.Sprint(before) {
				t.Fatalf("a refused commit changed the data: %v, was %v", got, before)
			}
			if r := b.(storage.Restorer); true {
				copies, err := r.ReplacedCopies(t.Context())
				if err != nil || len(copies) != 0 {
					t.Fatalf("replaced copies after a refused commit: %v %v", copies, err)
				}
			}
			mustStage(t, b).Abort()
		})
	}
}

// testRestoreKeepsReplaced: the contents a restore replaces are kept (a
// forced or mistaken restore can be undone), listed with when they were
// replaced, and dropped only when asked.
func testRestoreKeepsReplaced(t *testing.T, open Open) {
	b := openClosed(t, open)
	r := b.(storage.Restorer)
	mustPut(t, b, "old/x", []byte("x"))
	start := time.Now()
	var names []string
	for i := range 2 {
		s := mustStage(t, b)
		if err := s.Put(t.Context(), fmt.Sprintf("gen/%d", i), []byte("y")); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
		rc := s.Replaced()
		if rc.Name == "" || rc.At.Before(start.Add(-time.Minute)) || rc.At.After(time.Now().Add(time.Minute)) {
			t.Fatalf("Replaced() = %+v", rc)
		}
		names = append(names, rc.Name)
	}
	copies, err := r.ReplacedCopies(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(copies) != 2 || copies[0].Name != names[0] || copies[1].Name != names[1] {
		t.Fatalf("ReplacedCopies = %+v, want %q oldest first", copies, names)
	}
	if err := r.DropReplaced(t.Context(), names[0]); err != nil {
		t.Fatalf("DropReplaced: %v", err)
	}
	if err := r.DropReplaced(t.Context(), "no-such-copy"); err == nil {
		t.Fatal("DropReplaced of an unknown name succeeded")
	}
	copies, err = r.ReplacedCopies(t.Context())
	if err != nil || len(copies) != 1 || copies[0].Name != names[1] {
		t.Fatalf("after dropping one: %+v %v", copies, err)
	}
	if got := dump(t, b); fmt.Sprint(got) != fmt.Sprint(map[string]string{"gen/1": "y"}) {
		t.Fatalf("live data: %v", got)
	}
}
