package server

import (
	"bytes"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/moonvault/moonvault/internal/config"
	"github.com/moonvault/moonvault/internal/hsm/hsmtest"
)

// scrapeMetrics fetches /v1/sys/metrics with tok and parses it with expfmt.
func scrapeMetrics(t *testing.T, tn *testNode, tok string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := tn.raw("GET", "/v1/sys/metrics", tok, nil)
	if code != 200 {
		t.Fatalf("metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the exposition does not parse: %v", err)
	}
	return fams
}

func series(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	fam, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range fam.Metric {
		for k, v := range labels {
			found := false
			for _, l := range m.Label {
				found = found || (l.GetName() == k && l.GetValue() == v)
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestMetricsScrape: the admin scrapes the node; every documented metric is
// there, and the counters move with traffic.
func TestMetricsScrape(t *testing.T) {
	hc := hsmtest.NewToken(t)
	tn := startNode(t, t.TempDir(), nodeOpts{mutate: func(c *config.Server) {
		withHSM(hc)(c)
		c.AuditFile = t.TempDir() + "/audit.log"
	}})
	root := initHSM(t, tn)
	if code, _ := tn.raw("GET", "/v1/sys/metrics", "", nil); code != 401 {
		t.Fatalf("metrics without a token: %d, want 401", code)
	}
	populate(t, tn, root, "alice", 1)
	before := scrapeMetrics(t, tn, root)
	for _, name := range []string{
		"moonvault_http_requests_total", "moonvault_http_request_duration_seconds", "moonvault_signatures_total",
		"moonvault_sealed", "moonvault_entropy_hsm_bytes_total", "moonvault_entropy_health_failures_total",
		"moonvault_audit_lines_total", "moonvault_audit_failures_total", "moonvault_policy_decisions_total",
		"go_goroutines", "go_memstats_alloc_bytes", "process_resident_memory_bytes", "process_open_fds",
	} {
		if _, ok := before[name]; !ok {
			t.Errorf("metric %s missing", name)
		}
	}
	const n = 5
	for range n {
		tn.mustCall(200, "POST", "/v1/accounts/acct-0/sign-message", map[string]string{"data": "m"}, nil)
	}
	tn.call("GET", "/v1/accounts/no-such-account", nil, nil)
	after := scrapeMetrics(t, tn, root)
	moved := func(name string, labels map[string]string, want float64) {
		t.Helper()
		b, _ := series(before, name, labels)
		a, ok := series(after, name, labels)
		if !ok || a-b < want {
			t.Errorf("%s%v went from %v to %v, want +%v", name, labels, b, a, want)
		}
	}
	moved("moonvault_signatures_total", map[string]string{"chain": "ethereum", "kind": "message"}, n)
	moved("moonvault_http_requests_total", map[string]string{"operation": "accounts.sign_message", "code": "200"}, n)
	moved("moonvault_http_requests_total", map[string]string{"operation": "accounts.get", "code": "404"}, 1)
	moved("moonvault_http_request_duration_seconds", map[string]string{"operation": "accounts.sign_message"}, n)
	moved("moonvault_audit_lines_total", nil, n)
	if v, _ := series(after, "moonvault_sealed", nil); v != 0 {
		t.Errorf("moonvault_sealed = %v while unsealed", v)
	}
	if v, _ := series(after, "moonvault_entropy_hsm_bytes_total", nil); v <= 0 {
		t.Errorf("no HSM entropy counted after creating an account with augmentation")
	}
	// Operations, never paths or account names, label the requests.
	for _, m := range after["moonvault_http_requests_total"].Metric {
		for _, l := range m.Label {
			if l.GetName() == "operation" && (bytes.ContainsRune([]byte(l.GetValue()), '/') || bytes.Contains([]byte(l.GetValue()), []byte("acct"))) {
				t.Errorf("operation label %q is a path or a name", l.GetValue())
			}
		}
	}
}

// TestMetricsUnauthenticated: with metrics_unauthenticated, Prometheus
// scrapes without a token, also while the vault is sealed, and sees it.
func TestMetricsUnauthenticated(t *testing.T) {
	tn := startNode(t, t.TempDir(), nodeOpts{mutate: func(c *config.Server) { c.MetricsUnauthenticated = true }})
	fams := scrapeMetrics(t, tn, "")
	if v, ok := series(fams, "moonvault_sealed", nil); !ok || v != 1 {
		t.Fatalf("moonvault_sealed = %v (%v) on a new, sealed vault", v, ok)
	}
	initShamir(t, tn)
	fams = scrapeMetrics(t, tn, "")
	if v, _ := series(fams, "moonvault_sealed", nil); v != 0 {
		t.Fatalf("moonvault_sealed = %v after unseal", v)
	}
}
