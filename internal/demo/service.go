package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Service names, as used by `shadowcube demo-service <name>` and in metrics.
const (
	LegacySajuName = "legacy-saju"
	SajuCubeName   = "saju-cube"
	LegacyAIName   = "legacy-ai"
	AICubeName     = "ai-cube"
)

// Request headers the services read.
const (
	HeaderShadow     = "X-Shadow-Request" // "1": compute and answer, never write (replayed traffic)
	HeaderUserID     = "X-User-Id"        // user id when the body has none
	HeaderTruthLabel = "X-Truth-Label"    // AI: the known truth label (only counted in metrics)
	HeaderRequestID  = "X-Request-Id"     // reused as request_id when present
)

// MaxBodyBytes caps request bodies.
const MaxBodyBytes = 64 << 10

// SajuConfig configures a saju service.
type SajuConfig struct {
	// DB is the service's PostgreSQL (legacy: saju_records; cube:
	// cube.saju_charts). Nil runs without storage: POST answers 503 unless
	// it is a dry-run (X-Shadow-Request: 1), GET answers 503.
	DB *pgxpool.Pool
	// Registry receives the service's metrics and is served on /metrics;
	// nil creates a registry of the service's own.
	Registry *prometheus.Registry
	Log      *slog.Logger
	Now      func() time.Time // default time.Now
	// Conventions overrides the service's calculation conventions (nil =
	// LegacyConventions or CubeConventions), e.g. to show a wider zi-hour
	// divergence with Zi2300.
	Conventions *Conventions
}

// AIConfig configures an AI analysis service.
type AIConfig struct {
	// ErrorRate is the share of charts (0..1) the model mislabels; see Model.
	ErrorRate float64
	Registry  *prometheus.Registry
	Log       *slog.Logger
}

// Default AI error rates: the legacy model errs on 3% of charts; the cube
// by default 2 percentage points more (pass 0.11 for an 8 pp drop).
const (
	DefaultLegacyAIErrorRate = 0.03
	DefaultAICubeErrorRate   = 0.05
)

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	writes   prometheus.Counter
	truth    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, service string) (*metrics, error) {
	cl := prometheus.Labels{"service": service}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_demo_requests_total",
			Help: "Requests answered by a demo service, by route template and status code.", ConstLabels: cl}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "shadowcube_demo_request_seconds",
			Help: "Time to answer a request.", ConstLabels: cl, Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"route"}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{Name: "shadowcube_demo_db_writes_total",
			Help: "Charts written to the service's database (dry-runs never write).", ConstLabels: cl}),
		truth: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_demo_ai_truth_total",
			Help: "AI answers to requests that carried X-Truth-Label, by correctness.", ConstLabels: cl}, []string{"correct"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.writes, m.truth} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register %s metrics: %w", service, err)
		}
	}
	return m, nil
}

// base is what every demo service shares: mux, metrics, health.
type base struct {
	name string
	mux  *http.ServeMux
	reg  *prometheus.Registry
	m    *metrics
	log  *slog.Logger
	now  func() time.Time
}

func newBase(name string, reg *prometheus.Registry, log *slog.Logger) (*base, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := newMetrics(reg, name)
	if err != nil {
		return nil, err
	}
	b := &base{name: name, mux: http.NewServeMux(), reg: reg, m: m, log: log.With("service", name), now: time.Now}
	b.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
	})
	b.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return b, nil
}

// ServeHTTP serves the service's API, /healthz and /metrics.
func (b *base) ServeHTTP(w http.ResponseWriter, r *http.Request) { b.mux.ServeHTTP(w, r) }

// Registry is the registry /metrics serves.
func (b *base) Registry() *prometheus.Registry { return b.reg }

// Name is the service name (legacy-saju, saju-cube, legacy-ai, ai-cube).
func (b *base) Name() string { return b.name }

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(c int) { s.code = c; s.ResponseWriter.WriteHeader(c) }

// handle wraps an API handler with metrics and panic safety: a panic is a
// bug, logged and answered 500, never a crashed process.
func (b *base) handle(pattern, route string, h func(w http.ResponseWriter, r *http.Request)) {
	b.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: 200}
		defer func() {
			if p := recover(); p != nil {
				b.log.Error("handler panic", "route", route, "panic", p)
				writeJSON(sw, http.StatusInternalServerError, ErrorResponse{Error: "internal error"})
			}
			b.m.requests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
			b.m.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		h(sw, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, field, format string, a ...any) {
	writeJSON(w, code, ErrorResponse{Error: fmt.Sprintf(format, a...), Field: field})
}

func requestID(r *http.Request) string {
	if id := strings.TrimSpace(r.Header.Get(HeaderRequestID)); id != "" && len(id) <= 128 {
		return id
	}
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "body", "read body: %v", err)
		return false
	}
	if err := decodeJSON(data, v); err != nil {
		field := "body"
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			field = te.Field // a well-formed body with a wrongly typed field
		}
		writeErr(w, http.StatusBadRequest, field, "malformed JSON: %v", err)
		return false
	}
	return true
}

func isDryRun(r *http.Request) bool { return strings.TrimSpace(r.Header.Get(HeaderShadow)) == "1" }

// SajuService is a saju chart service (legacy or cube).
type SajuService struct {
	*base
	conv   Conventions
	script Script
	store  chartStore
}

// NewLegacySaju builds the legacy saju service: Hanja output, legacy
// conventions (LegacyConventions), table saju_records.
func NewLegacySaju(cfg SajuConfig) (*SajuService, error) {
	return newSaju(LegacySajuName, cfg, LegacyConventions, Hanja, func(db *pgxpool.Pool) chartStore { return legacyStore{db} })
}

// NewSajuCube builds the saju cube: Hangul output, CubeConventions, its own
// table cube.saju_charts (nested jsonb), which the sync stage fills.
func NewSajuCube(cfg SajuConfig) (*SajuService, error) {
	return newSaju(SajuCubeName, cfg, CubeConventions, Hangul, func(db *pgxpool.Pool) chartStore { return cubeStore{db} })
}

func newSaju(name string, cfg SajuConfig, conv Conventions, s Script, mk func(*pgxpool.Pool) chartStore) (*SajuService, error) {
	b, err := newBase(name, cfg.Registry, cfg.Log)
	if err != nil {
		return nil, err
	}
	if cfg.Now != nil {
		b.now = cfg.Now
	}
	if cfg.Conventions != nil {
		conv = *cfg.Conventions
	}
	svc := &SajuService{base: b, conv: conv, script: s}
	if cfg.DB != nil {
		svc.store = mk(cfg.DB)
	}
	b.handle("POST /api/saju/chart", "/api/saju/chart", svc.postChart)
	b.handle("GET /api/saju/chart/{id}", "/api/saju/chart/{id}", svc.getChart)
	return svc, nil
}

// EnsureSchema creates the service's table if it is missing.
func (s *SajuService) EnsureSchema(ctx context.Context) error {
	if s.store == nil {
		return errors.New("ensure schema: no database configured")
	}
	return s.store.ensureSchema(ctx)
}

// Conventions are the calculation conventions this service uses.
func (s *SajuService) Conventions() Conventions { return s.conv }

func (s *SajuService) postChart(w http.ResponseWriter, r *http.Request) {
	var req ChartRequest
	if !readBody(w, r, &req) {
		return
	}
	if req.UserID == "" {
		req.UserID = strings.TrimSpace(r.Header.Get(HeaderUserID))
	}
	b, err := req.ParseBirth()
	if err != nil {
		s.fieldError(w, r, err)
		return
	}
	ch, err := Compute(b, s.conv)
	if err != nil {
		s.fieldError(w, r, err)
		return
	}
	doc := ch.Document(s.script, true)
	doc.Interpretation = interpretation(ch, s.script)
	doc.RequestID = requestID(r)
	doc.GeneratedAt = nowRFC3339(s.now)
	if !isDryRun(r) {
		if s.store == nil {
			writeErr(w, http.StatusServiceUnavailable, "", "%s runs without a database; send X-Shadow-Request: 1 for a dry-run", s.name)
			return
		}
		rec := StoredChart{UserID: req.UserID, Year: b.Year, Month: b.Month, Day: b.Day, Solar: !b.Lunar,
			YearP: ch.Year.hanja(), MonthP: ch.Month.hanja(), DayP: ch.Day.hanja(), Interpretation: doc.Interpretation}
		if b.HourKnown {
			h := b.Hour
			rec.Hour = &h
			hp := ch.Hour.hanja()
			rec.HourP = &hp
		}
		id, err := s.store.insert(r.Context(), rec)
		if err != nil {
			s.log.Error("store chart", "route", "/api/saju/chart", "request_id", doc.RequestID, "err", err)
			writeErr(w, http.StatusInternalServerError, "", "store chart: database unavailable")
			return
		}
		s.m.writes.Inc()
		doc.ID = id
	}
	writeJSON(w, http.StatusOK, doc)
}

func (s *SajuService) fieldError(w http.ResponseWriter, r *http.Request, err error) {
	if fe, ok := errIsField(err); ok {
		writeErr(w, http.StatusBadRequest, fe.Field, "%s", fe.Msg)
		return
	}
	s.log.Error("compute chart", "route", "/api/saju/chart", "err", err)
	writeErr(w, http.StatusInternalServerError, "", "compute chart: %v", err)
}

func (s *SajuService) getChart(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		writeErr(w, http.StatusBadRequest, "id", "%q is not a positive chart id", raw)
		return
	}
	if s.store == nil {
		writeErr(w, http.StatusServiceUnavailable, "", "%s runs without a database", s.name)
		return
	}
	rec, err := s.store.get(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		writeErr(w, http.StatusNotFound, "id", "chart %d not found", id)
		return
	}
	if err != nil {
		s.log.Error("read chart", "route", "/api/saju/chart/{id}", "err", err)
		writeErr(w, http.StatusInternalServerError, "", "read chart: database unavailable")
		return
	}
	ch, err := ChartFromPillars(rec.YearP, rec.MonthP, rec.DayP, deref(rec.HourP))
	if err != nil {
		s.log.Error("stored chart unreadable", "route", "/api/saju/chart/{id}", "id", id, "err", err)
		writeErr(w, http.StatusInternalServerError, "", "stored chart %d is corrupt", id)
		return
	}
	doc := ch.Document(s.script, false)
	doc.ID = id
	doc.RequestID = requestID(r)
	doc.GeneratedAt = nowRFC3339(s.now)
	doc.Interpretation = rec.Interpretation
	writeJSON(w, http.StatusOK, doc)
}

// AnalyzeRequest is the body of POST /api/ai/analyze: a saju chart answer
// (only pillars are needed; elements and day_master are recomputed).
type AnalyzeRequest struct {
	Pillars   *PillarsDoc     `json:"pillars"`
	Elements  json.RawMessage `json:"elements,omitempty"`
	DayMaster json.RawMessage `json:"day_master,omitempty"`
}

// AnalyzeResponse is the answer of POST /api/ai/analyze.
type AnalyzeResponse struct {
	Label      string  `json:"label"`
	Confidence float64 `json:"confidence"`
	Text       string  `json:"text"`
	RequestID  string  `json:"request_id"`
}

// AIService is an AI analysis service (legacy or cube).
type AIService struct {
	*base
	model Model
}

// NewLegacyAI builds the legacy AI analysis service.
func NewLegacyAI(cfg AIConfig) (*AIService, error) { return newAI(LegacyAIName, cfg) }

// NewAICube builds the AI cube.
func NewAICube(cfg AIConfig) (*AIService, error) { return newAI(AICubeName, cfg) }

func newAI(name string, cfg AIConfig) (*AIService, error) {
	if cfg.ErrorRate < 0 || cfg.ErrorRate > 1 {
		return nil, fmt.Errorf("%s: error rate %v outside 0..1", name, cfg.ErrorRate)
	}
	b, err := newBase(name, cfg.Registry, cfg.Log)
	if err != nil {
		return nil, err
	}
	svc := &AIService{base: b, model: Model{ErrorRate: cfg.ErrorRate}}
	b.handle("POST /api/ai/analyze", "/api/ai/analyze", svc.analyze)
	return svc, nil
}

func (s *AIService) analyze(w http.ResponseWriter, r *http.Request) {
	var req AnalyzeRequest
	if !readBody(w, r, &req) {
		return
	}
	if req.Pillars == nil {
		writeErr(w, http.StatusBadRequest, "pillars", "pillars are required")
		return
	}
	p := req.Pillars
	ch, err := ChartFromPillars(p.Year, p.Month, p.Day, deref(p.Hour))
	if err != nil {
		fe, _ := errIsField(err)
		writeErr(w, http.StatusBadRequest, fe.Field, "%s", fe.Msg)
		return
	}
	pred := s.model.Predict(ch)
	if truth := strings.TrimSpace(r.Header.Get(HeaderTruthLabel)); truth != "" {
		s.m.truth.WithLabelValues(strconv.FormatBool(strings.EqualFold(truth, pred.Label))).Inc()
	}
	writeJSON(w, http.StatusOK, AnalyzeResponse{Label: pred.Label, Confidence: pred.Confidence, Text: pred.Text, RequestID: requestID(r)})
}
