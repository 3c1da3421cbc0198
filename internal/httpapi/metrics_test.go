package httpapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/moonvault/moonvault/internal/metrics"
)

type countingObserver struct {
	n      int
	op     string
	status int
}

func (c *countingObserver) ObserveRequest(op string, status int, _ time.Duration) {
	c.n++
	c.op, c.status = op, status
}

// TestObserverCalledOncePerRequest: the one hook in the request path sees
// every request once, with the route's operation name, never the path.
func TestObserverCalledOncePerRequest(t *testing.T) {
	obs := &countingObserver{}
	a := New(Deps{Operations: Operations{Observer: obs}})
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/no/such/account-name-0xabc", nil))
	if rec.Code != 404 || obs.n != 1 || obs.op != "unknown" || obs.status != 404 {
		t.Fatalf("code %d, observer %+v", rec.Code, obs)
	}
}

// BenchmarkRequestPathMetrics compares the request path with and without
// the metrics observer, on the cheapest route (no route: 404), where the
// observer's share of the work is largest.
//
//	go test -run '^$' -bench RequestPathMetrics ./internal/httpapi
func BenchmarkRequestPathMetrics(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "metrics-off"
		var ops Operations
		if on {
			name = "metrics-on"
			ops.Observer = metrics.New(metrics.Sources{})
		}
		b.Run(name, func(b *testing.B) {
			a := New(Deps{Operations: ops})
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req := httptest.NewRequest("GET", "/v1/nothing", nil)
				for pb.Next() {
					rec := httptest.NewRecorder()
					a.ServeHTTP(rec, req)
					if rec.Code != http.StatusNotFound {
						b.Errorf("status %d", rec.Code)
						return
					}
				}
			})
		})
	}
}
