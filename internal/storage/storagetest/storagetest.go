// Package storagetest is the contract every storage.Backend must meet. A
// backend's tests call Run with a function that opens a fresh, empty backend.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/moonvault/moonvault/internal/storage"
)

// Open returns a fresh, empty backend; Run closes it when the subtest ends.
type Open func(t *testing.T) storage.Backend

// Run runs the whole contract suite, one subtest per property.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b storage.Backend)
	}{
		{"GetMissing", testGetMissing},
		{"PutGet", testPutGet},
		{"Overwrite", testOverwrite},
		{"EmptyAndBinaryValues", testEmptyAndBinaryValues},
		{"LargeValue", testLargeValue},
		{"ValuesAreCopied", testValuesAreCopied},
		{"Delete", testDelete},
		{"InvalidKeys", testInvalidKeys},
		{"List", testList},
		{"ListPaging", testListPaging},
		{"Batch", testBatch},
		{"BatchFailureWritesNothing", testBatchFailureWritesNothing},
		{"BatchIsAtomicToReaders", testBatchAtomicToReaders},
		{"Concurrent", testConcurrent},
		{"BatchCreate", testBatchCreate},
		{"BatchCreateRace", testBatchCreateRace},
		{"CompareAndSwap", testCompareAndSwap},
		{"CompareAndSwapConcurrent", testCompareAndSwapConcurrent},
		{"Update", testUpdate},
		{"Subscribe", testSubscribe},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := open(t)
			t.Cleanup(func() {
				if err := b.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, b)
		})
	}
}

func mustPut(t *testing.T, b storage.Backend, key string, value []byte) {
	t.Helper()
	if err := b.Put(t.Context(), key, value); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func mustGet(t *testing.T, b storage.Backend, key string) []byte {
	t.Helper()
	v, err := b.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return v
}

func wantMissing(t *testing.T, b storage.Backend, key string) {
	t.Helper()
	v, err := b.Get(t.Context(), key)
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, v, err)
	}
}

func mustList(t *testing.T, b storage.Backend, prefix, after string, limit int) []string {
	t.Helper()
	keys, err := b.List(t.Context(), prefix, after, limit)
	if err != nil {
		t.Fatalf("List(%q, %q, %d): %v", prefix, after, limit, err)
	}
	return keys
}

func testGetMissing(t *testing.T, b storage.Backend) {
	wantMissing(t, b, "missing/key")
	mustPut(t, b, "missing/keyx", []byte("v"))
	wantMissing(t, b, "missing/key") // a longer key must not match
}

func testPutGet(t *testing.T, b storage.Backend) {
	mustPut(t, b, "wallet/accounts/alice/main", []byte("value-1"))
	if got := mustGet(t, b, "wallet/accounts/alice/main"); string(got) != "value-1" {
		t.Fatalf("Get = %q, want %q", got, "value-1")
	}
}

func testOverwrite(t *testing.T, b storage.Backend) {
	mustPut(t, b, "k", []byte("first, longer value"))
	mustPut(t, b, "k", []byte("second"))
	if got := mustGet(t, b, "k"); string(got) != "second" {
		t.Fatalf("Get after overwrite = %q, want %q", got, "second")
	}
}

func testEmptyAndBinaryValues(t *testing.T, b storage.Backend) {
	all := make([]byte, 512)
	for i := range all {
		all[i] = byte(i)
	}
	cases := map[string][]byte{
		"v/nil":    nil,
		"v/empty":  {},
		"v/zero":   {0},
		"v/binary": all,
	}
	for k, v := range cases {
		mustPut(t, b, k, v)
	}
	for k, v := range cases {
		got, err := b.Get(t.Context(), k)
		if err != nil {
			t.Fatalf("Get(%q): %v", k, err)
		}
		if !bytes.Equal(got, v) {
			t.Errorf("Get(%q) = %x, want %x", k, got, v)
		}
	}
}

func testLargeValue(t *testing.T, b storage.Backend) {
	v := make([]byte, 1<<20)
	for i := range v {
		v[i] = byte(i*7 + i>>8)
	}
	mustPut(t, b, "large", v)
	if got := mustGet(t, b, "large"); !bytes.Equal(got, v) {
		t.Fatalf("1 MiB value differs after round trip (got %d bytes)", len(got))
	}
}

func testValuesAreCopied(t *testing.T, b storage.Backend) {
	in := []byte("original")
	mustPut(t, b, "copy", in)
	copy(in, "MUTATED!")
	got := mustGet(t, b, "copy")
	if string(got) != "original" {
		t.Fatalf("mutating the Put argument changed the stored value: %q", got)
	}
	copy(got, "MUTATED!")
	if again := mustGet(t, b, "copy"); string(again) != "original" {
		t.Fatalf("mutating a Get result changed the stored value: %q", again)
	}
}

func testDelete(t *testing.T, b storage.Backend) {
	mustPut(t, b, "d/1", []byte("x"))
	mustPut(t, b, "d/2", []byte("y"))
	for i := 0; i < 2; i++ { // the second round deletes a missing key
		if err := b.Delete(t.Context(), "d/1"); err != nil {
			t.Fatalf("Delete round %d: %v", i, err)
		}
	}
	wantMissing(t, b, "d/1")
	if got := mustGet(t, b, "d/2"); string(got) != "y" {
		t.Fatalf("Delete removed a neighbour: Get(d/2) = %q", got)
	}
	if err := b.Delete(t.Context(), "never/existed"); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
}

func testInvalidKeys(t *testing.T, b storage.Backend) {
	ctx := t.Context()
	for _, key := range []string{"", "nul\x00byte", "new\nline", "del\x7f", "utf8-\u00e9", strings.Repeat("k", 1025)} {
		if err := b.Put(ctx, key, []byte("v")); err == nil {
			t.Errorf("Put(%q) succeeded, want an error", key)
		}
		if _, err := b.Get(ctx, key); err == nil || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Get(%q) error = %v, want a validation error", key, err)
		}
		if err := b.Delete(ctx, key); err == nil {
			t.Errorf("Delete(%q) succeeded, want an error", key)
		}
	}
	if err := b.Batch(ctx, []storage.Op{{Key: "", Value: []byte("v")}}); err == nil {
		t.Error("Batch with an empty key succeeded, want an error")
	}
	if keys := mustList(t, b, "", "", 0); len(keys) != 0 {
		t.Fatalf("invalid writes left keys behind: %q", keys)
	}
	// The longest valid key works.
	mustPut(t, b, strings.Repeat("k", 1024), []byte("v"))
}

var listKeys = []string{
	"a", "a/b", "a/b/1", "a/b/2", "a/b/10", "a/bc", "a/bc/1", "a/c", "a0", "b", "b/x", " space", "~tilde",
}

func testList(t *testing.T, b storage.Backend) {
	for _, k := range listKeys {
		mustPut(t, b, k, []byte(k))
	}
	tests := []struct {
		prefix, after string
		limit         int
		want          []string
	}{
		{"", "", 0, []string{" space", "a", "a/b", "a/b/1", "a/b/10", "a/b/2", "a/bc", "a/bc/1", "a/c", "a0", "b", "b/x", "~tilde"}},
		{"", "", -1, []string{" space", "a", "a/b", "a/b/1", "a/b/10", "a/b/2", "a/bc", "a/bc/1", "a/c", "a0", "b", "b/x", "~tilde"}},
		{"a/", "", 0, []string{"a/b", "a/b/1", "a/b/10", "a/b/2", "a/bc", "a/bc/1", "a/c"}},
		{"a/b", "", 0, []string{"a/b", "a/b/1", "a/b/10", "a/b/2", "a/bc", "a/bc/1"}},
		{"a/b/", "", 0, []string{"a/b/1", "a/b/10", "a/b/2"}},
		{"a/bc", "", 0, []string{"a/bc", "a/bc/1"}},
		{"a/", "a/b/10", 0, []string{"a/b/2", "a/bc", "a/bc/1", "a/c"}},
		{"a/", "a/b/10", 2, []string{"a/b/2", "a/bc"}},
		{"a/", "a/b/0", 1, []string{"a/b/1"}},                  // after need not exist
		{"a/b/", "a", 0, []string{"a/b/1", "a/b/10", "a/b/2"}}, // after before prefix
		{"a/b/", "a/c", 0, nil}, // after beyond prefix
		{"a/", "", 1, []string{"a/b"}},
		{"zzz", "", 0, nil},
		{"~", "", 0, []string{"~tilde"}},
		{"", "b/x", 0, []string{"~tilde"}},
		{"a/b/1", "", 0, []string{"a/b/1", "a/b/10"}},
	}
	for _, tc := range tests {
		got := mustList(t, b, tc.prefix, tc.after, tc.limit)
		if !slices.Equal(got, tc.want) {
			t.Errorf("List(%q, %q, %d) = %q, want %q", tc.prefix, tc.after, tc.limit, got, tc.want)
		}
	}
}

func testListPaging(t *testing.T, b storage.Backend) {
	var want []string
	ops := make([]storage.Op, 0, 250)
	for i := range 250 {
		k := fmt.Sprintf("page/%04d", i)
		want = append(want, k)
		ops = append(ops, storage.Op{Key: k, Value: []byte{byte(i)}})
	}
	if err := b.Batch(t.Context(), ops); err != nil {
		t.Fatalf("Batch: %v", err)
	}
	mustPut(t, b, "pagf", nil) // just past the prefix range
	var got []string
	after := ""
	for {
		page := mustList(t, b, "page/", after, 32)
		if len(page) > 32 {
			t.Fatalf("page of %d keys exceeds the limit 32", len(page))
		}
		got = append(got, page...)
		if len(page) < 32 {
			break
		}
		after = page[len(page)-1]
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paging returned %d keys, want %d in order", len(got), len(want))
	}
}

func testBatch(t *testing.T, b storage.Backend) {
	ctx := t.Context()
	mustPut(t, b, "batch/old", []byte("old"))
	mustPut(t, b, "batch/keep", []byte("keep"))
	err := b.Batch(ctx, []storage.Op{
		{Key: "batch/a", Value: []byte("A")},
		{Key: "batch/old", Delete: true},
		{Key: "batch/b", Value: []byte("B")},
		{Key: "batch/missing", Delete: true},
		{Key: "batch/a", Value: []byte("A2")}, // later ops win
	})
	if err != nil {
		t.Fatalf("Batch: %v", err)
	}
	if got := mustList(t, b, "batch/", "", 0); !slices.Equal(got, []string{"batch/a", "batch/b", "batch/keep"}) {
		t.Fatalf("keys after Batch = %q", got)
	}
	if got := mustGet(t, b, "batch/a"); string(got) != "A2" {
		t.Fatalf("Get(batch/a) = %q, want A2 (last op wins)", got)
	}
	if err := b.Batch(ctx, nil); err != nil {
		t.Fatalf("empty Batch: %v", err)
	}
}

func testBatchFailureWritesNothing(t *testing.T, b storage.Backend) {
	mustPut(t, b, "bf/existing", []byte("before"))
	bad := []storage.Op{
		{Key: "bf/new", Value: []byte("x")},
		{Key: "bf/existing", Delete: true},
		{Key: "", Value: []byte("invalid")},
	}
	if err := b.Batch(t.Context(), bad); err == nil {
		t.Fatal("Batch with an empty key succeeded")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	good := []storage.Op{{Key: "bf/new", Value: []byte("x")}, {Key: "bf/existing", Delete: true}}
	if err := b.Batch(ctx, good); err == nil {
		t.Fatal("Batch with a canceled context succeeded")
	}
	if err := b.Put(ctx, "bf/put", []byte("x")); err == nil {
		t.Fatal("Put with a canceled context succeeded")
	}
	wantMissing(t, b, "bf/new")
	wantMissing(t, b, "bf/put")
	if got := mustGet(t, b, "bf/existing"); string(got) != "before" {
		t.Fatalf("failed Batch changed bf/existing to %q", got)
	}
}

func testCompareAndSwap(t *testing.T, b storage.Backend) {
	ctx := t.Context()
	conflict := func(name string, err error) {
		t.Helper()
		if !errors.Is(err, storage.ErrConflict) {
			t.Fatalf("%s: err = %v, want ErrConflict", name, err)
		}
	}
	// Create if absent.
	if err := b.CompareAndSwap(ctx, "cas/a", nil, []byte("v1")); err != nil {
		t.Fatalf("create: %v", err)
	}
	if got := mustGet(t, b, "cas/a"); string(got) != "v1" {
		t.Fatalf("after create = %q", got)
	}
	conflict("create over existing", b.CompareAndSwap(ctx, "cas/a", nil, []byte("x")))
	conflict("absent check on existing", b.CompareAndSwap(ctx, "cas/a", nil, nil))
	conflict("wrong old", b.CompareAndSwap(ctx, "cas/a", []byte("v0"), []byte("x")))
	conflict("prefix of old", b.CompareAndSwap(ctx, "cas/a", []byte("v"), []byte("x")))
	conflict("empty old is not absent", b.CompareAndSwap(ctx, "cas/a", []byte{}, []byte("x")))
	if got := mustGet(t, b, "cas/a"); string(got) != "v1" {
		t.Fatalf("a failed swap wrote: %q", got)
	}
	// Replace.
	if err := b.CompareAndSwap(ctx, "cas/a", []byte("v1"), []byte("v2")); err != nil {
		t.Fatalf("swap: %v", err)
	}
	if got := mustGet(t, b, "cas/a"); string(got) != "v2" {
		t.Fatalf("after swap = %q", got)
	}
	// Empty values are values, distinct from absence.
	if err := b.CompareAndSwap(ctx, "cas/a", []byte("v2"), []byte{}); err != nil {
		t.Fatalf("swap to empty: %v", err)
	}
	if err := b.CompareAndSwap(ctx, "cas/a", []byte{}, []byte("v3")); err != nil {
		t.Fatalf("swap from empty: %v", err)
	}
	// Conditional delete.
	conflict("delete with wrong old", b.CompareAndSwap(ctx, "cas/a", []byte("v2"), nil))
	if err := b.CompareAndSwap(ctx, "cas/a", []byte("v3"), nil); err != nil {
		t.Fatalf("delete: %v", err)
	}
	wantMissing(t, b, "cas/a")
	conflict("swap on missing", b.CompareAndSwap(ctx, "cas/a", []byte("v3"), []byte("x")))
	conflict("delete missing", b.CompareAndSwap(ctx, "cas/a", []byte("v3"), nil))
	// Absent check on a missing key succeeds and writes nothing.
	if err := b.CompareAndSwap(ctx, "cas/a", nil, nil); err != nil {
		t.Fatalf("absent check: %v", err)
	}
	wantMissing(t, b, "cas/a")
	if err := b.CompareAndSwap(ctx, "nul\x00byte", nil, []byte("x")); err == nil {
		t.Fatal("CompareAndSwap accepted an invalid key")
	}
}

// testBatchCreate: a batch with a creating put applies only while that key
// is absent; otherwise it writes nothing at all.
func testBatchCreate(t *testing.T, b storage.Backend) {
	ctx := t.Context()
	claim := func(v string) error {
		return b.Batch(ctx, []storage.Op{
			{Key: "create/name", Value: []byte(v), Create: true},
			{Key: "create/data/" + v, Value: []byte("payload " + v)},
			{Key: "create/other", Delete: true},
		})
	}
	mustPut(t, b, "create/other", []byte("x"))
	if err := claim("first"); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	if got := mustGet(t, b, "create/name"); string(got) != "first" {
		t.Fatalf("name = %q", got)
	}
	wantMissing(t, b, "create/other")
	mustPut(t, b, "create/other", []byte("y"))
	if err := claim("second"); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("second claim: %v, want ErrConflict", err)
	}
	if got := mustGet(t, b, "create/name"); string(got) != "first" {
		t.Fatalf("a lost claim overwrote the name: %q", got)
	}
	wantMissing(t, b, "create/data/second")
	if got := mustGet(t, b, "create/other"); string(got) != "y" {
		t.Fatalf("a lost claim still deleted: %q", got)
	}
	// Once the key is deleted it can be created again.
	if err := b.Delete(ctx, "create/name"); err != nil {
		t.Fatal(err)
	}
	if err := claim("third"); err != nil {
		t.Fatalf("claim after delete: %v", err)
	}
}
