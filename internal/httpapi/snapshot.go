package httpapi

import (
	"net/http"
	"strconv"
	"time"
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

// snapshotRestore replaces storage with the snapshot in the body. Without
// a token on a new vault, with an admin token otherwise; ?force=true
// restores another vault's snapshot over this one.
func (a *API) snapshotRestore(q *request) (int, any, error) {
	if a.d.Operations.Restore == nil {
		return 0, nil, errNotConfigured
	}
	force := false
	if v := q.URL.Query().Get("force"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return 0, nil, errField("force", "must be true or false")
		}
		force = b
	}
	info, err := a.d.Operations.Restore(q.ctx(), q.Body, force)
	if err != nil {
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
