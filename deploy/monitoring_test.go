package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/heal7/shadowcube/cdc"
	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/deploy/dashboards"
	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/publisher"
	"github.com/heal7/shadowcube/shadow"
)

var update = flag.Bool("update", false, "rewrite deploy/grafana/dashboards from deploy/dashboards")

const (
	rulesFile     = "prometheus/rules.yml"
	rulesTestFile = "prometheus/rules_test.yml"
	dashboardsDir = "grafana/dashboards"
)

// scrapeLabels are added by Prometheus to every scraped series.
var scrapeLabels = []string{"job", "instance"}

// metricInfo is what a registered metric offers a query.
type metricInfo struct {
	labels    []string
	histogram bool
}

// recorder registers on a real registry and keeps the collectors, so their
// descriptors can be read without observations.
type recorder struct {
	*prometheus.Registry
	cols []prometheus.Collector
}

func (r *recorder) Register(c prometheus.Collector) error {
	if err := r.Registry.Register(c); err != nil {
		return err
	}
	r.cols = append(r.cols, c)
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

var (
	descName   = regexp.MustCompile(`fqName: "([^"]+)"`)
	descLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
)

// registeredMetrics builds every stage's metrics with the stages' own
// constructors on one registry (the registry the binary uses) and returns
// the metric names with their labels.
func registeredMetrics(t *testing.T) map[string]metricInfo {
	t.Helper()
	rec := &recorder{Registry: process.NewRegistry()}

	n := testenv.StartNATS(t)
	ctx := testenv.Context(t, time.Minute)
	conn, err := natsx.Connect(ctx, natsx.Config{URL: n.URL, Registerer: rec}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)

	// cdc: New validates the config and registers; it connects nowhere.
	if _, err := cdc.New(cdc.Config{DatabaseURL: "postgres://metrics-check.invalid/db"}, cdc.Deps{JetStream: conn.JS, Registerer: rec}); err != nil {
		t.Fatal(err)
	}
	// tap: a detached capturer (no NATS connection) registers everything.
	capt, err := publisher.New(publisher.Config{Service: "metrics-check", Privacy: publisher.PrivacyConfig{Secret: bytes.Repeat([]byte("k"), 32)}}, publisher.Deps{Registerer: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = capt.Close() })
	rf, err := routes.Parse("routes.yaml", []byte("services:\n  - name: s\n    cube_url: http://127.0.0.1:1\n    routes:\n      - route: /a\n"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := shadow.New(shadow.Config{Routes: rf}, shadow.Deps{JetStream: conn.JS, Registerer: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rep.Close() })
	// sync: New validates and registers; Run would connect.
	if _, err := consumers.New(consumers.Config{Mapping: &consumers.Mapping{}, SourceURL: "postgres://metrics-check.invalid/db"},
		consumers.Deps{JetStream: conn.JS, Registerer: rec}); err != nil {
		t.Fatal(err)
	}
	if _, err := consumers.NewReconcileMetrics(rec); err != nil {
		t.Fatal(err)
	}
	if _, err := comparator.NewMetrics(rec); err != nil {
		t.Fatal(err)
	}

	out := map[string]metricInfo{}
	for _, c := range rec.cols {
		hist := false
		switch c.(type) {
		case prometheus.Histogram, *prometheus.HistogramVec:
			hist = true
		}
		ch := make(chan *prometheus.Desc, 64)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			s := d.String()
			m := descName.FindStringSubmatch(s)
			l := descLabels.FindStringSubmatch(s)
			if m == nil || l == nil {
				t.Fatalf("cannot read descriptor %s", s)
			}
			var labels []string
			for _, name := range strings.Split(l[1], ",") {
				if name = strings.TrimSuffix(strings.TrimPrefix(name, "c("), ")"); name != "" {
					labels = append(labels, name)
				}
			}
			out[m[1]] = metricInfo{labels: labels, histogram: hist}
		}
	}
	// The Go and process collectors the binary's registry carries.
	fams, err := rec.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if _, ok := out[f.GetName()]; ok {
			continue
		}
		var labels []string
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if !slices.Contains(labels, lp.GetName()) {
					labels = append(labels, lp.GetName())
				}
			}
		}
		out[f.GetName()] = metricInfo{labels: labels, histogram: f.GetType().String() == "HISTOGRAM"}
	}
	// Each stage must have contributed, or the check below proves nothing.
	for _, prefix := range []string{"shadowcube_tap_", "shadowcube_cdc_", "shadowcube_sync_", "shadowcube_shadow_", "shadowcube_compare_", "shadowcube_nats_", "go_", "process_"} {
		found := false
		for name := range out {
			found = found || strings.HasPrefix(name, prefix)
		}
		if !found {
			t.Errorf("no registered metric starts with %s", prefix)
		}
	}
	return out
}

// lookup resolves a series name to a registered metric: histograms also
// expose _bucket (with le), _sum and _count.
func lookup(known map[string]metricInfo, name string) ([]string, bool) {
	if mi, ok := known[name]; ok {
		return mi.labels, true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok {
			if mi, ok := known[base]; ok && mi.histogram {
				if suf == "_bucket" {
					return append(slices.Clone(mi.labels), "le"), true
				}
				return mi.labels, true
			}
		}
	}
	return nil, false
}

// checkExpr parses expr and checks that every selector names a known metric,
// that its label matchers use the metric's labels, and that every by(...)
// label exists on some series below it.
func checkExpr(known map[string]metricInfo, expr string) error {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	var errs []error
	seriesLabels := func(n parser.Node) map[string]bool {
		set := map[string]bool{}
		for _, l := range scrapeLabels {
			set[l] = true
		}
		parser.Inspect(n, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				ls, _ := lookup(known, vs.Name)
				for _, l := range ls {
					set[l] = true
				}
			}
			return nil
		})
		return set
	}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			if n.Name == "" {
				errs = append(errs, fmt.Errorf("selector %s has no metric name", n))
				return nil
			}
			ls, ok := lookup(known, n.Name)
			if !ok {
				errs = append(errs, fmt.Errorf("metric %s is not registered by any stage", n.Name))
				return nil
			}
			for _, m := range n.LabelMatchers {
				if m.Name != "__name__" && !slices.Contains(ls, m.Name) && !slices.Contains(scrapeLabels, m.Name) {
					errs = append(errs, fmt.Errorf("metric %s has no label %q (labels: %v)", n.Name, m.Name, ls))
				}
			}
		case *parser.AggregateExpr:
			if n.Without || len(n.Grouping) == 0 {
				return nil
			}
			have := seriesLabels(n.Expr)
			for _, g := range n.Grouping {
				if !have[g] {
					errs = append(errs, fmt.Errorf("%s: no series below has label %q", n.Op, g))
				}
			}
		}
		return nil
	})
	return errors.Join(errs...)
}

type ruleFile struct {
	Groups []struct {
		Name  string
		Rules []struct {
			Record string
			Alert  string
			Expr   string
		}
	}
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(data, &rf); err != nil {
		t.Fatal(err)
	}
	return rf
}

// dashboardExprs reads the committed dashboard files (what Grafana loads)
// and returns their PromQL expressions by file.
func dashboardExprs(t *testing.T) map[string][]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in %s (%v)", dashboardsDir, err)
	}
	out := map[string][]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Targets []struct{ Expr string }
			}
		}
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				out[f] = append(out[f], tg.Expr)
			}
		}
		if len(out[f]) == 0 {
			t.Errorf("%s has no queries", f)
		}
	}
	return out
}

// TestMonitoringMetricsRegistered parses every PromQL expression of the
// dashboards and the alert rules and checks each metric (and label) against
// the metrics the stages register on a real registry.
func TestMonitoringMetricsRegistered(t *testing.T) {
	known := registeredMetrics(t)

	// The checker must reject what is wrong, or passing proves nothing.
	for _, bad := range []string{
		`rate(shadowcube_tap_dropped_totl[5m])`,
		`shadowcube_tap_dropped_total{reasn="queue_full"}`,
		`sum by (rout) (rate(shadowcube_tap_captured_total[5m]))`,
		`shadowcube_sync_lag_seconds_bucket`,
		`rate(shadowcube_compare_compared_total[5m]`,
	} {
		if checkExpr(known, bad) == nil {
			t.Errorf("checkExpr accepted %s", bad)
		}
	}

	rf := readRules(t)
	n := 0
	// Recorded series are known to the expressions after them.
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if err := checkExpr(known, r.Expr); err != nil {
				t.Errorf("%s: rule %s%s: %v", rulesFile, r.Record, r.Alert, err)
			}
			n++
			if r.Record != "" {
				var labels []string
				e, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
				if err == nil {
					if agg, ok := e.(*parser.BinaryExpr); ok {
						e = agg.LHS
					}
					if agg, ok := e.(*parser.AggregateExpr); ok {
						labels = agg.Grouping
					}
				}
				known[r.Record] = metricInfo{labels: labels}
			}
		}
	}
	for f, exprs := range dashboardExprs(t) {
		for _, e := range exprs {
			if err := checkExpr(known, e); err != nil {
				t.Errorf("%s: %q: %v", f, e, err)
			}
			n++
		}
	}
	t.Logf("%d expressions checked against %d registered metrics", n, len(known))
}

// TestDashboardsUpToDate regenerates the dashboards from deploy/dashboards
// and compares them with the committed JSON (-update rewrites them).
func TestDashboardsUpToDate(t *testing.T) {
	want := map[string]bool{}
	for _, d := range dashboards.All() {
		data, err := d.JSON()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dashboardsDir, d.File)
		want[path] = true
		checkLayout(t, path, data)
		if *update {
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (regenerate: go test ./deploy -run TestDashboardsUpToDate -update)", err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s differs from what deploy/dashboards generates (regenerate: go test ./deploy -run TestDashboardsUpToDate -update)", path)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	for _, f := range files {
		if !want[f] {
			t.Errorf("%s is not generated by deploy/dashboards: remove it or add it there", f)
		}
	}
	// The provisioned datasource is the one the panels name.
	ds, err := os.ReadFile("grafana/provisioning/datasources/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var prov struct {
		Datasources []struct{ UID, Type string }
	}
	if err := yaml.Unmarshal(ds, &prov); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(prov.Datasources, func(d struct{ UID, Type string }) bool {
		return d.UID == dashboards.DatasourceUID && d.Type == "prometheus"
	}) {
		t.Errorf("grafana/provisioning/datasources provisions no prometheus datasource with uid %s", dashboards.DatasourceUID)
	}
	for _, name := range []string{"overview.json", "tap.json", "cdc.json", "sync.json", "shadow.json", "compare.json"} {
		if !want[filepath.Join(dashboardsDir, name)] {
			t.Errorf("dashboard %s missing", name)
		}
	}
}

// TestAlertRulesPromtool runs promtool's syntax check and unit tests on the
// rules, and checks rules_test.yml has a case for every alert.
func TestAlertRulesPromtool(t *testing.T) {
	rf := readRules(t)
	data, err := os.ReadFile(rulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		}
	}
	if err := yaml.Unmarshal(data, &tests); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	alerts := 0
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			if !fires[r.Alert] || !quiet[r.Alert] {
				t.Errorf("alert %s: rules_test.yml needs a case where it fires and one where it does not (fires %v, quiet %v)", r.Alert, fires[r.Alert], quiet[r.Alert])
			}
		}
	}
	if alerts == 0 {
		t.Fatal("no alert in rules.yml")
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if testenv.InCI() {
			t.Fatal("promtool not found (Debian package prometheus; .ci/run installs it)")
		}
		t.Skip("promtool not found: install the Debian package prometheus to run the rule tests")
	}
	for _, args := range [][]string{{"check", "rules", rulesFile}, {"test", "rules", rulesTestFile}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// checkLayout checks what Grafana needs of a generated model: a uid, unique
// panel ids, panels inside the 24-column grid, a datasource and a query on
// every non-row panel.
func checkLayout(t *testing.T, path string, data []byte) {
	t.Helper()
	var d struct {
		UID    string
		Title  string
		Panels []struct {
			ID         int
			Type       string
			Title      string
			Datasource *struct{ UID string }
			GridPos    struct{ H, W, X, Y int }
			Targets    []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("%s: uid or title empty", path)
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("%s: panel id %d used twice", path, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("%s: panel %q outside the grid: %+v", path, p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != dashboards.DatasourceUID {
			t.Errorf("%s: panel %q does not use datasource %s", path, p.Title, dashboards.DatasourceUID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", path, p.Title)
		}
	}
}
