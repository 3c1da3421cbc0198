package httpapi

import (
	"errors"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/moonvault/moonvault/internal/policy"
)

// snapshotSave streams a signed snapshot of storage as stored (admin).
func (a *API) snapshotSave(q *request) (int, any, error) {
	if a.d.Operations.Snapshot == nil {
		return 0, nil, errNotConfigured
	}
	stream, err := a.d.Operations.Snapshot(q.ctx())
	if err != nil {
		return 0, nil, err
	}
	name := "moonvault-" + time.Now().UTC().Format("20060102T150405Z") + ".snap"
	return 200, streamBody(func(w http.ResponseWriter) {
		// Authorised: the stream takes as long as it takes.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
		w.WriteHeader(200)
		// A failure mid-stream leaves a truncated file, which the format
		// detects (the CLI verifies while it saves); it is logged by the
		// node.
		_ = stream(w)
	}), nil
}

// snapshotRestore replaces storage with the snapshot in the body: an
// admin with step-up (a recent second factor, or a root token minutes
// old) over an initialised vault; ?force=true for another vault's
// snapshot or an older one of this vault (a rollback). The upload is
// bounded in size and time; it runs alongside other requests, and only
// the switch runs alone.
func (a *API) snapshotRestore(q *request) (int, any, error) {
	if a.d.Operations.Restore == nil {
		return 0, nil, errNotConfigured
	}
	if err := a.d.Policy.Authorize(q.principal, policy.ActionSysRestore, nil, a.d.Now()); err != nil {
		return 0, nil, err
	}
	force := false
	if v := q.URL.Query().Get("force"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return 0, nil, errField("force", "must be true or false")
		}
		force = b
	}
	timeout := a.d.Operations.RestoreTimeout
	if timeout <= 0 {
		timeout = defaultRestoreTimeout
	}
	// The server's read and write timeouts suit small requests; an upload
	// gets restore_timeout, and the answer a minute more.
	rc := http.NewResponseController(q.w)
	deadline := time.Now().Add(timeout)
	_ = rc.SetReadDeadline(deadline)
	_ = rc.SetWriteDeadline(deadline.Add(time.Minute))
	info, err := a.d.Operations.Restore(q.ctx(), q.Body, force, func(fn func() error) error { return a.exclusive(q, fn) })
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, nil, errInvalid("upload_timeout", "the snapshot upload took longer than restore_timeout ("+timeout.String()+"); nothing was restored")
		}
		return 0, nil, bodyTooLarge(err)
	}
	return 200, info, nil
}

// metrics serves the Prometheus exposition (content negotiation by
// promhttp: text or OpenMetrics).
func (a *API) metrics(q *request) (int, any, error) {
	h := a.d.Operations.Metrics
	if h == nil {
		return 0, nil, errNotConfigured
	}
	r := q.Request
	return 200, streamBody(func(w http.ResponseWriter) { h.ServeHTTP(w, r) }), nil
}

func (a *API) metricsAccess() access {
	if a.d.Operations.MetricsUnauthenticated {
		return public
	}
	return admin
}
