// Package metrics is the vault's Prometheus instrumentation, on its own
// registry (never the global one, so nothing else leaks into the scrape).
// Every label has a bounded set of values: operations are route names, not
// paths; chains, kinds and decisions are fixed lists; nothing carries an
// account, a user or an address.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Sources are read at scrape time; each is optional.
type Sources struct {
	// Sealed reports whether the vault is sealed.
	Sealed func() bool
	// Entropy reports bytes drawn from the HSM and health-test failures.
	Entropy func() (hsmBytes, healthFailures uint64)
	// Audit reports lines written and sink write failures.
	Audit func() (lines, failures uint64)
}

// Allowed label values; anything else is counted as "other".
var (
	chains    = []string{"ethereum", "bitcoin", "solana"}
	kinds     = []string{"message", "typed_data", "transaction", "psbt"}
	decisions = []string{"allow", "deny", "require_approval"}
)

// Metrics holds the collectors. A nil *Metrics records nothing.
type Metrics struct {
	reg        *prometheus.Registry
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	signatures *prometheus.CounterVec
	policy     *prometheus.CounterVec
	snapshot   prometheus.Gauge

	// Children looked up once: the request path pays a map load, not
	// the label hashing of WithLabelValues.
	reqs sync.Map // reqKey -> prometheus.Counter
	durs sync.Map // op -> prometheus.Observer
}

type reqKey struct {
	op     string
	status int
}

// New registers every collector on a new registry.
func New(src Sources) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moonvault_http_requests_total",
			Help: "HTTP requests answered, by operation (route name) and status code.",
		}, []string{"operation", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "moonvault_http_request_duration_seconds",
			Help:    "Time to serve a request (authentication, handler and audit), by operation.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"operation"}),
		signatures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moonvault_signatures_total",
			Help: "Signatures made, by chain and kind (message, typed_data, transaction, psbt).",
		}, []string{"chain", "kind"}),
		policy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moonvault_policy_decisions_total",
			Help: "Policy decisions on signing requests (allow, deny, require_approval).",
		}, []string{"decision"}),
	}
	m.snapshot = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "moonvault_snapshot_last_success_timestamp_seconds",
		Help: "Unix time of the last snapshot this node streamed completely (0: none since start).",
	})
	m.reg.MustRegister(m.requests, m.duration, m.signatures, m.policy, m.snapshot,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Zero-valued series from the start, so rate() and alerts see them
	// before the first event.
	for _, c := range append(chains, "other") {
		for _, k := range append(kinds, "other") {
			m.signatures.WithLabelValues(c, k)
		}
	}
	for _, d := range append(decisions, "other") {
		m.policy.WithLabelValues(d)
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "moonvault_sealed",
		Help: "1 while the vault is sealed (or not initialised), else 0.",
	}, func() float64 {
		if src.Sealed == nil || src.Sealed() {
			return 1
		}
		return 0
	}))
	// Counters read at scrape time from the sources' pairs; a source not
	// wired reads 0.
	for _, c := range []struct {
		name, help string
		src        func() (uint64, uint64)
		second     bool
	}{
		{"moonvault_entropy_hsm_bytes_total", "Bytes of randomness drawn from the HSM for entropy augmentation.", src.Entropy, false},
		{"moonvault_entropy_health_failures_total", "NIST SP 800-90B health-test failures of the HSM entropy source (CSP generation failed closed).", src.Entropy, true},
		{"moonvault_audit_lines_total", "Audit log lines made durable (requests and checkpoints).", src.Audit, false},
		{"moonvault_audit_failures_total", "Audit sink write failures; a request whose line no sink took was refused.", src.Audit, true},
	} {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help}, func() float64 {
			if c.src == nil {
				return 0
			}
			a, b := c.src()
			if c.second {
				return float64(b)
			}
			return float64(a)
		}))
	}
	return m
}

// Registry is the registry, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the exposition (text, or OpenMetrics when asked).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// ObserveRequest counts one answered request (httpapi.Observer).
func (m *Metrics) ObserveRequest(op string, status int, d time.Duration) {
	if m == nil {
		return
	}
	k := reqKey{op, status}
	c, ok := m.reqs.Load(k)
	if !ok {
		c, _ = m.reqs.LoadOrStore(k, m.requests.WithLabelValues(op, strconv.Itoa(status)))
	}
	c.(prometheus.Counter).Inc()
	o, ok := m.durs.Load(op)
	if !ok {
		o, _ = m.durs.LoadOrStore(op, m.duration.WithLabelValues(op))
	}
	o.(prometheus.Observer).Observe(d.Seconds())
}

// Signature counts one signature made.
func (m *Metrics) Signature(chain, kind string) {
	if m == nil {
		return
	}
	m.signatures.WithLabelValues(oneOf(chain, chains), oneOf(kind, kinds)).Inc()
}

// SnapshotTaken records a snapshot streamed completely at t.
func (m *Metrics) SnapshotTaken(t time.Time) {
	if m == nil {
		return
	}
	m.snapshot.Set(float64(t.Unix()))
}

// PolicyDecision counts one policy decision (for the policy engine).
func (m *Metrics) PolicyDecision(decision string) {
	if m == nil {
		return
	}
	m.policy.WithLabelValues(oneOf(decision, decisions)).Inc()
}

func oneOf(v string, allowed []string) string {
	for _, a := range allowed {
		if v == a {
			return a
		}
	}
	return "other"
}
