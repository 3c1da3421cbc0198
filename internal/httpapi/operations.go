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
	// Restore replaces storage with the snapshot read from r. The caller
	// has authorised it; exclusive runs the switch alone on this node.
	Restore func(ctx context.Context, r io.Reader, force bool, exclusive func(func() error) error) (RestoreInfo, error)
	// RestoreMaxBytes and RestoreTimeout bound a restore's upload
	// (defaults: 16 GiB, 1 h).
	RestoreMaxBytes int64
	RestoreTimeout  time.Duration
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
	// Rollback: the snapshot was of this vault (an older state of it);
	// otherwise it was another vault's.
	Rollback bool `json:"rollback"`
	// ReplacedCopy names where the replaced data is kept, and until when.
	ReplacedCopy ReplacedCopy `json:"replaced_copy"`
}

// ReplacedCopy is the data a restore replaced, kept by the storage.
type ReplacedCopy struct {
	Name      string    `json:"name"`
	KeptUntil time.Time `json:"kept_until"`
}

const (
	pathSnapshot = "/v1/sys/storage/snapshot"
	pathRestore  = "/v1/sys/storage/restore"
	// Defaults of Operations.RestoreMaxBytes and RestoreTimeout.
	defaultRestoreMaxBytes = 16 << 30
	defaultRestoreTimeout  = time.Hour
)

func (a *API) observe(op string, status int, start time.Time) {
	if o := a.d.Operations.Observer; o != nil {
		o.ObserveRequest(op, status, time.Since(start))
	}
}

// bodyLimit is the request body limit for r. Deadlines are only lifted
// once the request is authorised (the handlers), so that an
// unauthenticated client cannot hold a connection open.
func (a *API) bodyLimit(r *http.Request) int64 {
	if r.URL.Path == pathRestore {
		if n := a.d.Operations.RestoreMaxBytes; n > 0 {
			return n
		}
		return defaultRestoreMaxBytes
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

var errNotConfigured = errkind.New(errkind.Unsupported, "not_supported", "this node does not offer this operation")

// bodyTooLarge maps a body over the limit to 413.
func bodyTooLarge(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errTooLarge
	}
	return err
}
