package server

import (
	"context"
	"io"

	"github.com/moonvault/moonvault/internal/httpapi"
	"github.com/moonvault/moonvault/internal/metrics"
)

// newMetrics builds the node's metrics; the sources are read at scrape
// time, so they may name services built later.
func (n *Node) newMetrics() *metrics.Metrics {
	return metrics.New(metrics.Sources{
		Sealed: func() bool { return n.Core == nil || n.Core.Sealed() },
		Entropy: func() (uint64, uint64) {
			st := n.mixer.Stats()
			return st.HSMBytesRead, st.HealthFailures
		},
		Audit: func() (uint64, uint64) {
			if n.Audit == nil {
				return 0, 0
			}
			st := n.Audit.Stats()
			return st.Lines, st.SinkFailures
		},
	})
}

// operations wires snapshots, restore and metrics into the API.
func (n *Node) operations() httpapi.Operations {
	return httpapi.Operations{
		Snapshot: n.Snapshot,
		Restore: func(ctx context.Context, r io.Reader, force bool, exclusive func(func() error) error) (httpapi.RestoreInfo, error) {
			res, err := n.Restore(ctx, r, RestoreOptions{Force: force, Exclusive: exclusive})
			if err != nil {
				return httpapi.RestoreInfo{}, err
			}
			h := res.Header
			return httpapi.RestoreInfo{Records: h.Records, Storage: h.Storage, Seal: h.Seal, Term: h.Term, CreatedAt: h.CreatedAt, Sealed: res.Sealed,
				Rollback: res.Rollback, ReplacedCopy: httpapi.ReplacedCopy{Name: res.Replaced.Name,
					KeptUntil: res.Replaced.At.Add(n.cfg.Restore.Retention)}}, nil
		},
		RestoreMaxBytes:        n.cfg.Restore.MaxBytes,
		RestoreTimeout:         n.cfg.Restore.Timeout,
		Metrics:                n.Metrics.Handler(),
		MetricsUnauthenticated: n.cfg.MetricsUnauthenticated,
		Observer:               n.Metrics,
	}
}
