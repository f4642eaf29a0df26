package consumers

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ReconcileMetrics are the figures one reconcile run leaves for alerting.
// reconcile is a one-shot command (a CronJob, a release step), so nothing
// scrapes it: the command pushes these to a Prometheus Pushgateway, grouped
// by target (the Pushgateway adds the target label from the grouping key, so
// the gauges carry none), and the alert rules read them there ("reconcile
// stale": the last run is too old; "reconcile dirty": it found differences
// or failed). Use one ReconcileMetrics (one registry) per target.
type ReconcileMetrics struct {
	lastRun     prometheus.Gauge
	differences prometheus.Gauge
	tables      prometheus.Gauge
	failed      prometheus.Gauge
}

// NewReconcileMetrics registers the reconcile metrics on reg; a name already
// registered is an error, never a panic.
func NewReconcileMetrics(reg prometheus.Registerer) (*ReconcileMetrics, error) {
	m := &ReconcileMetrics{
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shadowcube_reconcile_last_run_timestamp_seconds",
			Help: "When the last reconcile run of the target ended (Unix seconds)."}),
		differences: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shadowcube_reconcile_differences",
			Help: "Differences (rows and sequences) the last reconcile run of the target found."}),
		tables: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shadowcube_reconcile_tables",
			Help: "Tables the last reconcile run of the target compared."}),
		failed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shadowcube_reconcile_failed",
			Help: "1 when the last reconcile run of the target ended in an error before comparing every table."}),
	}
	for _, c := range []prometheus.Collector{m.lastRun, m.differences, m.tables, m.failed} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("reconcile metrics: %w", err)
		}
	}
	return m, nil
}

// Record sets the figures of one target's run: reps are its table reports,
// runErr the error that ended it early (nil: every table was compared).
func (m *ReconcileMetrics) Record(reps []TableReport, runErr error, at time.Time) {
	diffs := 0
	for _, r := range reps {
		diffs += r.Differences
	}
	failed := 0.0
	if runErr != nil {
		failed = 1
	}
	m.lastRun.Set(float64(at.UnixNano()) / 1e9)
	m.differences.Set(float64(diffs))
	m.tables.Set(float64(len(reps)))
	m.failed.Set(failed)
}
