package publisher

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/schemas"
)

// OtherRoute is the route template of requests matching no route of the
// routes file (when Config.Unmatched is UnmatchedCapture).
const OtherRoute = "/_other"

// What happens to requests whose path matches no route.
const (
	UnmatchedCapture = "capture" // captured under OtherRoute (default)
	UnmatchedSkip    = "skip"    // passed through, not captured
)

// Drop reasons, the values of the reason label of shadowcube_tap_dropped_total.
const (
	DropQueueFull     = "queue_full"       // the in-memory queue (count or bytes) was full
	DropNATS          = "nats_unavailable" // the publish could not be handed to NATS
	DropPublishFailed = "publish_failed"   // JetStream did not acknowledge (error or timeout)
	DropClosed        = "closed"           // the capturer was closing
	DropEncode        = "too_large"        // the encoded event exceeds schemas.MaxEventSize
	DropUpstream      = "upstream_error"   // the legacy service gave no answer (timeout, reset)
	DropLegacyBusy    = "legacy_busy"      // rollout: no free worker to ask the legacy service
	DropNotReplayable = "not_replayable"   // rollout: body truncated or route policy forbids a 2nd call
	DropSpillFull     = "spill_full"       // spill enabled but its byte limit was reached
)

// Defaults of Config.
const (
	DefaultMaxBody    = 1 << 20
	DefaultQueueSize  = 4096
	DefaultQueueBytes = 64 << 20
	DefaultMaxPending = 4096
	DefaultAckTimeout = 5 * time.Second
)

// Config configures a Capturer.
type Config struct {
	// Service is the legacy service name (first subject token). Required.
	Service string
	// Routes is the service's entry of the routes file; nil means every
	// request is unmatched.
	Routes *Routes
	// Unmatched is UnmatchedCapture (default) or UnmatchedSkip.
	Unmatched string
	// MaxBody caps each captured body (request and response); longer bodies
	// are captured truncated and flagged. Default 1 MiB.
	MaxBody int64
	// QueueSize and QueueBytes bound the in-memory queue between the user
	// path and the publisher goroutine (events, and body bytes).
	QueueSize  int
	QueueBytes int64
	// MaxPending bounds JetStream publishes awaiting their ack; AckTimeout is
	// how long an ack may take before the event counts as failed.
	MaxPending int
	AckTimeout time.Duration
	// Privacy configures user keys, header stripping and body redaction.
	Privacy PrivacyConfig
	// Spill, when Dir is set, keeps events that could not be published in a
	// bounded file and re-publishes them when NATS is back.
	Spill SpillConfig
}

// Routes is one service's entry of a routes file (docs/routes.md).
type Routes = routes.Service

// StreamSettings are the limits of the LEGACY_REQUESTS stream (retention,
// size, age, replicas).
type StreamSettings = natsx.StreamSettings

// Deps are what a Capturer uses and does not own.
type Deps struct {
	// Conn may be nil: the capturer then runs detached (every capture is
	// dropped with reason nats_unavailable, or spilled) until Attach hands
	// it a connection — a tap must serve users while NATS is down.
	Conn       *nats.Conn
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: metrics not exported
}

func (c *Config) validate() error {
	var errs []error
	if c.Service == "" {
		errs = append(errs, errors.New("service name is empty (set SHADOWCUBE_TAP_SERVICE)"))
	}
	switch c.Unmatched {
	case "":
		c.Unmatched = UnmatchedCapture
	case UnmatchedCapture, UnmatchedSkip:
	default:
		errs = append(errs, fmt.Errorf("unmatched %q: want %s or %s", c.Unmatched, UnmatchedCapture, UnmatchedSkip))
	}
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.MaxBody < 0 || c.MaxBody > schemas.MaxEventSize/4 {
		errs = append(errs, fmt.Errorf("max body %d: want 1..%d bytes (two bodies, base64, must fit one event)", c.MaxBody, schemas.MaxEventSize/4))
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = DefaultQueueBytes
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.QueueSize < 1 || c.QueueBytes < 1 || c.MaxPending < 1 || c.AckTimeout < 0 {
		errs = append(errs, fmt.Errorf("queue size %d, queue bytes %d, max pending %d, ack timeout %s: all must be positive", c.QueueSize, c.QueueBytes, c.MaxPending, c.AckTimeout))
	}
	return errors.Join(errs...)
}

// Stats are the Capturer's counters since it started.
type Stats struct {
	Captured  int64 // events accepted into the queue
	Published int64 // events acknowledged by JetStream
	Dropped   int64 // events lost (every reason)
	Spilled   int64 // events written to the spill file
}

// Capturer is the shared capture path of the tap, the middleware and the
// importer: it decides what to capture (routes, sampling), removes what must
// not leave the process, and publishes events asynchronously to JetStream
// through a bounded queue. Its methods are safe for concurrent use.
type Capturer struct {
	cfg  Config
	priv *privacy
	log  *slog.Logger
	link atomic.Pointer[natsLink] // nil until attached: capture is down, requests are still served
	m    *metrics

	queue      chan *item
	queueBytes atomic.Int64
	inflight   atomic.Int64 // events queued or being encoded (not yet handed to NATS)
	free       chan []byte  // encode buffers to reuse (see getBuf)
	closed     atomic.Bool
	stop       chan struct{} // closed once (halt): the publisher loop drains and ends
	halted     sync.Once
	done       chan struct{} // closed when Run returns
	mu         sync.Mutex    // guards running
	running    bool
	once       sync.Once

	captured, published, dropped atomic.Int64
	latency                      sync.Map // *nats.Msg → time.Time, for sampled messages
	seq                          atomic.Uint64

	spill atomic.Pointer[spill] // set by Run when Config.Spill.Dir is set
}

// natsLink is the connection the capturer publishes through.
type natsLink struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// errNotConnected is the error of captures made before Attach.
var errNotConnected = errors.New("capture: not connected to NATS yet")

type item struct {
	ev       *schemas.RequestEvent
	clean    bool  // request headers already stripped (else stripped, and the user key derived when missing, off the user path)
	owned    bool  // the response header map belongs to the event: stripped in place, not copied
	reqOwned bool  // so does the request header map (observed requests: parsed for the event alone)
	size     int64 // body bytes, for the queue byte budget
	m        *routeMetrics
}

// New validates cfg and returns a Capturer publishing through deps.Conn;
// it does no I/O. Captures are queued (bounded) from now on; Run publishes
// them. Close stops it.
func New(cfg Config, deps Deps) (*Capturer, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("capture config: %w", err)
	}
	priv, err := newPrivacy(cfg.Privacy)
	if err != nil {
		return nil, fmt.Errorf("capture config: %w", err)
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Capturer{
		cfg:   cfg,
		priv:  priv,
		log:   log.With("service", cfg.Service),
		queue: make(chan *item, cfg.QueueSize),
		free:  make(chan []byte, freeBufs),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	c.m, err = newMetrics(deps.Registerer, cfg.Service, cfg.Routes, c.up)
	if err != nil {
		return nil, err
	}
	if deps.Conn != nil {
		if err := c.Attach(deps.Conn); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Run opens the spill file (when configured) and publishes captures until
// ctx ends or Close is called; then it stops accepting captures, publishes
// what is queued and waits at most Config.AckTimeout for the acks. It
// returns nil then, or the error that kept it from starting.
func (c *Capturer) Run(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.closed.Load():
		c.mu.Unlock()
		return errors.New("capture: run: closed")
	case c.running:
		c.mu.Unlock()
		return errors.New("capture: run called twice")
	}
	c.running = true
	c.mu.Unlock()
	defer close(c.done)
	if c.cfg.Spill.Dir != "" {
		sp, err := openSpill(c.cfg.Spill, c.log)
		if err != nil {
			c.halt()
			return err
		}
		c.spill.Store(sp)
	}
	defer context.AfterFunc(ctx, c.halt)()
	c.run()
	return nil
}

// halt stops accepting captures and tells the publisher loop to drain.
func (c *Capturer) halt() {
	c.halted.Do(func() {
		c.closed.Store(true)
		close(c.stop)
	})
}

// Attach gives a detached capturer (New with a nil connection) its NATS
// connection; captures are published from now on. Only the first call
// attaches; later ones return an error.
func (c *Capturer) Attach(nc *nats.Conn) error {
	if nc == nil {
		return errors.New("capture: attach: no NATS connection")
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(c.cfg.MaxPending),
		jetstream.WithPublishAsyncTimeout(c.cfg.AckTimeout),
		jetstream.WithPublishAsyncAckHandler(c.onAck),
		jetstream.WithPublishAsyncErrHandler(c.onErr),
	)
	if err != nil {
		return fmt.Errorf("capture: JetStream: %w", err)
	}
	if !c.link.CompareAndSwap(nil, &natsLink{nc: nc, js: js}) {
		return errors.New("capture: already attached to NATS")
	}
	return nil
}

// Connected reports whether captures can be published now: attached, and
// the connection is up.
func (c *Capturer) Connected() bool {
	l := c.link.Load()
	return l != nil && l.nc.IsConnected()
}

func (c *Capturer) up() float64 {
	if c.Connected() {
		return 1
	}
	return 0
}

func (c *Capturer) pending() int {
	if l := c.link.Load(); l != nil {
		return l.js.PublishAsyncPending()
	}
	return 0
}

func (c *Capturer) detach() {
	if l := c.link.Load(); l != nil {
		l.js.CleanupPublisher() // the async-ack subscription and its goroutine
	}
}

// EnsureStream creates or updates the LEGACY_REQUESTS stream.
func EnsureStream(ctx context.Context, js jetstream.JetStream, settings StreamSettings) error {
	cfg, err := natsx.StreamConfig(schemas.StreamLegacyRequests, settings)
	if err != nil {
		return err
	}
	_, err = natsx.EnsureStream(ctx, js, cfg)
	return err
}

// UserKey returns the user key the capturer would publish for a raw user id.
func (c *Capturer) UserKey(userID string) string { return c.priv.UserKey(userID) }

// RolloutBucket returns the user's rollout bucket 0..99 (cube when < percent).
func (c *Capturer) RolloutBucket(userID string) int { return c.priv.identify(userID).rolloutBucket() }

// decision is what the capture path decided for one request.
type decision struct {
	route     string
	r         *routes.Route // nil for unmatched
	userID    string
	verified  bool // userID came from a trusted proxy or a verified JWT
	id        identity
	idDone    bool
	capture   bool
	captureID string // set by the tap when capture is true
	m         *routeMetrics
}

// decide chooses route, identity and capture for a request. trustedPeer says
// the request came from a trusted proxy, whose user header is believed.
func (c *Capturer) decide(method, path string, h http.Header, trustedPeer bool) decision {
	d := decision{route: OtherRoute}
	sample := 1.0
	if c.cfg.Routes != nil {
		if r, ok := c.cfg.Routes.Match(method, path); ok {
			d.route, d.r, sample = r.Route, r, r.Sample
		}
	}
	d.m = c.m.route(d.route)
	d.userID, d.verified = c.priv.userID(h, trustedPeer, time.Time{})
	if d.userID != "" && sample > 0 && sample < 1 {
		d.ident(c.priv)
	}
	switch {
	case d.r == nil && c.cfg.Unmatched == UnmatchedSkip:
	case d.r != nil && !d.r.Captured():
	case sample >= 1:
		d.capture = true
	case sample <= 0:
	case d.id.hasKey:
		d.capture = d.id.sampleBucket() < int(sample*10000)
	default:
		d.capture = mrand.Float64() < sample
	}
	if d.capture && d.userID != "" {
		d.ident(c.priv)
	}
	return d
}

// ident computes the user's identity (an HMAC) once, when it is needed.
func (d *decision) ident(p *privacy) identity {
	if !d.idDone {
		d.id, d.idDone = p.identify(d.userID), true
		d.id.verified = d.verified && d.id.hasKey
	}
	return d.id
}

// newID returns a fresh capture id: 32 hex digits, time-ordered prefix.
func newID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixNano()))
	binary.BigEndian.PutUint64(b[8:], mrand.Uint64()) // runtime ChaCha8: unpredictable, no syscall
	return hex.EncodeToString(b[:])
}

// submit hands an event to the publisher without waiting. It never blocks:
// when the queue is full the event is dropped and counted.
func (c *Capturer) submit(it *item) bool {
	if c.closed.Load() {
		c.drop(DropClosed)
		return false
	}
	for {
		cur := c.queueBytes.Load()
		if cur+it.size > c.cfg.QueueBytes {
			c.drop(DropQueueFull)
			return false
		}
		if c.queueBytes.CompareAndSwap(cur, cur+it.size) {
			break
		}
	}
	c.inflight.Add(1)
	select {
	case c.queue <- it:
		c.captured.Add(1)
		if it.m != nil {
			it.m.captured.Inc()
			it.m.bytes.Add(float64(it.size))
		}
		return true
	default:
		c.inflight.Add(-1)
		c.queueBytes.Add(-it.size)
		c.drop(DropQueueFull)
		return false
	}
}

// Enqueue hands an event to the publisher, waiting for queue space (the
// importer's path: it must not lose events). The event is sanitized like a
// tapped one: stripped headers, user key from the raw user id, redaction.
func (c *Capturer) Enqueue(ctx context.Context, ev *schemas.RequestEvent) error {
	if c.closed.Load() {
		return errors.New("capture: closed")
	}
	it := &item{ev: ev, size: int64(len(ev.Body) + len(ev.Response.Body)), m: c.m.route(ev.Route)}
	c.queueBytes.Add(it.size)
	c.inflight.Add(1)
	select {
	case c.queue <- it:
		c.captured.Add(1)
		it.m.captured.Inc()
		it.m.bytes.Add(float64(it.size))
		return nil
	case <-ctx.Done():
		c.inflight.Add(-1)
		c.queueBytes.Add(-it.size)
		return ctx.Err()
	case <-c.stop:
		c.inflight.Add(-1)
		c.queueBytes.Add(-it.size)
		return errors.New("capture: closed")
	}
}

// Flush waits until every queued event has been acknowledged or dropped.
func (c *Capturer) Flush(ctx context.Context) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		// inflight counts events from submit until NATS has them; read it
		// before the pending acks, which take over from it.
		sp := c.spill.Load()
		if c.inflight.Load() == 0 && c.pending() == 0 && (sp == nil || sp.empty() || c.link.Load() == nil) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("capture flush: %d queued, %d awaiting ack: %w", len(c.queue), c.pending(), ctx.Err())
		case <-t.C:
		}
	}
}

// Stats returns the counters.
func (c *Capturer) Stats() Stats {
	s := Stats{Captured: c.captured.Load(), Published: c.published.Load(), Dropped: c.dropped.Load()}
	if sp := c.spill.Load(); sp != nil {
		s.Spilled = sp.written.Load()
	}
	return s
}

// Close stops accepting events, lets a running Run publish what is queued
// (waiting at most the ack timeout for acks) and waits for it, then closes
// the spill file. Idempotent.
func (c *Capturer) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		c.halt()
		running := c.running
		c.mu.Unlock()
		if running {
			<-c.done
		}
		if sp := c.spill.Load(); sp != nil {
			sp.close()
		}
		c.detach()
	})
	return nil
}

func (c *Capturer) drop(reason string) {
	c.dropped.Add(1)
	c.m.dropped(reason).Inc()
}

// Batching of the publisher goroutine. After handing a batch to NATS it
// waits publishLinger before looking at the queue again (unless the batch
// was full), so that at high rates one wake-up carries many events, here and
// downstream: the NATS client's flusher, the server's read loop and stream
// loop, and the ack handler all see batches instead of single messages. A
// captured event thus reaches JetStream at most publishLinger later; the
// user path never waits for it.
const (
	publishLinger = time.Millisecond
	maxBatch      = 256
)

func (c *Capturer) run() {
	var spillTick <-chan time.Time
	if c.spill.Load() != nil {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		spillTick = t.C
	}
	linger := time.NewTimer(publishLinger)
	linger.Stop()
	defer linger.Stop()
	batch := make([]*item, 0, maxBatch)
	msgs := make([]*nats.Msg, 0, maxBatch)
	for {
		select {
		case it := <-c.queue:
			batch = c.drain(append(batch[:0], it))
			msgs = c.publishBatch(batch, msgs[:0])
			clear(batch)
			clear(msgs)
			if len(batch) == maxBatch {
				continue // more may be waiting: no pause
			}
			linger.Reset(publishLinger)
			select {
			case <-linger.C:
			case <-c.stop: // handled by the select above
			}
		case <-spillTick:
			c.replaySpill()
		case <-c.stop:
			for {
				batch = c.drain(batch[:0])
				if len(batch) == 0 {
					break
				}
				msgs = c.publishBatch(batch, msgs[:0])
				clear(batch)
				clear(msgs)
			}
			if l := c.link.Load(); l != nil {
				select {
				case <-l.js.PublishAsyncComplete():
				case <-time.After(c.cfg.AckTimeout):
				}
			}
			return
		}
	}
}

// drain appends what is queued now to batch, up to maxBatch items.
func (c *Capturer) drain(batch []*item) []*item {
	for len(batch) < maxBatch {
		select {
		case it := <-c.queue:
			batch = append(batch, it)
		default:
			return batch
		}
	}
	return batch
}

// publishBatch encodes the batch, then hands it to NATS in a tight loop so
// that the client writes it to the server in few flushes. msgs is scratch
// space.
func (c *Capturer) publishBatch(batch []*item, msgs []*nats.Msg) []*nats.Msg {
	var size int64
	for _, it := range batch {
		size += it.size
		if m := c.encode(it); m != nil {
			msgs = append(msgs, m)
		}
	}
	c.queueBytes.Add(-size)
	c.m.queueDepth.Set(float64(len(c.queue)))
	for _, m := range msgs {
		c.publish(m)
	}
	c.inflight.Add(-int64(len(batch))) // after the publishes: the ack tracker's pending count covers them now
	return msgs
}

// encode sanitizes and encodes one event; nil when it cannot be published.
func (c *Capturer) encode(it *item) *nats.Msg {
	ev := it.ev
	c.sanitize(ev, it.clean, it.owned, it.reqOwned)
	data := schemas.AppendRequestEvent(c.getBuf(640+(len(ev.Body)+len(ev.Response.Body))*4/3+48*(len(ev.Headers)+len(ev.Response.Headers))), ev)
	if len(data) > schemas.MaxEventSize {
		c.log.Error("request event too large", "request_id", ev.ID, "route", ev.Route, "bytes", len(data))
		c.drop(DropEncode)
		c.putBuf(data)
		return nil
	}
	subject := ""
	if it.m != nil && ev.Service == c.cfg.Service && it.m.route == ev.Route {
		subject = it.m.subject
	} else {
		subject = schemas.RequestSubject(ev.Service, ev.Route)
	}
	return &nats.Msg{
		Subject: subject,
		Data:    data,
		Header:  nats.Header{jetstream.MsgIDHeader: []string{ev.ID}},
	}
}

// publish hands one message to the async publisher; it ends in onAck or
// failed.
func (c *Capturer) publish(msg *nats.Msg) {
	if c.seq.Add(1)%16 == 0 {
		c.latency.Store(msg, time.Now())
	}
	// Too many acks outstanding is back-pressure, not failure: wait (the
	// queue in front absorbs or drops new captures meanwhile), but no longer
	// than an ack may take.
	l := c.link.Load()
	if l == nil {
		c.latency.Delete(msg)
		c.failed(msg, DropNATS, errNotConnected)
		return
	}
	deadline := time.Now().Add(c.cfg.AckTimeout)
	for {
		_, err := l.js.PublishMsgAsync(msg)
		if err == nil {
			return
		}
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) && time.Now().Before(deadline) {
			continue
		}
		c.latency.Delete(msg)
		c.failed(msg, DropNATS, err)
		return
	}
}

// Encoded events are kept until JetStream acknowledges them (they are
// re-published after "no responders", the spill needs them on failure),
// then their buffers are reused. Only small buffers are kept, and at most
// freeBufs of them: a few MiB at worst.
const (
	freeBufs   = 512
	freeBufMax = 8 << 10
)

func (c *Capturer) getBuf(size int) []byte {
	select {
	case b := <-c.free:
		if cap(b) >= size {
			return b[:0]
		}
	default:
	}
	return make([]byte, 0, size)
}

func (c *Capturer) putBuf(b []byte) {
	if cap(b) > freeBufMax {
		return
	}
	select {
	case c.free <- b:
	default:
	}
}

func (c *Capturer) onAck(_ jetstream.JetStream, msg *nats.Msg, _ *jetstream.PubAck) {
	c.published.Add(1)
	c.m.published.Inc()
	if t, ok := c.latency.LoadAndDelete(msg); ok {
		c.m.publishSeconds.Observe(time.Since(t.(time.Time)).Seconds())
	}
	c.putBuf(msg.Data)
}

func (c *Capturer) onErr(_ jetstream.JetStream, msg *nats.Msg, err error) {
	c.latency.Delete(msg)
	c.failed(msg, DropPublishFailed, err)
}

// failed handles a message NATS did not take: spill it, or count the drop.
func (c *Capturer) failed(msg *nats.Msg, reason string, err error) {
	defer c.putBuf(msg.Data)
	if sp := c.spill.Load(); sp != nil {
		if sp.write(msg) {
			return
		}
		c.drop(DropSpillFull)
		return
	}
	c.drop(reason)
	c.log.Debug("capture dropped", "reason", reason, "subject", msg.Subject, "err", err)
}

// replaySpill re-publishes spilled events while NATS is connected.
func (c *Capturer) replaySpill() {
	l, sp := c.link.Load(), c.spill.Load()
	if sp.empty() || l == nil || !l.nc.IsConnected() {
		return
	}
	// A short slice per tick, so the live queue keeps moving.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	n, err := sp.replay(ctx, func(ctx context.Context, m *nats.Msg) error {
		_, err := l.js.PublishMsg(ctx, m)
		if err == nil {
			c.published.Add(1)
			c.m.published.Inc()
		}
		return err
	})
	if n > 0 || (err != nil && !errors.Is(err, context.DeadlineExceeded)) {
		c.log.Info("re-published spilled events", "count", n, "err", err)
	}
}

// sanitize removes what must not be published. For events that did not come
// through decide (import), it also derives the user key from the raw id (the
// import file is the operator's: its user header is believed, tokens are
// checked as of the capture time).
func (c *Capturer) sanitize(ev *schemas.RequestEvent, clean, owned, reqOwned bool) {
	p := c.priv
	reqType := ev.Headers.Get("Content-Type")
	if !clean {
		if ev.UserKey == "" && ev.Source == schemas.SourceImport { // tapped events: decide chose already
			if id, _ := p.userID(ev.Headers, true, ev.CapturedAt); id != "" {
				ev.UserKey = p.UserKey(id)
			}
		}
		if reqOwned {
			ev.Headers = p.stripInPlace(ev.Headers)
		} else {
			ev.Headers = p.headers(ev.Headers)
		}
	}
	if owned {
		ev.Response.Headers = p.stripInPlace(ev.Response.Headers)
	} else {
		ev.Response.Headers = p.headers(ev.Response.Headers)
	}
	ev.Query = p.rules.Query(ev.Query)
	var dropped bool
	if ev.Body, dropped = p.rules.Body(ev.Body, ev.BodyTruncated, reqType); dropped {
		ev.BodyTruncated = true
		c.m.bodyDropped.Inc()
	}
	if ev.Response.Body, dropped = p.rules.Body(ev.Response.Body, ev.Response.BodyTruncated, ev.Response.Headers.Get("Content-Type")); dropped {
		ev.Response.BodyTruncated = true
		c.m.bodyDropped.Inc()
	}
}
