package testenv

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metric returns the value of the one sample of the metric family name in g
// whose labels include labels, given as name, value pairs:
//
//	testenv.Metric(t, reg, "shadowcube_cdc_events_total", "op", "insert")
//
// A counter or gauge gives its value, a histogram or summary its sample
// count. The test fails when g has no family of that name (a plain metric
// that is not registered) or when no sample, or more than one, matches. A
// vector whose children were never touched has no family yet: read it with
// MetricSum, which gives 0 there.
//
// This is the one way tests read a metric by name; a test holding the
// collector itself reads it with testutil.ToFloat64.
func Metric(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	fam, want := gatherFamily(t, g, name, labels)
	if fam == nil {
		t.Fatalf("metric %s%s: no such metric gathered", name, labelText(want))
		return 0
	}
	var found []*dto.Metric
	for _, m := range fam.GetMetric() {
		if hasLabels(m, want) {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("metric %s%s: %d samples match, want 1", name, labelText(want), len(found))
		return 0
	}
	return sampleValue(found[0])
}

// MetricSum sums the samples of the metric family name in g whose labels
// include labels (name, value pairs), as Metric reads them; 0 when the
// family is absent or no sample matches.
func MetricSum(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	fam, want := gatherFamily(t, g, name, labels)
	var sum float64
	for _, m := range fam.GetMetric() {
		if hasLabels(m, want) {
			sum += sampleValue(m)
		}
	}
	return sum
}

func gatherFamily(t testing.TB, g prometheus.Gatherer, name string, labels []string) (*dto.MetricFamily, [][2]string) {
	t.Helper()
	if len(labels)%2 != 0 {
		t.Fatalf("metric %s: labels %q are not name, value pairs", name, labels)
	}
	var want [][2]string
	for i := 0; i < len(labels); i += 2 {
		want = append(want, [2]string{labels[i], labels[i+1]})
	}
	fams, err := g.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return f, want
		}
	}
	return nil, want
}

func hasLabels(m *dto.Metric, want [][2]string) bool {
	for _, w := range want {
		ok := false
		for _, l := range m.GetLabel() {
			if l.GetName() == w[0] && l.GetValue() == w[1] {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Summary != nil:
		return float64(m.Summary.GetSampleCount())
	}
	return 0
}

func labelText(want [][2]string) string {
	if len(want) == 0 {
		return ""
	}
	parts := make([]string, len(want))
	for i, w := range want {
		parts[i] = fmt.Sprintf("%s=%q", w[0], w[1])
	}
	return "{" + strings.Join(parts, ",") + "}"
}
