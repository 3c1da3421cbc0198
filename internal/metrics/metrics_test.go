package metrics

import (
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape serves the handler and parses the text exposition.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d", rec.Code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	return fams
}

// value returns the value of the series of fam whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	fam, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	for _, m := range fam.Metric {
		match := true
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, want)
	return 0
}

func TestMetrics(t *testing.T) {
	sealed := true
	m := New(Sources{
		Sealed:  func() bool { return sealed },
		Entropy: func() (uint64, uint64) { return 4096, 2 },
		Audit:   func() (uint64, uint64) { return 10, 1 },
	})
	fams := scrape(t, m)
	for _, name := range []string{
		"moonvault_sealed", "moonvault_entropy_hsm_bytes_total", "moonvault_entropy_health_failures_total",
		"moonvault_audit_lines_total", "moonvault_audit_failures_total", "moonvault_signatures_total",
		"moonvault_policy_decisions_total", "go_goroutines", "process_cpu_seconds_total",
	} {
		if _, ok := fams[name]; !ok {
			t.Errorf("metric %s missing", name)
		}
	}
	if v := value(t, fams, "moonvault_sealed", nil); v != 1 {
		t.Errorf("sealed = %v", v)
	}
	if v := value(t, fams, "moonvault_entropy_hsm_bytes_total", nil); v != 4096 {
		t.Errorf("hsm bytes = %v", v)
	}
	if v := value(t, fams, "moonvault_audit_failures_total", nil); v != 1 {
		t.Errorf("audit failures = %v", v)
	}

	sealed = false
	for range 3 {
		m.ObserveRequest("accounts.sign_message", 200, time.Millisecond)
	}
	m.ObserveRequest("accounts.sign_message", 403, time.Millisecond)
	m.Signature("ethereum", "message")
	m.Signature("dogecoin", "message") // unknown values are "other"
	m.PolicyDecision("deny")
	m.PolicyDecision("maybe")
	fams = scrape(t, m)
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"moonvault_sealed", nil, 0},
		{"moonvault_http_requests_total", map[string]string{"operation": "accounts.sign_message", "code": "200"}, 3},
		{"moonvault_http_requests_total", map[string]string{"operation": "accounts.sign_message", "code": "403"}, 1},
		{"moonvault_http_request_duration_seconds", map[string]string{"operation": "accounts.sign_message"}, 4},
		{"moonvault_signatures_total", map[string]string{"chain": "ethereum", "kind": "message"}, 1},
		{"moonvault_signatures_total", map[string]string{"chain": "other", "kind": "message"}, 1},
		{"moonvault_signatures_total", map[string]string{"chain": "solana", "kind": "transaction"}, 0},
		{"moonvault_policy_decisions_total", map[string]string{"decision": "deny"}, 1},
		{"moonvault_policy_decisions_total", map[string]string{"decision": "other"}, 1},
		{"moonvault_policy_decisions_total", map[string]string{"decision": "allow"}, 0},
	}
	for _, c := range checks {
		if got := value(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Label values stay within the fixed lists.
	for _, m := range fams["moonvault_signatures_total"].Metric {
		for _, l := range m.Label {
			if l.GetName() == "chain" && oneOf(l.GetValue(), append(chains, "other")) == "other" && l.GetValue() != "other" {
				t.Errorf("unbounded chain label %q", l.GetValue())
			}
		}
	}
}

func TestNilMetricsRecordsNothing(t *testing.T) {
	var m *Metrics
	m.ObserveRequest("x", 200, time.Second)
	m.Signature("ethereum", "message")
	m.PolicyDecision("allow")
}

// BenchmarkObserveRequest is the cost the request path pays per request.
func BenchmarkObserveRequest(b *testing.B) {
	m := New(Sources{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.ObserveRequest("accounts.sign_message", 200, 1500*time.Microsecond)
		}
	})
}
