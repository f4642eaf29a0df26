package shadow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/redact"
	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/schemas"
)

// DefaultDurable is the durable consumer name replayers share by default.
const DefaultDurable = "shadow"

// Config configures a Replayer. Zero values take the documented defaults.
type Config struct {
	// Routes is the parsed routes file: the services (cube targets) and the
	// per-route replay policy. Required.
	Routes *Routes
	// Durable is the base name of the durable consumers on LEGACY_REQUESTS:
	// one per service, named DurableName(Durable, service), so a service
	// whose cube lags (requests waiting on the freshness barrier) never
	// holds up another service's replays. Processes with the same base name
	// split the work. Default "shadow".
	Durable string
	// MaxInFlight bounds the request messages of one service this process
	// handles at once (waiting for freshness, replaying or publishing).
	// Default 256.
	MaxInFlight int
	// MaxAckPending bounds one service's unacknowledged messages over all
	// processes sharing the durable. Default 4 × MaxInFlight.
	MaxAckPending int
	// Timeout is the per-request timeout of services that set none. Default 5s.
	Timeout time.Duration
	// Concurrency is the per-target concurrency of services that set none. Default 16.
	Concurrency int
	// FreshnessWait is the longest wait for a cube's sync watermark for
	// services that set none. Default 10s.
	FreshnessWait time.Duration
	// Breaker configures every target's circuit breaker.
	Breaker BreakerConfig
	// MaxBodyBytes caps a replayed answer's body; longer bodies are cut and
	// marked truncated. Default 1 MiB.
	MaxBodyBytes int64
	// NakDelay is the first redelivery delay after a failed result publish;
	// it grows with the delivery count up to 30s. Default 1s.
	NakDelay time.Duration
	// AckWait is the consumer's ack wait. Default: longest freshness wait +
	// 2 × longest timeout + 30s, so a slow replay is never redelivered meanwhile.
	AckWait time.Duration
	// Results are the limits of the SHADOW_RESULTS stream (owned here).
	Results StreamSettings
	// LookupEnv resolves the environment variables the routes file names for
	// credentials (os.LookupEnv in the binary). Required when a service has
	// credentials.
	LookupEnv func(string) (string, bool)
	// CubeErrorAttempts is the delivery of a request on which a transport
	// error or a 502/503/504 from a healthy cube is finally recorded as the
	// cube's answer; earlier ones hand the request back to JetStream to be
	// replayed again. Default 3.
	CubeErrorAttempts int
	// Transport sends the replays. Default: an http.Transport sized for the
	// targets' concurrency.
	Transport http.RoundTripper
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Redact sanitises every answer (cube, secondary) before it is published
	// or stored, with the tap's rules (nil: the default rules).
	Redact *RedactRules
	// Sink, when set, takes over storing results (fused replay + compare:
	// `shadow --compare`): the replayer hands each result to it and acks
	// the request once the sink reports it stored. Nil: results are
	// published to SHADOW_RESULTS and acked once JetStream stored them.
	Sink Sink
}

// Sink stores results in process instead of the replayer's publish to
// SHADOW_RESULTS (comparator.Fused compares and stores them, and
// publishes them for other readers).
type Sink interface {
	// Put takes res (the sink owns it from now on), to be published to
	// SHADOW_RESULTS with Nats-Msg-Id msgID (the request id for a live
	// replay, schemas.WindowResultMsgID for a window replay: it also tells
	// the two apart, as a live replay is stored once per request however
	// often it is redelivered), and calls done exactly once:
	// nil once res is durably stored, else the error. done may run on
	// another goroutine and must not block.
	Put(res *schemas.ShadowResult, msgID string, done func(error))
}

// Routes is a parsed routes file (docs/routes.md); LoadRoutes reads one.
type Routes = routes.File

// LoadRoutes reads and validates a routes file; errors name file, line and
// field.
func LoadRoutes(path string) (*Routes, error) { return routes.Load(path) }

// StreamSettings are the limits of the SHADOW_RESULTS stream (retention,
// size, age, replicas).
type StreamSettings = natsx.StreamSettings

// RedactRules are the compiled redaction rules answers are sanitised with.
type RedactRules = redact.Rules

// Deps are what a Replayer uses and does not own.
type Deps struct {
	JetStream  jetstream.JetStream   // required
	Logger     *slog.Logger          // nil: discard; should carry stage=shadow
	Registerer prometheus.Registerer // nil: a private registry
}

// validate rejects negative settings and malformed names in one error that
// names every bad field; zero means the default.
func (c *Config) validate() error {
	var errs []error
	bad := func(field string, v any, want string) {
		errs = append(errs, fmt.Errorf("shadow: Config.%s %v: %s", field, v, want))
	}
	if c.Routes == nil || len(c.Routes.Services) == 0 {
		errs = append(errs, errors.New("shadow: Config.Routes: a routes file with at least one service is required (--routes / SHADOWCUBE_ROUTES_FILE)"))
	}
	if strings.ContainsAny(c.Durable, ".*> \t") {
		bad("Durable", fmt.Sprintf("%q", c.Durable), "must not contain '.', '*', '>' or whitespace")
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxInFlight", int64(c.MaxInFlight)},
		{"MaxAckPending", int64(c.MaxAckPending)},
		{"Concurrency", int64(c.Concurrency)},
		{"Breaker.Failures", int64(c.Breaker.Failures)},
		{"Breaker.Probes", int64(c.Breaker.Probes)},
		{"MaxBodyBytes", c.MaxBodyBytes},
		{"CubeErrorAttempts", int64(c.CubeErrorAttempts)},
	} {
		if f.v < 0 {
			bad(f.name, f.v, "must be ≥ 0 (0 = default)")
		}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"Timeout", c.Timeout},
		{"FreshnessWait", c.FreshnessWait},
		{"Breaker.OpenFor", c.Breaker.OpenFor},
		{"NakDelay", c.NakDelay},
		{"AckWait", c.AckWait},
	} {
		if f.v < 0 {
			bad(f.name, f.v, "must be ≥ 0 (0 = default)")
		}
	}
	return errors.Join(errs...)
}

// defaults fills zero settings with their defaults.
func (c *Config) defaults() {
	if c.Durable == "" {
		c.Durable = DefaultDurable
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 256
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 4 * c.MaxInFlight
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Concurrency == 0 {
		c.Concurrency = 16
	}
	if c.FreshnessWait == 0 {
		c.FreshnessWait = 10 * time.Second
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.NakDelay == 0 {
		c.NakDelay = time.Second
	}
	if c.CubeErrorAttempts == 0 {
		c.CubeErrorAttempts = 3
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.LookupEnv == nil {
		c.LookupEnv = func(string) (string, bool) { return "", false }
	}
	c.Breaker.defaults()
}

// Replayer replays captured requests to the cubes. Start it once; Close
// stops it and waits for every goroutine it started.
type Replayer struct {
	cfg      Config
	js       jetstream.JetStream
	log      *slog.Logger
	m        *metrics
	client   *http.Client
	services map[string]*service
	marks    *watermarks
	bufs     sync.Pool // *[]byte for encoding results

	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup // handlers
	loops   sync.WaitGroup // consume loops and watcher
	closed  bool
	closing chan struct{} // closed by Close: Run returns
	halt    sync.Once     // stop runs once, from Run or Close
}

// service is one routes-file service with its cube target, optional
// secondary (noise baseline) target and optional legacy target (asked again
// when a read's cube answer differs from the captured one).
type service struct {
	spec          *routes.Service
	durable       string
	cons          jetstream.Consumer // set by Start
	mu            sync.Mutex         // guards iter, replaced while the cube is held
	iter          jetstream.MessagesContext
	cube          *target
	secondary     *target
	legacy        *target
	watermarkKey  string // "" = no freshness barrier
	freshnessWait time.Duration
	replayed      sync.Map // *routes.Route → *replayedObs: a route's metrics of its common outcome
}

// target is one HTTP endpoint replays go to, with its own limits.
type target struct {
	name    string // metric label: service name, or "<service>/secondary"
	base    *url.URL
	timeout time.Duration
	sem     chan struct{}
	limiter *rate.Limiter // nil: no rate limit
	breaker *breaker
	headers http.Header // set (non-empty) or removed (empty) on every replay
	creds   credentials
}

// New validates cfg and builds a Replayer; it does no I/O and starts
// nothing (Run does). Metrics are registered on deps.Registerer.
func New(cfg Config, deps Deps) (*Replayer, error) {
	js, log, reg := deps.JetStream, deps.Logger, deps.Registerer
	if js == nil {
		return nil, errors.New("shadow: JetStream handle required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	r := &Replayer{cfg: cfg, js: js, log: log, m: m, services: map[string]*service{}, closing: make(chan struct{})}
	r.marks = newWatermarks(r.log)
	var errs []error
	var maxWait, maxTimeout time.Duration
	totalConc := 0
	for i := range cfg.Routes.Services {
		s, err := r.newService(&cfg.Routes.Services[i])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.services[s.spec.Name] = s
		maxWait = max(maxWait, s.freshnessWait)
		maxTimeout = max(maxTimeout, s.cube.timeout)
		totalConc += cap(s.cube.sem)
		for _, t := range []*target{s.secondary, s.legacy} {
			if t != nil {
				totalConc += cap(t.sem)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if r.cfg.AckWait <= 0 {
		r.cfg.AckWait = maxWait + 2*maxTimeout + 30*time.Second
	}
	if r.cfg.Transport == nil {
		r.cfg.Transport = &http.Transport{
			Proxy:               nil, // replays go straight to the cube, never through an env proxy
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        totalConc + 16,
			MaxIdleConnsPerHost: totalConc + 16,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   true,
		}
	}
	r.bufs.New = func() any { return new([]byte) }
	r.client = &http.Client{
		Transport: r.cfg.Transport,
		// A redirect is the cube's answer, compared as is.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return r, nil
}

func (r *Replayer) newService(spec *routes.Service) (*service, error) {
	if spec.CubeURL == "" {
		return nil, fmt.Errorf("shadow: service %s (line %d): cube_url is required", spec.Name, spec.Line)
	}
	timeout := spec.Timeout.D()
	if timeout <= 0 {
		timeout = r.cfg.Timeout
	}
	conc := spec.Concurrency
	if conc <= 0 {
		conc = r.cfg.Concurrency
	}
	creds, err := newCredentials(spec.Name, spec.Credentials, r.cfg.LookupEnv, r.cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("shadow: %w", err)
	}
	cube, err := r.newTarget(spec.Name, spec.CubeURL, timeout, conc, spec.RatePerSecond)
	if err != nil {
		return nil, err
	}
	cube.creds = creds
	cube.headers = http.Header{}
	for k, v := range spec.Headers {
		cube.headers[http.CanonicalHeaderKey(k)] = []string{v}
	}
	s := &service{spec: spec, cube: cube, durable: DurableName(r.cfg.Durable, spec.Name)}
	if spec.SecondaryURL != "" {
		if s.secondary, err = r.newTarget(spec.Name+"/secondary", spec.SecondaryURL, timeout, conc, 0); err != nil {
			return nil, err
		}
	}
	if spec.LegacyURL != "" {
		// No service credentials and no header rewrites: those are the cube's.
		if s.legacy, err = r.newTarget(spec.Name+"/legacy", spec.LegacyURL, timeout, conc, 0); err != nil {
			return nil, err
		}
	}
	if spec.SyncTarget != "" {
		s.watermarkKey = schemas.WatermarkKey(spec.SyncTarget)
		s.freshnessWait = spec.FreshnessWait.D()
		if s.freshnessWait <= 0 {
			s.freshnessWait = r.cfg.FreshnessWait
		}
	}
	return s, nil
}

func (r *Replayer) newTarget(name, rawURL string, timeout time.Duration, conc int, perSecond float64) (*target, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("shadow: target %s: %q is not an http(s) URL", name, rawURL)
	}
	t := &target{name: name, base: u, timeout: timeout, sem: make(chan struct{}, conc)}
	if perSecond > 0 {
		// At most a tenth of a second of requests at once.
		t.limiter = rate.NewLimiter(rate.Limit(perSecond), max(1, int(perSecond/10)))
	}
	gauge := r.m.breakerState.WithLabelValues(name)
	gauge.Set(float64(BreakerClosed))
	t.breaker = newBreaker(name, r.cfg.Breaker, func(s BreakerState) {
		gauge.Set(float64(s))
		r.m.breakerChanges.WithLabelValues(name, s.String()).Inc()
		lvl := slog.LevelInfo
		if s == BreakerOpen {
			lvl = slog.LevelWarn
		}
		r.log.Log(context.Background(), lvl, "circuit breaker state changed", "target", name, "state", s.String())
	})
	return t, nil
}

// BreakerState returns the breaker state of a service's cube target (for
// tests and the ops UI).
func (r *Replayer) BreakerState(service string) (BreakerState, bool) {
	s, ok := r.services[service]
	if !ok {
		return 0, false
	}
	return s.cube.breaker.State(), true
}

// Run creates (idempotently) the SHADOW_RESULTS stream and one durable
// consumer per service on LEGACY_REQUESTS (creating that stream and DLQ
// with default limits only if their owners have not yet), opens the KV
// bucket and its watermark watcher, and replays until ctx ends or Close is
// called. Then it stops as Close does (in-flight replays are cancelled and
// their messages handed back) and returns nil. Set-up errors are returned
// at once and name the stream or consumer.
func (r *Replayer) Run(ctx context.Context) error {
	if err := r.start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-r.closing:
	}
	r.halt.Do(r.stop)
	return nil
}

// start sets up and starts consuming; it returns once consumption started.
func (r *Replayer) start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return errors.New("shadow: replayer already started")
	}
	if r.closed {
		return errors.New("shadow: replayer closed")
	}
	kv, err := r.setup(ctx)
	if err != nil {
		return err
	}
	var started []*service
	for _, s := range r.services {
		cons, err := natsx.EnsureConsumer(ctx, r.js, schemas.StreamLegacyRequests, jetstream.ConsumerConfig{
			Durable:       s.durable,
			Description:   "shadowcube shadow replayer, service " + s.spec.Name,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       r.cfg.AckWait,
			MaxAckPending: r.cfg.MaxAckPending,
			MaxDeliver:    -1,
			FilterSubject: schemas.PrefixLegacyRequest + "." + schemas.EscapeToken(s.spec.Name) + ".>",
			DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		if err == nil {
			s.cons = cons
			s.iter, err = r.messages(cons)
		}
		if err != nil {
			for _, st := range started {
				st.iter.Stop()
			}
			return fmt.Errorf("shadow: consume %s/%s: %w", schemas.StreamLegacyRequests, s.durable, err)
		}
		started = append(started, s)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel, r.started = cancel, true
	r.loops.Add(1 + len(started))
	go func() {
		defer r.loops.Done()
		r.marks.follow(runCtx, kv)
	}()
	for _, s := range started {
		go func() {
			defer r.loops.Done()
			r.consume(runCtx, s)
		}()
	}
	r.log.Info("shadow replayer started", "durable", r.cfg.Durable, "services", len(r.services), "ack_wait", r.cfg.AckWait)
	return nil
}

// DurableName is the durable consumer of one service: "<base>-<service>"
// with the service escaped as a subject token (schemas.EscapeToken).
func DurableName(base, service string) string {
	return base + "-" + schemas.EscapeToken(service)
}

func (r *Replayer) setup(ctx context.Context) (jetstream.KeyValue, error) {
	resCfg, err := natsx.StreamConfig(schemas.StreamShadowResults, r.cfg.Results)
	if err != nil {
		return nil, fmt.Errorf("shadow: %w", err)
	}
	if _, err := natsx.EnsureStream(ctx, r.js, resCfg); err != nil {
		return nil, fmt.Errorf("shadow: %w", err)
	}
	for _, name := range []string{schemas.StreamLegacyRequests, schemas.StreamDLQ} {
		if _, err := natsx.StreamForReader(ctx, r.js, name); err != nil {
			return nil, fmt.Errorf("shadow: %w", err)
		}
	}
	kv, err := openKV(ctx, r.js)
	if err != nil {
		return nil, fmt.Errorf("shadow: %w", err)
	}
	return kv, nil
}

func (r *Replayer) messages(cons jetstream.Consumer) (jetstream.MessagesContext, error) {
	return cons.Messages(jetstream.PullMaxMessages(min(r.cfg.MaxInFlight, 512)), jetstream.PullExpiry(natsx.PullExpiry))
}

// consume hands messages to a pool of at most MaxInFlight workers
// (started as the load needs them; long-lived, so their stacks are grown
// once, not per message) until ctx ends; then it naks the messages still
// buffered so that another replayer can take them at once. While the cube's
// breaker is open it takes no request (hold); while a half-open probe is in
// flight it waits for its outcome.
func (r *Replayer) consume(ctx context.Context, s *service) {
	s.mu.Lock()
	iter := s.iter
	s.mu.Unlock()
	defer func() { r.nakBuffered(iter) }()
	work := make(chan jetstream.Msg)
	defer close(work) // workers finish their message and exit
	workers := 0
	brk := s.cube.breaker
	for {
		changed := brk.changes()
		switch st := brk.State(); {
		case st == BreakerOpen:
			next := r.hold(ctx, s, iter)
			if next == nil {
				return
			}
			iter = next
			continue
		case st == BreakerHalfOpen && !brk.probeFree():
			if waitChange(ctx, changed, brk.cfg.OpenFor) != nil {
				return
			}
			continue
		}
		msg, err := iter.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return
			}
			r.log.Warn("consume legacy requests", "durable", s.durable, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
			continue
		}
		if ctx.Err() != nil {
			r.nak(msg)
			return
		}
		select {
		case work <- msg: // an idle worker took it
			continue
		default:
		}
		if workers < r.cfg.MaxInFlight {
			workers++
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.work(ctx, msg, work)
			}()
			continue
		}
		select {
		case work <- msg:
		case <-ctx.Done():
			r.nak(msg)
			return
		}
	}
}

// work handles first, then every message from work until it is closed.
func (r *Replayer) work(ctx context.Context, first jetstream.Msg, work <-chan jetstream.Msg) {
	p := newProgress(r.cfg.AckWait/3, r.log)
	defer p.stop()
	for msg := first; msg != nil; msg = <-work {
		r.m.inFlight.Inc()
		r.handle(ctx, msg, p)
		r.m.inFlight.Dec()
	}
}

// hold keeps a service's requests in JetStream while its cube's breaker is
// open: it stops the iterator from pulling, hands back the messages it had
// buffered (nak with the breaker's delay, so none waits out AckWait in
// memory and comes back twice), waits until the breaker lets a probe
// through and starts a new iterator. It returns nil when ctx ended.
func (r *Replayer) hold(ctx context.Context, s *service, iter jetstream.MessagesContext) jetstream.MessagesContext {
	iter.Drain()
	handed := 0
	for {
		msg, err := iter.Next(jetstream.NextMaxWait(2 * time.Second))
		if err != nil {
			break
		}
		if err := msg.NakWithDelay(s.cube.breaker.retryDelay()); err != nil {
			r.log.Debug("nak held request", "subject", msg.Subject(), "err", err)
		}
		handed++
	}
	// The breaker's own transitions are logged (open at WARN); this is detail.
	r.log.Debug("cube unavailable: requests wait in JetStream until its breaker lets a probe through", "service", s.spec.Name, "handed_back", handed)
	for {
		if s.cube.breaker.waitReady(ctx) != nil {
			return nil
		}
		s.mu.Lock()
		if ctx.Err() != nil { // Close drains s.iter: never start one after it
			s.mu.Unlock()
			return nil
		}
		next, err := r.messages(s.cons)
		if err == nil {
			s.iter = next
		}
		s.mu.Unlock()
		if err == nil {
			return next
		}
		r.log.Warn("resume consuming legacy requests", "durable", s.durable, "err", err)
		if waitChange(ctx, nil, time.Second) != nil {
			return nil
		}
	}
}

// nakBuffered hands back the messages a draining iterator still holds.
func (r *Replayer) nakBuffered(iter jetstream.MessagesContext) {
	for {
		msg, err := iter.Next(jetstream.NextMaxWait(2 * time.Second))
		if err != nil {
			return
		}
		r.nak(msg)
	}
}

func (r *Replayer) nak(msg jetstream.Msg) {
	if err := msg.Nak(); err != nil {
		r.log.Debug("nak on stop", "subject", msg.Subject(), "err", err)
	}
}

// progress tells JetStream every AckWait/3 that a worker's current message
// is still being worked on (a replay may queue behind a slow target's
// concurrency limit for longer than AckWait). One timer per worker, reset
// per message.
type progress struct {
	every time.Duration
	log   *slog.Logger
	mu    sync.Mutex
	msg   jetstream.Msg // nil between messages
	t     *time.Timer
}

func newProgress(every time.Duration, log *slog.Logger) *progress {
	p := &progress{every: every, log: log}
	p.t = time.AfterFunc(time.Hour, p.tick)
	p.t.Stop()
	return p
}

func (p *progress) start(msg jetstream.Msg) {
	p.mu.Lock()
	p.msg = msg
	p.t.Reset(p.every)
	p.mu.Unlock()
}

func (p *progress) stop() {
	p.mu.Lock()
	p.msg = nil
	p.t.Stop()
	p.mu.Unlock()
}

func (p *progress) tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.msg == nil {
		return
	}
	if err := p.msg.InProgress(); err != nil {
		p.log.Debug("in-progress signal", "subject", p.msg.Subject(), "err", err)
	}
	p.t.Reset(p.every)
}

// Close stops consuming, cancels in-flight replays (their messages are
// nak'ed for redelivery), waits for every goroutine and releases idle
// connections. It is idempotent.
func (r *Replayer) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.closing)
	r.mu.Unlock()
	r.halt.Do(r.stop)
	if t, ok := r.cfg.Transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	return nil
}

// stop cancels what start started and waits for it.
func (r *Replayer) stop() {
	r.mu.Lock()
	started := r.started && r.cancel != nil // ReplayWindow starts no loops
	r.mu.Unlock()
	if !started {
		return
	}
	r.cancel()
	for _, s := range r.services {
		s.mu.Lock()
		s.iter.Drain()
		s.mu.Unlock()
	}
	r.loops.Wait()
	r.wg.Wait()
	r.log.Info("shadow replayer stopped", "durable", r.cfg.Durable)
}
