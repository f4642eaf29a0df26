package publisher

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/internal/stage"
	"github.com/heal7/shadowcube/schemas"
)

// metrics are the capture stage's Prometheus metrics (shadowcube_tap_*).
// Per-route children are resolved once per route template, so the user path
// does no label lookups.
type metrics struct {
	requests        *prometheus.CounterVec
	captured        *prometheus.CounterVec
	bytes           *prometheus.CounterVec
	upstream        *prometheus.HistogramVec
	drops           *prometheus.CounterVec
	published       prometheus.Counter
	bodyDropped     prometheus.Counter
	captureUp       prometheus.GaugeFunc
	connectFailures prometheus.Counter
	cubeFallback    prometheus.Counter
	queueDepth      prometheus.Gauge
	publishSeconds  prometheus.Histogram

	service string
	mu      sync.RWMutex
	routes  map[string]*routeMetrics
	reasons sync.Map // reason → prometheus.Counter
}

type routeMetrics struct {
	route                        string
	subject                      string // legacy.req.<service>.<route>, for the capturer's own service
	legacyRequests, cubeRequests prometheus.Counter
	captured, bytes              prometheus.Counter
	legacySeconds, cubeSeconds   prometheus.Observer
}

func newMetrics(reg prometheus.Registerer, service string, svc *routes.Service, up func() float64) (*metrics, error) {
	m := &metrics{
		service: service,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shadowcube_tap_requests_total", Help: "Requests seen by the tap or middleware, by route template and by who answered the user (legacy or cube).",
		}, []string{"route", "target"}),
		captured: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shadowcube_tap_captured_total", Help: "Request events accepted into the publish queue, by route template.",
		}, []string{"route"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shadowcube_tap_captured_bytes_total", Help: "Body bytes (request + response) of captured events, by route template.",
		}, []string{"route"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "shadowcube_tap_upstream_seconds", Help: "Time from request to the end of the upstream answer, by route template and target.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route", "target"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shadowcube_tap_dropped_total", Help: "Captures lost, by reason (queue_full, nats_unavailable, publish_failed, upstream_error, legacy_busy, not_replayable, spill_full, closed, too_large).",
		}, []string{"reason"}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shadowcube_tap_published_total", Help: "Request events acknowledged by JetStream.",
		}),
		bodyDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shadowcube_tap_bodies_dropped_total", Help: "Captured bodies removed because they could not be redacted safely (truncated or malformed JSON while redaction paths are set); the event is marked truncated.",
		}),
		captureUp: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shadowcube_tap_capture_up", Help: "1 when the capturer has a NATS connection to publish to, 0 while capture is down (requests are still proxied; captures are dropped or spilled).",
		}, up),
		connectFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shadowcube_tap_nats_connect_failures_total", Help: "Failed attempts to reach NATS while capture is down (the tap keeps proxying).",
		}),
		cubeFallback: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shadowcube_tap_cube_fallback_total", Help: "Rolled-out users answered by the legacy service because the cube gave no answer.",
		}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shadowcube_tap_queue_depth", Help: "Events waiting in the in-memory publish queue.",
		}),
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "shadowcube_tap_publish_seconds", Help: "Time from publish to JetStream ack (sampled 1 in 16).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		routes: map[string]*routeMetrics{},
	}
	if err := stage.Register(reg, "tap", m.requests, m.captured, m.bytes, m.upstream, m.drops, m.published, m.bodyDropped, m.captureUp, m.connectFailures, m.cubeFallback, m.queueDepth, m.publishSeconds); err != nil {
		return nil, err
	}
	m.route(OtherRoute)
	if svc != nil {
		for _, r := range svc.Routes {
			m.route(r.Route)
		}
	}
	return m, nil
}

func (m *metrics) route(route string) *routeMetrics {
	m.mu.RLock()
	rm := m.routes[route]
	m.mu.RUnlock()
	if rm != nil {
		return rm
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if rm = m.routes[route]; rm != nil {
		return rm
	}
	if len(m.routes) > 1000 { // imported files could name any route: bound the label set
		return m.routes[OtherRoute]
	}
	rm = &routeMetrics{
		route:          route,
		subject:        schemas.RequestSubject(m.service, route),
		legacyRequests: m.requests.WithLabelValues(route, "legacy"),
		cubeRequests:   m.requests.WithLabelValues(route, "cube"),
		captured:       m.captured.WithLabelValues(route),
		bytes:          m.bytes.WithLabelValues(route),
		legacySeconds:  m.upstream.WithLabelValues(route, "legacy"),
		cubeSeconds:    m.upstream.WithLabelValues(route, "cube"),
	}
	m.routes[route] = rm
	return rm
}

func (m *metrics) dropped(reason string) prometheus.Counter {
	if c, ok := m.reasons.Load(reason); ok {
		return c.(prometheus.Counter)
	}
	c := m.drops.WithLabelValues(reason)
	m.reasons.Store(reason, c)
	return c
}
