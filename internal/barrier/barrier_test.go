package barrier

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/moonvault/moonvault/internal/secret"
	"github.com/moonvault/moonvault/internal/storage"
)

var _ storage.Backend = (*Barrier)(nil)

func TestRoundTrip(t *testing.T) {
	mem := newMem()
	b, _ := unsealed(t, mem, nil)
	ctx := t.Context()
	mustPut(t, b, "wallet/keys/alice/main", "secret key")
	mustGet(t, b, "wallet/keys/alice/main", "secret key")
	if raw := mem.raw(t, "wallet/keys/alice/main"); bytes.Contains(raw, []byte("secret key")) {
		t.Fatal("plaintext visible in storage")
	}
	mustPut(t, b, "empty", "")
	mustGet(t, b, "empty", "")
	if err := b.Batch(ctx, []storage.Op{
		{Key: "a/1", Value: []byte("one")}, {Key: "a/2", Value: []byte("two")}, {Key: "empty", Delete: true},
	}); err != nil {
		t.Fatal(err)
	}
	mustGet(t, b, "a/2", "two")
	if _, err := b.Get(ctx, "empty"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get deleted = %v, want ErrNotFound", err)
	}
	if err := b.Delete(ctx, "a/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "a/1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get after Delete = %v, want ErrNotFound", err)
	}
	keys, err := b.List(ctx, "", "", 0)
	if err != nil || !slices.Equal(keys, []string{"a/2", "wallet/keys/alice/main"}) {
		t.Fatalf("List = %q, %v (core/keyring must not appear)", keys, err)
	}
}

// TestTamperEveryBit flips every bit of a record, region by region.
func TestTamperEveryBit(t *testing.T) {
	mem := newMem()
	b, _ := unsealed(t, mem, nil)
	const key = "wallet/keys/alice/main"
	mustPut(t, b, key, "0123456789")
	orig := mem.raw(t, key)
	regions := []struct {
		name       string
		start, end int
	}{
		{"version", 0, 1},
		{"term", 1, 5},
		{"nonce", 5, headerLen},
		{"ciphertext", headerLen, len(orig) - tagLen},
		{"tag", len(orig) - tagLen, len(orig)},
	}
	for _, r := range regions {
		t.Run(r.name, func(t *testing.T) {
			for i := r.start; i < r.end; i++ {
				for bit := range 8 {
					bad := bytes.Clone(orig)
					bad[i] ^= 1 << bit
					mem.setRaw(key, bad)
					got, err := b.Get(t.Context(), key)
					if !errors.Is(err, ErrIntegrity) || got != nil {
						t.Fatalf("byte %d bit %d: Get = %q, %v; want ErrIntegrity", i, bit, got, err)
					}
					if !strings.Contains(err.Error(), key) {
						t.Fatalf("error %q does not name the path", err)
					}
				}
			}
		})
	}
	mem.setRaw(key, orig)
	mustGet(t, b, key, "0123456789")
}

func TestTruncatedAndExtendedRecords(t *testing.T) {
	mem := newMem()
	b, _ := unsealed(t, mem, nil)
	mustPut(t, b, "k", "value")
	orig := mem.raw(t, "k")
	for n := range len(orig) {
		mem.setRaw("k", orig[:n])
		if _, err := b.Get(t.Context(), "k"); !errors.Is(err, ErrIntegrity) {
			t.Fatalf("truncated to %d: %v, want ErrIntegrity", n, err)
		}
	}
	mem.setRaw("k", append(bytes.Clone(orig), 0))
	if _, err := b.Get(t.Context(), "k"); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("extended: %v, want ErrIntegrity", err)
	}
}

func TestPathSwap(t *testing.T) {
	mem := newMem()
	b, _ := unsealed(t, mem, nil)
	mustPut(t, b, "wallet/keys/alice/main", "alice key")
	mustPut(t, b, "wallet/keys/mallory/main", "mallory key")
	mem.setRaw("wallet/keys/mallory/main", mem.raw(t, "wallet/keys/alice/main"))
	_, err := b.Get(t.Context(), "wallet/keys/mallory/main")
	if !errors.Is(err, ErrIntegrity) {
		t.Fatalf("moved record: %v, want ErrIntegrity", err)
	}
	if !strings.Contains(err.Error(), "wallet/keys/mallory/main") {
		t.Fatalf("error %q does not name the path", err)
	}
}

func TestNoncesUnique(t *testing.T) {
	mem := newMem()
	b, _ := unsealed(t, mem, nil)
	seen := make(map[[nonceLen]byte]bool, 10000)
	for i := range 10000 {
		mustPut(t, b, "k", "same value")
		var n [nonceLen]byte
		copy(n[:], mem.raw(t, "k")[1+termLen:headerLen])
		if seen[n] {
			t.Fatalf("nonce %x repeated after %d writes", n, i)
		}
		seen[n] = true
	}
}

func TestReservedPaths(t *testing.T) {
	b, _ := unsealed(t, newMem(), nil)
	ctx := t.Context()
	calls := map[string]error{
		"Get":    func() error { _, err := b.Get(ctx, "core/keyring"); return err }(),
		"Put":    b.Put(ctx, "core/seal-config", []byte("x")),
		"Delete": b.Delete(ctx, "core/keyring"),
		"Batch":  b.Batch(ctx, []storage.Op{{Key: "ok", Value: []byte("x")}, {Key: "core/x", Value: []byte("x")}}),
		"List":   func() error { _, err := b.List(ctx, "core/", "", 0); return err }(),
	}
	for name, err := range calls {
		if !errors.Is(err, ErrReservedPath) {
			t.Errorf("%s: %v, want ErrReservedPath", name, err)
		}
	}
	if _, err := b.Get(ctx, "ok"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("refused batch wrote its other ops: %v", err)
	}
	if init, err := b.Initialized(ctx); err != nil || !init {
		t.Fatalf("keyring gone after refused calls: %v %v", init, err)
	}
}

// TestListSkipsCoreWithPaging fills the keyspace around core/ and pages
// through it with small limits.
func TestListSkipsCoreWithPaging(t *testing.T) {
	mem := newMem()
	b, _ := unsealed(t, mem, nil)
	for _, k := range []string{"auth/a", "auth/b", "cora", "core", "corez", "wallet/x"} {
		mustPut(t, b, k, k)
	}
	for _, k := range []string{"core/a", "core/b", "core/c", "core/d"} {
		mem.setRaw(k, []byte("core data")) // as the core writes them, below the barrier
	}
	want := []string{"auth/a", "auth/b", "cora", "core", "corez", "wallet/x"}
	for _, prefix := range []string{"", "c", "cor", "core"} {
		var expect []string
		for _, k := range want {
			if strings.HasPrefix(k, prefix) {
				expect = append(expect, k)
			}
		}
		for limit := 1; limit <= 3; limit++ {
			var got []string
			after := ""
			for {
				page, err := b.List(t.Context(), prefix, after, limit)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) > limit {
					t.Fatalf("page of %d > limit %d", len(page), limit)
				}
				got = append(got, page...)
				if len(page) < limit {
					break
				}
				after = page[len(page)-1]
			}
			if !slices.Equal(got, expect) {
				t.Fatalf("prefix %q limit %d: %q, want %q", prefix, limit, got, expect)
			}
		}
	}
}

func TestSealedRefusesEverything(t *testing.T) {
	b, _ := unsealed(t, newMem(), nil)
	mustPut(t, b, "k", "v")
	b.Seal()
	if !b.Sealed() || b.Status() != (Status{}) {
		t.Fatalf("Sealed = %v, Status = %+v", b.Sealed(), b.Status())
	}
	ctx := t.Context()
	_, errRotate := b.Rotate(ctx)
	calls := map[string]error{
		"Get":        func() error { _, err := b.Get(ctx, "k"); return err }(),
		"Put":        b.Put(ctx, "k", []byte("x")),
		"Delete":     b.Delete(ctx, "k"),
		"Batch":      b.Batch(ctx, []storage.Op{{Key: "k", Value: []byte("x")}}),
		"List":       func() error { _, err := b.List(ctx, "", "", 0); return err }(),
		"Rotate":     errRotate,
		"Rekey":      b.Rekey(ctx, newRoot(t)),
		"SetWrapper": b.SetWrapper(ctx, nil),
		"Reload":     b.Reload(ctx),
	}
	for name, err := range calls {
		if !errors.Is(err, ErrSealed) {
			t.Errorf("%s while sealed: %v, want ErrSealed", name, err)
		}
	}
}

func TestBackendErrorsPassThrough(t *testing.T) {
	sw := &switchable{Backend: newMem()}
	b, _ := unsealed(t, sw, nil)
	ctx := t.Context()
	if _, err := b.Get(ctx, "missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get missing: %v, want ErrNotFound", err)
	}
	sw.mu.Lock()
	sw.down = true
	sw.mu.Unlock()
	_, errGet := b.Get(ctx, "k")
	_, errList := b.List(ctx, "", "", 0)
	_, errRotate := b.Rotate(ctx)
	_, errInit := b.Initialized(ctx)
	for name, err := range map[string]error{
		"Get": errGet, "Put": b.Put(ctx, "k", nil), "Delete": b.Delete(ctx, "k"), "List": errList,
		"Batch": b.Batch(ctx, []storage.Op{{Key: "k"}}), "Rotate": errRotate, "Reload": b.Reload(ctx),
		"Initialized": errInit,
	} {
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", name, err)
		}
	}
	if b.Status().Term != 1 {
		t.Fatalf("failed rotate changed the term: %+v", b.Status())
	}
}

// TestRecordVectors opens records built by pyca/cryptography
// (testdata/gen_records.py) with fixed keys.
func TestRecordVectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/records.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct{ Name, Path, Record, Want, Plaintext string }
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	kr := fixedKeyring(t)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			rec, err := hex.DecodeString(c.Record)
			if err != nil {
				t.Fatal(err)
			}
			pt, err := kr.open(c.Path, rec)
			switch c.Want {
			case "ok":
				if err != nil || string(pt) != c.Plaintext {
					t.Fatalf("open = %q, %v; want %q", pt, err, c.Plaintext)
				}
			case "integrity":
				if !errors.Is(err, ErrIntegrity) || errors.Is(err, ErrUnknownTerm) {
					t.Fatalf("open = %v, want ErrIntegrity", err)
				}
			case "unknown_term":
				if !errors.Is(err, ErrUnknownTerm) || !errors.Is(err, ErrIntegrity) {
					t.Fatalf("open = %v, want ErrUnknownTerm wrapping ErrIntegrity", err)
				}
			default:
				t.Fatalf("unknown expectation %q", c.Want)
			}
		})
	}
	// And our own seal opens with the same layout.
	rec := kr.seal("x/y", []byte("hello"))
	if rec[0] != recordVersion || binary.BigEndian.Uint32(rec[1:]) != kr.active {
		t.Fatalf("header %x", rec[:5])
	}
	if pt, err := kr.open("x/y", rec); err != nil || string(pt) != "hello" {
		t.Fatalf("round trip: %q %v", pt, err)
	}
}

// fixedKeyring has the test keys of gen_records.py: term 1 = 0x00..0x1f,
// term 7 = 0xa0..0xbf (active).
func fixedKeyring(t testing.TB) *keyring {
	kr := &keyring{active: 7, terms: map[uint32]*term{}}
	for n, start := range map[uint32]byte{1: 0x00, 7: 0xa0} {
		key := make(secret.Bytes, 32)
		for i := range key {
			key[i] = start + byte(i)
		}
		tm, err := buildTerm(n, key, testTime)
		if err != nil {
			t.Fatal(err)
		}
		kr.terms[n] = tm
	}
	return kr
}

func TestConcurrentUseDuringRotate(t *testing.T) {
	b, _ := unsealed(t, newSubMem(), nil)
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				key := fmt.Sprintf("w%d/%d", w, i)
				if err := b.Put(ctx, key, []byte(key)); err != nil {
					errs <- err
					return
				}
				got, err := b.Get(ctx, key)
				if err != nil || string(got) != key {
					errs <- fmt.Errorf("Get(%q) = %q, %v", key, got, err)
					return
				}
			}
		}()
	}
	for range 5 {
		if _, err := b.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := b.Status(); st.Term != 6 || st.Terms != 6 {
		t.Fatalf("Status = %+v, want term 6 of 6", st)
	}
}

func FuzzOpen(f *testing.F) {
	kr := fixedKeyring(f)
	f.Add(kr.seal("wallet/keys/alice/main", []byte("fuzz seed")))
	f.Add([]byte{recordVersion, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, rec []byte) {
		pt, err := kr.open("wallet/keys/alice/main", rec)
		if err != nil {
			if pt != nil || !errors.Is(err, ErrIntegrity) {
				t.Fatalf("open = %q, %v; want nil and ErrIntegrity", pt, err)
			}
			return
		}
		if len(pt) != len(rec)-headerLen-tagLen {
			t.Fatalf("plaintext %d bytes from record of %d", len(pt), len(rec))
		}
	})
}
