package consumers

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/stage"
)

// Metrics are the sync stage's Prometheus metrics, labelled by target.
type Metrics struct {
	applied    *prometheus.CounterVec
	txs        *prometheus.CounterVec
	batchSize  *prometheus.HistogramVec
	batchTime  *prometheus.HistogramVec
	lag        *prometheus.GaugeVec
	watermark  *prometheus.GaugeVec
	retries    *prometheus.CounterVec
	dlq        *prometheus.CounterVec
	dlqDepth   prometheus.Gauge
	stopped    *prometheus.GaugeVec
	skippedTxs *prometheus.CounterVec
	reordered  *prometheus.CounterVec
	reselected *prometheus.CounterVec
	conflicts  *prometheus.CounterVec
	copied     *prometheus.CounterVec
	staged     *prometheus.CounterVec
}

// NewMetrics registers the sync metrics on reg (nil: not registered). A
// conflict (the metrics already registered on reg) is an error.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_sync_conflicts_total",
			Help: "Two-way sync conflicts (consumers/conflict.go), by target table and winning side (legacy or cube)."}, []string{"table", "winner"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_sync_applied_changes_total",
			Help: "Source row changes applied to the target (mapped tables only)."}, []string{"target"}),
		txs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_sync_applied_transactions_total",
			Help: "Source transactions (and snapshot rows) consumed and checkpointed, mapped or not."}, []string{"target"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "shadowcube_sync_batch_events",
			Help: "Source events per target transaction.", Buckets: prometheus.ExponentialBuckets(1, 4, 9)}, []string{"target"}),
		batchTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "shadowcube_sync_batch_seconds",
			Help: "Time to apply and commit one target transaction.", Buckets: prometheus.ExponentialBuckets(0.0005, 3, 10)}, []string{"target"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shadowcube_sync_lag_seconds",
			Help: "Now minus the source commit time of the last applied transaction."}, []string{"target"}),
		watermark: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shadowcube_sync_watermark_timestamp_seconds",
			Help: "Source commit time of the last applied transaction (Unix seconds)."}, []string{"target"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_sync_retries_total",
			Help: "Transient failures retried."}, []string{"target"}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_sync_dlq_total",
			Help: "Poison transactions sent to the DLQ."}, []string{"target"}),
		dlqDepth: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shadowcube_sync_dlq_depth",
			Help: "Messages waiting on dlq.sync."}),
		stopped: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shadowcube_sync_stopped",
			Help: "1 while a target is halted at a poison transaction (policy stop)."}, []string{"target"}),
		skippedTxs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_sync_duplicates_skipped_total",
			Help: "Source events skipped because the target already held them (duplicates, replays)."}, []string{"target"}),
		reordered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_sync_reordered_transactions_total",
			Help: "Source transactions that arrived before an earlier one (a publish lost and stored again later) and waited for it."}, []string{"target"}),
		copied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_sync_copied_rows_total",
			Help: "Rows inserted with COPY (runs of new rows of plainly mapped tables, consumers/setapply.go)."}, []string{"target"}),
		staged: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_sync_staged_rows_total",
			Help: "Rows upserted through a staging table (runs of plainly mapped tables whose keys the target holds, consumers/staging.go)."}, []string{"target"}),
		reselected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_sync_reselected_rows_total",
			Help: "Rows re-read from the source because an update left TOAST values unchanged that the target could not supply."}, []string{"target"}),
	}
	if err := stage.Register(reg, "sync", m.applied, m.txs, m.batchSize, m.batchTime, m.lag, m.watermark, m.retries, m.dlq, m.dlqDepth, m.stopped, m.skippedTxs, m.reordered, m.reselected, m.conflicts, m.copied, m.staged); err != nil {
		return nil, err
	}
	return m, nil
}
