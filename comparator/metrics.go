package comparator

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/stage"
)

// maxSignatureLabels bounds the signature label's cardinality; later
// signatures are counted under "other".
const maxSignatureLabels = 200

// Metrics are the comparator's Prometheus metrics.
type Metrics struct {
	compared   *prometheus.CounterVec
	matchRatio *prometheus.GaugeVec
	mismatches *prometheus.CounterVec
	signatures *prometheus.CounterVec
	noisePairs *prometheus.CounterVec
	noiseDiffs *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	cubeErrors *prometheus.CounterVec
	stale      *prometheus.CounterVec
	accepted   *prometheus.CounterVec
	badMsgs    *prometheus.CounterVec
	skipped    *prometheus.CounterVec
	aiAccuracy *prometheus.GaugeVec
	aiFlagged  *prometheus.GaugeVec

	mu     sync.Mutex
	counts map[string]*[2]float64 // route → matches, judged
	sigs   map[string]bool
}

// NewMetrics registers the comparator metrics on reg (nil: not
// registered); a conflict is an error.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	rl := []string{"service", "route"}
	m := &Metrics{
		compared: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_compare_compared_total",
			Help: "Pairs compared, by verdict (match, mismatch, noise, error)."}, append(rl, "verdict")),
		matchRatio: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shadowcube_compare_match_ratio",
			Help: "Share of compared pairs (cube errors excluded) that matched or differed only by noise, since start."}, rl),
		mismatches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_compare_mismatches_total",
			Help: "Mismatching pairs by cause tag (a pair may carry several)."}, append(rl, "cause")),
		signatures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_compare_signature_mismatches_total",
			Help: "Mismatching pairs by signature (first 200 signatures; the rest as other)."}, []string{"signature", "accepted"}),
		noisePairs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_compare_noise_suppressed_total",
			Help: "Pairs whose every difference was suppressed as noise."}, rl),
		noiseDiffs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_compare_noise_suppressed_diffs_total",
			Help: "Field differences suppressed as noise."}, rl),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "shadowcube_compare_replay_latency_seconds",
			Help: "Answer latency of the legacy (captured) and the cube (replayed), side by side.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)},
			append(rl, "side")),
		cubeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_compare_cube_errors_total",
			Help: "Cube failures: timeout, error (no answer) or 5xx status."}, append(rl, "kind")),
		stale: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_compare_stale_cube_total",
			Help: "Pairs replayed after the freshness wait expired (stale-cube)."}, rl),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_compare_accepted_total",
			Help: "Mismatches whose signature is accepted as expected."}, rl),
		badMsgs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_compare_dead_letters_total",
			Help: "Messages that could not be decoded, sent to the DLQ."}, []string{"reason"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_compare_skipped_total",
			Help: "Requests shadow did not replay, by policy reason (counted, not compared)."}, append(rl, "reason")),
		aiAccuracy: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shadowcube_compare_ai_accuracy_ratio",
			Help: "Accuracy against the truth label, by side (legacy, cube)."}, append(rl, "side")),
		aiFlagged: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shadowcube_compare_ai_rollback_flag",
			Help: "1 when the cube's accuracy is significantly lower than the legacy's by more than the allowed drop."}, rl),
		counts: map[string]*[2]float64{},
		sigs:   map[string]bool{},
	}
	if err := stage.Register(reg, "compare", m.compared, m.matchRatio, m.mismatches, m.signatures, m.noisePairs, m.noiseDiffs,
		m.latency, m.cubeErrors, m.stale, m.accepted, m.badMsgs, m.skipped, m.aiAccuracy, m.aiFlagged); err != nil {
		return nil, err
	}
	return m, nil
}

// Observe records one outcome.
func (m *Metrics) Observe(o *Outcome) {
	if m == nil {
		return
	}
	if o.Verdict == VerdictSkipped {
		m.skipped.WithLabelValues(o.Service, o.Route, o.Skipped).Inc()
		return // not compared: no latency, no match ratio
	}
	m.compared.WithLabelValues(o.Service, o.Route, string(o.Verdict)).Inc()
	m.latency.WithLabelValues(o.Service, o.Route, "legacy").Observe(o.LegacyLatency.Seconds())
	if o.Verdict != VerdictError {
		m.latency.WithLabelValues(o.Service, o.Route, "cube").Observe(o.CubeLatency.Seconds())
	}
	switch {
	case o.Verdict == VerdictError && strings.Contains(strings.ToLower(o.CubeError), "timeout"):
		m.cubeErrors.WithLabelValues(o.Service, o.Route, "timeout").Inc()
	case o.Verdict == VerdictError:
		m.cubeErrors.WithLabelValues(o.Service, o.Route, "error").Inc()
	case o.CubeStatus >= 500:
		m.cubeErrors.WithLabelValues(o.Service, o.Route, "5xx").Inc()
	}
	if o.Stale {
		m.stale.WithLabelValues(o.Service, o.Route).Inc()
	}
	if len(o.NoiseDiffs) > 0 {
		m.noiseDiffs.WithLabelValues(o.Service, o.Route).Add(float64(len(o.NoiseDiffs)))
	}
	if o.Verdict == VerdictNoise {
		m.noisePairs.WithLabelValues(o.Service, o.Route).Inc()
	}
	if o.Verdict == VerdictMismatch {
		for _, c := range o.Causes {
			m.mismatches.WithLabelValues(o.Service, o.Route, c).Inc()
		}
		if o.Accepted {
			m.accepted.WithLabelValues(o.Service, o.Route).Inc()
		}
	}
	m.mu.Lock()
	if o.Signature != "" {
		sig := o.Signature
		if !m.sigs[sig] {
			if len(m.sigs) >= maxSignatureLabels {
				sig = "other"
			} else {
				m.sigs[sig] = true
			}
		}
		acc := "false"
		if o.Accepted {
			acc = "true"
		}
		m.signatures.WithLabelValues(sig, acc).Inc()
	}
	if o.Verdict != VerdictError {
		k := routeKey(o.Service, o.Route)
		c := m.counts[k]
		if c == nil {
			c = &[2]float64{}
			m.counts[k] = c
		}
		c[1]++
		if o.Verdict == VerdictMatch || o.Verdict == VerdictNoise || o.Verdict == VerdictMovedOn {
			c[0]++
		}
		m.matchRatio.WithLabelValues(o.Service, o.Route).Set(c[0] / c[1])
	}
	m.mu.Unlock()
}

// ObserveAI publishes the running AI report of a route.
func (m *Metrics) ObserveAI(service, route string, r AIReport) {
	if m == nil || r.Labelled == 0 {
		return
	}
	m.aiAccuracy.WithLabelValues(service, route, "legacy").Set(r.LegacyAcc)
	m.aiAccuracy.WithLabelValues(service, route, "cube").Set(r.CubeAcc)
	f := 0.0
	if r.Flagged {
		f = 1
	}
	m.aiFlagged.WithLabelValues(service, route).Set(f)
}

func (m *Metrics) deadLetter(reason string) {
	if m != nil {
		m.badMsgs.WithLabelValues(reason).Inc()
	}
}
