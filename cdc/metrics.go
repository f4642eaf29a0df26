package cdc

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/stage"
	"github.com/heal7/shadowcube/schemas"
)

type metrics struct {
	events        *prometheus.CounterVec
	byOp          map[schemas.Op]prometheus.Counter
	bytes         prometheus.Counter
	transactions  prometheus.Counter
	skippedTx     prometheus.Counter
	publishLat    prometheus.Histogram
	inflight      prometheus.Gauge
	confirmedLSN  prometheus.Gauge
	lagBytes      prometheus.Gauge
	lagSeconds    prometheus.Gauge
	retainedBytes prometheus.Gauge
	spills        prometheus.Counter
	spillBytes    prometheus.Counter
	failures      prometheus.Counter
	reordered     prometheus.Counter
	sessions      prometheus.Counter
	snapshotRows  *prometheus.CounterVec
	snapshotTotal prometheus.Gauge
	snapshotDone  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_cdc_events_total",
			Help: "Change events acknowledged by JetStream, by op."}, []string{"op"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "shadowcube_cdc_published_bytes_total",
			Help: "Bytes of change events published."}),
		transactions: prometheus.NewCounter(prometheus.CounterOpts{Name: "shadowcube_cdc_transactions_total",
			Help: "Source transactions published."}),
		skippedTx: prometheus.NewCounter(prometheus.CounterOpts{Name: "shadowcube_cdc_skipped_transactions_total",
			Help: "Source transactions dropped because their origin marker is in the ignore list."}),
		publishLat: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shadowcube_cdc_publish_seconds",
			Help: "Time from publish to JetStream acknowledgement.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9)}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shadowcube_cdc_inflight_events",
			Help: "Events published and not yet acknowledged by JetStream."}),
		confirmedLSN: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shadowcube_cdc_confirmed_lsn",
			Help: "LSN acknowledged to PostgreSQL (every change up to it is stored in JetStream)."}),
		lagBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shadowcube_cdc_lag_bytes",
			Help: "Server WAL end minus the acknowledged LSN."}),
		lagSeconds: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shadowcube_cdc_lag_seconds",
			Help: "Age of the commit time of the last transaction acknowledged by JetStream."}),
		retainedBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shadowcube_cdc_slot_retained_wal_bytes",
			Help: "WAL the slot keeps on the source (current WAL LSN minus restart_lsn)."}),
		spills: prometheus.NewCounter(prometheus.CounterOpts{Name: "shadowcube_cdc_spilled_transactions_total",
			Help: "Transactions larger than the spill threshold, buffered on disk."}),
		spillBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "shadowcube_cdc_spilled_bytes_total",
			Help: "Bytes written to spill files."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "shadowcube_cdc_session_failures_total",
			Help: "Replication sessions that ended in an error and were retried."}),
		reordered: prometheus.NewCounter(prometheus.CounterOpts{Name: "shadowcube_cdc_publish_gaps_total",
			Help: "Publish failures after which a later event was stored before the failed one was re-published."}),
		sessions: prometheus.NewCounter(prometheus.CounterOpts{Name: "shadowcube_cdc_sessions_total",
			Help: "Replication sessions started."}),
		snapshotRows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_cdc_snapshot_rows_total",
			Help: "Rows copied by the initial snapshot, by table."}, []string{"table"}),
		snapshotTotal: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shadowcube_cdc_snapshot_tables",
			Help: "Tables the running snapshot copies."}),
		snapshotDone: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shadowcube_cdc_snapshot_tables_done",
			Help: "Tables the running snapshot has copied."}),
	}
	m.byOp = map[schemas.Op]prometheus.Counter{}
	for _, op := range []schemas.Op{schemas.OpSnapshot, schemas.OpInsert, schemas.OpUpdate, schemas.OpDelete, schemas.OpTruncate, schemas.OpSchema} {
		m.byOp[op] = m.events.WithLabelValues(string(op))
	}
	if err := stage.Register(reg, "cdc", m.events, m.bytes, m.transactions, m.skippedTx, m.publishLat, m.inflight,
		m.confirmedLSN, m.lagBytes, m.lagSeconds, m.retainedBytes, m.spills, m.spillBytes,
		m.failures, m.reordered, m.sessions, m.snapshotRows, m.snapshotTotal, m.snapshotDone); err != nil {
		return nil, err
	}
	return m, nil
}

// event is the counter of op (read-only map: safe without a lock).
func (m *metrics) event(op schemas.Op) prometheus.Counter {
	if c, ok := m.byOp[op]; ok {
		return c
	}
	return m.events.WithLabelValues(string(op))
}
