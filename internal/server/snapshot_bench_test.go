package server

import (
	"crypto/rand"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/hsm/hsmtest"
	"github.com/moonvault/moonvault/internal/storage"
	"github.com/moonvault/moonvault/internal/storage/postgres/pgtest"
)

// BenchmarkSnapshotRestore100k measures a snapshot and a restore over real
// HTTPS of a vault holding 100,000 accounts (MOONVAULT_BENCH_ACCOUNTS
// overrides), in both directions between bolt and PostgreSQL. The
// accounts' three records each (account, seal-wrapped key, address index)
// are written straight to storage with the sizes a real account's records
// have: a snapshot copies ciphertext as stored, so their content does not
// change the work.
//
//	go test -run '^$' -bench SnapshotRestore100k -benchtime 1x -timeout 30m ./internal/server
func BenchmarkSnapshotRestore100k(b *testing.B) {
	n := 100_000
	if v := os.Getenv("MOONVAULT_BENCH_ACCOUNTS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	hc := hsmtest.NewToken(b)
	bolt := withHSM(hc)
	pg := func() func(*config.Server) { return withPostgres(pgtest.NewDatabase(b), hc) }
	for _, tc := range []struct {
		name     string
		src, dst func() func(*config.Server)
	}{
		{"bolt-to-postgres", func() func(*config.Server) { return bolt }, pg},
		{"postgres-to-bolt", pg, func() func(*config.Server) { return bolt }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				src := startNode(b, b.TempDir(), nodeOpts{mutate: tc.src()})
				root := initHSM(b, src)
				sizes := accountRecordSizes(b, src, root)
				fill(b, src.node.store, n, sizes)

				start := time.Now()
				snap := src.snapshot(root)
				snapDur := time.Since(start)
				src.stop()

				dst := startNode(b, b.TempDir(), nodeOpts{mutate: tc.dst()})
				dstRoot := initHSM(b, dst)
				start = time.Now()
				if code, body := dst.restore(dstRoot, snap, "?force=true"); code != 200 {
					b.Fatalf("restore: %d %s", code, body)
				}
				restDur := time.Since(start)
				dst.stop()
				mb := float64(len(snap)) / (1 << 20)
				b.ReportMetric(snapDur.Seconds(), "snapshot-s")
				b.ReportMetric(restDur.Seconds(), "restore-s")
				b.ReportMetric(mb, "MiB")
				b.ReportMetric(float64(n)/snapDur.Seconds(), "snapshot-accounts/s")
				b.ReportMetric(float64(n)/restDur.Seconds(), "restore-accounts/s")
			}
		})
	}
}

// accountRecordSizes creates one real account and returns the stored sizes
// of its records by prefix.
func accountRecordSizes(b *testing.B, tn *testNode, root string) map[string]int {
	b.Helper()
	tn.token = root
	tn.mustCall(201, "POST", "/v1/accounts", map[string]string{"name": "sizer"}, nil)
	sizes := map[string]int{}
	for _, p := range []string{"wallet/accounts/", "wallet/keys/", "wallet/addresses/"} {
		keys, err := tn.node.store.List(b.Context(), p, "", 1)
		if err != nil || len(keys) != 1 {
			b.Fatalf("list %s: %v %v", p, keys, err)
		}
		v, err := tn.node.store.Get(b.Context(), keys[0])
		if err != nil {
			b.Fatal(err)
		}
		sizes[p] = len(v)
	}
	return sizes
}

// fill writes n accounts' worth of records, 500 accounts per batch.
func fill(b *testing.B, st storage.Backend, n int, sizes map[string]int) {
	b.Helper()
	var ops []storage.Op
	for i := range n {
		name := fmt.Sprintf("bench/acct-%07d", i)
		addr := "0x" + strings.Repeat("0", 40-len(strconv.Itoa(i))) + strconv.Itoa(i)
		for p, key := range map[string]string{"wallet/accounts/": name, "wallet/keys/": name, "wallet/addresses/": addr} {
			v := make([]byte, sizes[p])
			_, _ = rand.Read(v)
			ops = append(ops, storage.Op{Key: p + key, Value: v})
		}
		if len(ops) >= 1500 || i == n-1 {
			if err := st.Batch(b.Context(), ops); err != nil {
				b.Fatal(err)
			}
			ops = ops[:0]
		}
	}
}
