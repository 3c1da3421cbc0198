package deploy

import (
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/moonvault/moonvault/internal/metrics"
)

// TestPrometheusRules parses the alerting rules with Prometheus's own rule
// parser (what promtool check rules runs) and checks that every metric they
// name is one the vault exports, so a renamed metric cannot silently
// disable an alert.
func TestPrometheusRules(t *testing.T) {
	raw, err := os.ReadFile("prometheus/moonvault-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := parser.NewParser(parser.Options{})
	groups, errs := rulefmt.Parse(raw, false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("rules do not parse: %v", errs)
	}
	exported := map[string]bool{"up": true}
	m := metrics.New(metrics.Sources{})
	m.ObserveRequest("sys.health", 200, 0) // label vectors appear once used
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		exported[f.GetName()] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				exported[f.GetName()+s] = true
			}
		}
	}
	alerts := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			expr, err := p.ParseExpr(r.Expr)
			if err != nil {
				t.Fatalf("%s: %v", r.Alert, err)
			}
			parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok && !exported[vs.Name] {
					t.Errorf("alert %s uses %s, which the vault does not export", r.Alert, vs.Name)
				}
				return nil
			})
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("alert %s needs a severity label and a summary", r.Alert)
			}
		}
	}
	for _, want := range []string{"MoonVaultSealed", "MoonVaultAuditFailing", "MoonVaultEntropyHealthFailure", "MoonVaultDown"} {
		if !strings.Contains(string(raw), "alert: "+want+"\n") {
			t.Errorf("alert %s missing", want)
		}
	}
	if alerts < 6 {
		t.Fatalf("only %d alerts", alerts)
	}
}

// TestScrapeConfigExample keeps the example scrape job valid YAML that
// points at the metrics path.
func TestScrapeConfigExample(t *testing.T) {
	raw, err := os.ReadFile("prometheus/scrape-config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			JobName     string `json:"job_name"`
			Scheme      string `json:"scheme"`
			MetricsPath string `json:"metrics_path"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.ScrapeConfigs) != 1 || cfg.ScrapeConfigs[0].MetricsPath != "/v1/sys/metrics" || cfg.ScrapeConfigs[0].Scheme != "https" || cfg.ScrapeConfigs[0].JobName != "moonvault" {
		t.Fatalf("scrape config: %+v", cfg)
	}
}
