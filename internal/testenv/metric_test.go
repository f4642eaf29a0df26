package testenv

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricReadsByNameAndLabels: Metric picks the one matching sample of a
// counter vector, a gauge and a histogram's count; MetricSum adds up the
// samples a partial label set matches and gives 0 for an untouched vector;
// Metric fails the test for an absent family and an ambiguous match.
func TestMetricReadsByNameAndLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total", Help: "h"}, []string{"a", "b"})
	untouched := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "u_total", Help: "h"}, []string{"a"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g", Help: "h"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h_seconds", Help: "h"})
	reg.MustRegister(vec, untouched, g, h)
	vec.WithLabelValues("x", "1").Add(2)
	vec.WithLabelValues("x", "2").Add(3)
	vec.WithLabelValues("y", "1").Add(5)
	g.Set(-1.5)
	h.Observe(1)
	h.Observe(2)

	for _, c := range []struct {
		got, want float64
		what      string
	}{
		{Metric(t, reg, "c_total", "a", "x", "b", "2"), 3, "Metric c_total{a=x,b=2}"},
		{Metric(t, reg, "c_total", "b", "2"), 3, "Metric c_total{b=2}"},
		{Metric(t, reg, "g"), -1.5, "Metric g"},
		{Metric(t, reg, "h_seconds"), 2, "Metric h_seconds (count)"},
		{MetricSum(t, reg, "c_total", "a", "x"), 5, "MetricSum c_total{a=x}"},
		{MetricSum(t, reg, "c_total"), 10, "MetricSum c_total"},
		{MetricSum(t, reg, "u_total", "a", "x"), 0, "MetricSum of an untouched vector"},
		{MetricSum(t, reg, "c_total", "a", "z"), 0, "MetricSum without a match"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}

	for _, c := range []struct {
		read func(tb testing.TB)
		msg  string
	}{
		{func(tb testing.TB) { Metric(tb, reg, "missing_total") }, "no such metric"},
		{func(tb testing.TB) { Metric(tb, reg, "c_total", "a", "x") }, "2 samples match"},
		{func(tb testing.TB) { Metric(tb, reg, "c_total", "a", "z") }, "0 samples match"},
		{func(tb testing.TB) { Metric(tb, reg, "c_total", "a") }, "not name, value pairs"},
	} {
		r := &fatalRecorder{TB: t}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // Fatalf ends the goroutine as it ends a test
			defer wg.Done()
			c.read(r)
		}()
		wg.Wait()
		if !strings.Contains(r.msg, c.msg) {
			t.Errorf("failure message %q, want it to contain %q", r.msg, c.msg)
		}
	}
}

// fatalRecorder records the first Fatalf instead of failing the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	if r.msg == "" {
		r.msg = fmt.Sprintf(format, args...)
	}
	runtime.Goexit()
}
