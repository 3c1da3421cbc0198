package httpapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/moonvault/moonvault/internal/errkind"
)

// Operations are what the operator endpoints need: snapshots, restore and
// metrics. Each is optional; a missing one answers 501.
type Operations struct {
	// Snapshot opens a consistent view of storage and returns the function
	// that streams it.
	Snapshot func(ctx context.Context) (func(w io.Writer) error, error)
	// Restore replaces storage with the snapshot read from r.
	Restore func(ctx context.Context, r io.Reader, force bool) (RestoreInfo, error)
	// Metrics serves the Prometheus exposition.
	Metrics http.Handler
	// MetricsUnauthenticated lets anyone scrape /v1/sys/metrics, sealed or
	// not (Vault's unauthenticated_metrics_access).
	MetricsUnauthenticated bool
	// Observer sees every request once (metrics).
	Observer Observer
}

// Observer is told about every request once it is answered: the route's
// operation name (bounded: one per route, "unknown" for no route), the
// status and how long the request path took.
type Observer interface {
	ObserveRequest(op string, status int, d time.Duration)
}

// RestoreInfo is the answer to a restore.
type RestoreInfo struct {
	Records   int64     `json:"records"`
	Storage   string    `json:"snapshot_storage"`
	Seal      string    `json:"seal"`
	Term      uint32    `json:"term"`
	CreatedAt time.Time `json:"snapshot_created_at"`
	Sealed    bool      `json:"sealed"`
}

const (
	pathSnapshot = "/v1/sys/storage/snapshot"
	pathRestore  = "/v1/sys/storage/restore"
	// maxSnapshotBytes bounds a restore's body; the format bounds each
	// record, and storage is the real limit.
	maxSnapshotBytes = 1 << 40
)

func (a *API) observe(op string, status int, start time.Time) {
	if o := a.d.Operations.Observer; o != nil {
		o.ObserveRequest(op, status, time.Since(start))
	}
}

// bodyLimit is the request body limit for r. A snapshot streams for as
// long as it takes, so its routes lift the server's read and write
// deadlines.
func (a *API) bodyLimit(w http.ResponseWriter, r *http.Request) int64 {
	switch r.URL.Path {
	case pathRestore:
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
		return maxSnapshotBytes
	case pathSnapshot:
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	}
	return a.maxBody.Load()
}

// SetMaxBody changes the request body limit (configuration reload).
func (a *API) SetMaxBody(n int64) {
	if n > 0 {
		a.maxBody.Store(n)
	}
}

// streamBody is a response the handler writes itself (a snapshot, the
// metrics exposition), after the request was audited.
type streamBody func(w http.ResponseWriter)

// restoreAccess is public while the vault is not initialised (a new vault
// restores without a token, as it would init), else admin and exclusive.
func (a *API) restoreAccess(q *request) access {
	st, err := a.d.Core.Status(q.ctx())
	if err == nil && !st.Initialized {
		return public
	}
	return adminExclusive
}

var errNotConfigured = errkind.New(errkind.Unsupported, "not_supported", "this node does not offer this operation")

// bodyTooLarge maps a body over the limit to 413.
func bodyTooLarge(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errTooLarge
	}
	return err
}
