package shadow

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/internal/stage"
)

// Outcomes of one request message, the outcome label of
// shadowcube_shadow_replays_total.
const (
	outcomeReplayed     = "replayed"     // the cube answered (any status)
	outcomeCubeError    = "cube-error"   // transport error (connection refused, reset, ...)
	outcomeTimeout      = "timeout"      // the cube did not answer within the timeout
	outcomeCircuitOpen  = "circuit-open" // not sent: the target's breaker is open (secondary)
	outcomeDeferred     = "deferred"     // the cube gave no real answer: handed back to JetStream
	outcomeSkipped      = "skipped"      // not replayed by policy: skipped_total has the reason
	outcomeUnknownSvc   = "unknown-service"
	outcomeUnknownRoute = "unknown-route"
	outcomeDeadLetter   = "dead-letter" // undecodable message, sent to dlq.shadow
)

type metrics struct {
	replays          *prometheus.CounterVec
	skipped          *prometheus.CounterVec
	rechecks         *prometheus.CounterVec
	latency          *prometheus.HistogramVec
	breakerState     *prometheus.GaugeVec
	breakerChanges   *prometheus.CounterVec
	stale            *prometheus.CounterVec
	freshnessWait    *prometheus.HistogramVec
	freshnessWaiting *prometheus.GaugeVec
	inFlight         prometheus.Gauge
	publishFailures  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shadowcube_shadow_replays_total",
			Help: "Captured requests handled by the shadow replayer, by service, route template and outcome (replayed, cube-error, timeout, deferred, skipped, unknown-*, dead-letter).",
		}, []string{"service", "route", "outcome"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shadowcube_shadow_skipped_total",
			Help: "Captured requests not replayed, by service, route template and reason (write, legacy-unauthorized, never, method, body-truncated, sampled-out).",
		}, []string{"service", "route", "reason"}),
		rechecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shadowcube_shadow_legacy_rechecks_total",
			Help: "Reads whose cube answer differed from the captured one, asked again of legacy_url: moved-on (legacy now answers as the cube), differs, error.",
		}, []string{"service", "route", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shadowcube_shadow_replay_seconds",
			Help:    "Answer latency by side: legacy (as captured), cube and secondary (as replayed).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"service", "route", "side"}),
		breakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shadowcube_shadow_breaker_state",
			Help: "Circuit breaker state per target: 0 closed, 1 half-open, 2 open.",
		}, []string{"target"}),
		breakerChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shadowcube_shadow_breaker_transitions_total",
			Help: "Circuit breaker state changes per target and new state.",
		}, []string{"target", "state"}),
		stale: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shadowcube_shadow_stale_cube_total",
			Help: "Replays sent after the freshness wait expired (result tagged stale).",
		}, []string{"service", "route"}),
		freshnessWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shadowcube_shadow_freshness_wait_seconds",
			Help:    "Time replays waited for the cube's sync watermark to pass the capture time.",
			Buckets: []float64{0, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"service"}),
		freshnessWaiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shadowcube_shadow_freshness_waiting",
			Help: "Requests held at the freshness barrier now, waiting for their cube's sync watermark.",
		}, []string{"service"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shadowcube_shadow_in_flight",
			Help: "Request messages being handled (waiting for freshness, replaying or publishing).",
		}),
		publishFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shadowcube_shadow_publish_failures_total",
			Help: "Results JetStream did not acknowledge; the request is nak'ed and replayed later.",
		}),
	}
	if err := stage.Register(reg, "shadow", m.replays, m.skipped, m.rechecks, m.latency, m.breakerState, m.breakerChanges, m.stale, m.freshnessWait, m.freshnessWaiting, m.inFlight, m.publishFailures); err != nil {
		return nil, err
	}
	return m, nil
}

// replayedObs are a route's series of a request replayed with a cube
// answer (outcome replayed), looked up once per route instead of once per
// request: created together on the first such request, as the per-request
// lookups would have created them.
type replayedObs struct {
	replays      prometheus.Counter
	legacy, cube prometheus.Observer
}

// replayedOf returns rt's replayedObs, creating them on first use.
func (m *metrics) replayedOf(s *service, rt *routes.Route) *replayedObs {
	if o, ok := s.replayed.Load(rt); ok {
		return o.(*replayedObs)
	}
	o := &replayedObs{
		replays: m.replays.WithLabelValues(s.spec.Name, rt.Route, outcomeReplayed),
		legacy:  m.latency.WithLabelValues(s.spec.Name, rt.Route, "legacy"),
		cube:    m.latency.WithLabelValues(s.spec.Name, rt.Route, "cube"),
	}
	got, _ := s.replayed.LoadOrStore(rt, o)
	return got.(*replayedObs)
}
