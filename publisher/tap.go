package publisher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/heal7/shadowcube/internal/redact"
	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/internal/tlsconf"
	"github.com/heal7/shadowcube/schemas"
)

// Rollout tells the tap which share of users the cube serves.
type Rollout interface {
	// Percent is 0..100: users whose rollout bucket is below it go to the cube.
	Percent() int
}

// UpstreamTLS configures TLS to the legacy service and the cube.
type UpstreamTLS struct {
	CAFile             string // PEM bundle to verify the upstream (default: system roots)
	CertFile, KeyFile  string // client certificate for mutual TLS
	ServerName         string // expected server name (default: from the URL)
	InsecureSkipVerify bool   // do not verify the upstream certificate (tests only)
}

// TapConfig configures a Tap.
type TapConfig struct {
	// Upstream is the legacy service's base URL (http:// or https://). Required.
	Upstream string
	// Cube is the cube's base URL, used for users the rollout moves to the
	// cube (default: the routes file's cube_url of the service).
	Cube string
	// H2C makes the tap speak HTTP/2 without TLS (prior knowledge) to
	// http:// upstreams.
	H2C bool
	// TLS configures https:// upstreams.
	TLS UpstreamTLS
	// Transport overrides the transport built from H2C and TLS.
	Transport http.RoundTripper
	// Rollout, when set, moves a share of users to the cube.
	Rollout Rollout
	// LegacyWorkers bounds the background calls to the legacy service made
	// for users served by the cube (default 8); LegacyTimeout bounds each
	// (default 30s).
	LegacyWorkers int
	LegacyTimeout time.Duration
	// FlushInterval is httputil.ReverseProxy's (0: its default, which streams
	// answers of unknown length at once).
	FlushInterval time.Duration
	// Log receives upstream errors (default: the capturer's logger).
	Log *slog.Logger
	// EchoID makes the tap return the capture id of a captured request in
	// the CaptureIDHeader answer header, so a tester can look up its verdict
	// (compare show <id>). Off by default: the answer is then unchanged.
	EchoID bool
}

// CaptureIDHeader carries the capture id when TapConfig.EchoID is set.
const CaptureIDHeader = "X-Shadowcube-Capture-Id"

// Tap is the capture reverse proxy. The user always gets the upstream's
// answer unchanged and streamed; capture happens on the side and never
// blocks or fails a request.
type Tap struct {
	c       *Capturer
	cfg     TapConfig
	legacy  *httputil.ReverseProxy
	cube    *httputil.ReverseProxy
	upURL   *url.URL
	client  *http.Client
	log     *slog.Logger
	jobs    chan *legacyJob
	wg      sync.WaitGroup
	once    sync.Once
	stop    chan struct{}
	rollout Rollout

	cubeInFlight atomic.Int64 // requests at the cube now (inflight.go)
}

type stateKey struct{}

// reqState travels with a captured request through the reverse proxy.
type reqState struct {
	t       *Tap
	r       *http.Request
	d       *decision
	start   time.Time
	reqBuf  *capBuf
	respBuf capBuf
	resp    *http.Response
	eof     bool
	done    bool
}

// NewTap builds a Tap capturing through c. Close stops its background workers
// (not c).
func NewTap(c *Capturer, cfg TapConfig) (*Tap, error) {
	up, err := parseBaseURL("upstream", cfg.Upstream)
	if err != nil {
		return nil, err
	}
	if cfg.Cube == "" && c.cfg.Routes != nil {
		cfg.Cube = c.cfg.Routes.CubeURL
	}
	if cfg.LegacyWorkers == 0 {
		cfg.LegacyWorkers = 8
	}
	if cfg.LegacyTimeout == 0 {
		cfg.LegacyTimeout = 30 * time.Second
	}
	if cfg.LegacyWorkers < 0 || cfg.LegacyTimeout < 0 {
		return nil, fmt.Errorf("tap: legacy workers %d and timeout %s must be positive", cfg.LegacyWorkers, cfg.LegacyTimeout)
	}
	base := cfg.Transport
	if base == nil {
		base, err = NewTransport(cfg.H2C, cfg.TLS)
		if err != nil {
			return nil, err
		}
	}
	log := cfg.Log
	if log == nil {
		log = c.log
	}
	t := &Tap{c: c, cfg: cfg, upURL: up, log: log, rollout: cfg.Rollout, stop: make(chan struct{})}
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	bufs := new(bufferPool)
	t.legacy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			t.clientHeaders(pr)
		},
		Transport:     &captureTransport{base: base},
		BufferPool:    bufs,
		FlushInterval: cfg.FlushInterval,
		ErrorLog:      errLog,
		ErrorHandler:  t.upstreamError,
	}
	if cfg.Cube != "" {
		cu, err := parseBaseURL("cube", cfg.Cube)
		if err != nil {
			return nil, err
		}
		t.cube = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(cu)
				pr.Out.Host = pr.In.Host
				pr.SetXForwarded()
				t.clientHeaders(pr)
			},
			Transport:     base,
			BufferPool:    bufs,
			FlushInterval: cfg.FlushInterval,
			ErrorLog:      errLog,
			ErrorHandler:  t.cubeError,
		}
	}
	if t.rollout != nil && t.cube == nil {
		return nil, errors.New("tap: rollout flags need a cube URL (cube_url in the routes file or SHADOWCUBE_TAP_CUBE_URL)")
	}
	t.client = &http.Client{Transport: base, Timeout: cfg.LegacyTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if t.cube != nil {
		t.jobs = make(chan *legacyJob, cfg.LegacyWorkers)
		for i := 0; i < cfg.LegacyWorkers; i++ {
			t.wg.Add(1)
			go t.legacyWorker()
		}
	}
	return t, nil
}

// clientHeaders removes from a forwarded request what a client may not set:
// X-Shadow-Request (it would switch a live service to dry run) and, unless
// the peer is a trusted proxy, the user header.
func (t *Tap) clientHeaders(pr *httputil.ProxyRequest) {
	pr.Out.Header.Del(ShadowRequestHeader)
	if !t.c.priv.trusted.peer(pr.In.RemoteAddr) {
		pr.Out.Header.Del(t.c.priv.userHeader)
	}
}

// bufferPool recycles the reverse proxy's copy buffers; without one,
// httputil.ReverseProxy allocates a fresh 32 KiB buffer per answer.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

func parseBaseURL(what, s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tap: %s URL %q: want http://host:port or https://host:port", what, redact.URLString(s))
	}
	return u, nil
}

// Upstream connection pool defaults (see NewTransport).
const (
	DefaultMaxUpstreamConns     = 1024
	DefaultMaxIdleUpstreamConns = 512
)

// NewTransport builds the upstream transport: HTTP/1.1 (and HTTP/2 over TLS),
// or HTTP/2 with prior knowledge over plain TCP when h2c is set.
//
// It is never weaker than a bare reverse proxy's: connections to each
// upstream are bounded (MaxConnsPerHost, DefaultMaxUpstreamConns; requests
// beyond wait for a free connection, as at a busy upstream, instead of
// opening sockets until the process runs out of file descriptors and
// answers 502), idle ones are kept for reuse (DefaultMaxIdleUpstreamConns).
// The client's Accept-Encoding is forwarded as it is (DisableCompression):
// the legacy service sees the request the client sent, and the captured
// answer is the one on the wire, as sniff sees it.
func NewTransport(h2c bool, tc UpstreamTLS) (*http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 2 * DefaultMaxIdleUpstreamConns
	tr.MaxIdleConnsPerHost = DefaultMaxIdleUpstreamConns
	tr.MaxConnsPerHost = DefaultMaxUpstreamConns
	tr.DisableCompression = true
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	if h2c {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	if tc != (UpstreamTLS{}) {
		cfg, err := tlsconf.Client(tlsconf.Files{CA: tc.CAFile, Cert: tc.CertFile, Key: tc.KeyFile})
		if err != nil {
			return nil, fmt.Errorf("tap: upstream TLS: %w", err)
		}
		cfg.ServerName = tc.ServerName
		cfg.InsecureSkipVerify = tc.InsecureSkipVerify //nolint:gosec // operator's explicit choice
		tr.TLSClientConfig = cfg
	}
	return tr, nil
}

// Close stops the background legacy workers and closes idle upstream
// connections. Idempotent.
func (t *Tap) Close() error {
	t.once.Do(func() {
		close(t.stop)
		t.wg.Wait()
		if ci, ok := t.client.Transport.(interface{ CloseIdleConnections() }); ok {
			ci.CloseIdleConnections()
		}
	})
	return nil
}

// ServeHTTP proxies the request and captures it on the side.
func (t *Tap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	d := t.c.decide(r.Method, r.URL.Path, r.Header, t.c.priv.trusted.peer(r.RemoteAddr))
	pct := 0
	if t.rollout != nil {
		pct = t.rollout.Percent()
	}
	if d.capture {
		d.captureID = newID(start)
		if t.cfg.EchoID {
			w.Header().Set(CaptureIDHeader, d.captureID)
		}
	}
	// Only a verified identity is rolled out: a client must not pick its
	// side, or someone else's bucket, by choosing an id.
	if pct > 0 && d.verified && d.ident(t.c.priv).rolloutBucket() < pct {
		t.serveCube(w, r, &d, start)
		return
	}
	d.m.legacyRequests.Inc()
	if !d.capture {
		t.legacy.ServeHTTP(w, r)
		d.m.legacySeconds.Observe(time.Since(start).Seconds())
		return
	}
	st := &reqState{t: t, r: r, d: &d, start: start, respBuf: capBuf{max: t.c.cfg.MaxBody}}
	if r.Body != nil && r.Body != http.NoBody {
		st.reqBuf = &capBuf{max: t.c.cfg.MaxBody}
		r.Body = &teeBody{rc: r.Body, buf: st.reqBuf}
	}
	t.legacy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
	d.m.legacySeconds.Observe(time.Since(start).Seconds())
}

func (t *Tap) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if st, ok := r.Context().Value(stateKey{}).(*reqState); ok && st != nil && !st.done {
		st.done = true
		t.c.drop(DropUpstream)
	}
	if !errors.Is(err, context.Canceled) {
		t.log.Warn("upstream error", "route", routeOf(r), "method", r.Method, "err", redact.Err(err))
	}
	w.WriteHeader(http.StatusBadGateway)
}

func routeOf(r *http.Request) string {
	if st, ok := r.Context().Value(stateKey{}).(*reqState); ok && st != nil {
		return st.d.route
	}
	return ""
}

// captureTransport tees the upstream answer of captured requests.
type captureTransport struct{ base http.RoundTripper }

func (ct *captureTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := ct.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if st, ok := req.Context().Value(stateKey{}).(*reqState); ok && st != nil {
		if resp.StatusCode == http.StatusSwitchingProtocols {
			st.done = true // an upgraded connection (WebSocket) is not a request/answer pair
			return resp, nil
		}
		st.resp = resp
		if resp.ContentLength > 0 {
			st.respBuf.b = make([]byte, 0, min(resp.ContentLength, st.respBuf.max))
		}
		resp.Body = &respTee{rc: resp.Body, st: st}
	}
	return resp, nil
}

// respTee captures the response body and finishes the capture on Close,
// which ReverseProxy calls once the body is copied (before trailers go out).
type respTee struct {
	rc io.ReadCloser
	st *reqState
}

func (b *respTee) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.st.respBuf.write(p[:n])
	if err == io.EOF {
		b.st.eof = true
	}
	return n, err
}

func (b *respTee) Close() error {
	err := b.rc.Close()
	b.st.finish()
	return err
}

func (st *reqState) finish() {
	if st.done {
		return
	}
	st.done = true
	t, r, resp := st.t, st.r, st.resp
	// r.Header is stripped by the publisher goroutine: the proxy sends a
	// clone, nobody writes this map any more.
	ev := t.c.exchangeEvent(st.d, r, st.start, resp, time.Since(st.start))
	if st.reqBuf != nil {
		ev.Body, ev.BodyTruncated = st.reqBuf.seal()
	}
	ev.Response.Body, ev.Response.BodyTruncated = st.respBuf.seal()
	if !st.eof {
		ev.Response.BodyTruncated = true // the copy to the user stopped early
	}
	// The response header map is ours now: the proxy has copied it to the
	// user's answer and reads only resp.Trailer after this.
	t.c.submit(&item{ev: ev, owned: true, size: int64(len(ev.Body) + len(ev.Response.Body)), m: st.d.m})
}

// serveCube answers a rolled-out user from the cube and, when the request is
// captured, asks the legacy service in the background for the answer to
// capture.
func (t *Tap) serveCube(w http.ResponseWriter, r *http.Request, d *decision, start time.Time) {
	d.m.cubeRequests.Inc()
	t.cubeInFlight.Add(1)
	defer t.cubeInFlight.Add(-1)
	cs := &cubeState{r: r}
	if r.Body != nil && r.Body != http.NoBody {
		cs.body = &cubeBody{rc: r.Body, max: t.c.cfg.MaxBody}
		r.Body = cs.body
	}
	t.cube.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), cubeKey{}, cs)))
	d.m.cubeSeconds.Observe(time.Since(start).Seconds())
	if !d.capture || cs.fellBack {
		return
	}
	job := &legacyJob{d: *d, method: cs.r.Method, path: cs.r.URL.Path, query: cs.r.URL.RawQuery, header: cs.r.Header.Clone(), start: start}
	job.header.Del(ShadowRequestHeader)
	if !t.c.priv.trusted.peer(cs.r.RemoteAddr) {
		job.header.Del(t.c.priv.userHeader)
	}
	if cs.body != nil {
		body, complete := cs.body.take()
		if !complete {
			t.c.drop(DropNotReplayable) // longer than the cap, or the cube did not read it all
			return
		}
		job.body = body
	}
	replay := routes.ReplayAlways
	if d.r != nil && d.r.Replay != "" {
		replay = d.r.Replay
	}
	switch replay {
	case routes.ReplayIdempotentOnly:
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions {
			t.c.drop(DropNotReplayable)
			return
		}
	case routes.ReplayDryRun:
		job.header.Set("X-Shadow-Request", "1")
	}
	select {
	case t.jobs <- job:
	default:
		t.c.drop(DropLegacyBusy)
	}
}

type cubeKey struct{}

// cubeState travels with a rolled-out user's request to the cube.
type cubeState struct {
	r        *http.Request // the inbound request
	body     *cubeBody     // its body (nil: none)
	fellBack bool          // the cube failed and the legacy service answered
}

// cubeBody keeps what the cube's transport read of the request body (up to
// the cap) so it can be sent to the legacy service: in the background for
// the capture, or at once when the cube gives no answer. Reads hold the lock
// so that once the body is taken no byte can be consumed behind our back.
type cubeBody struct {
	mu        sync.Mutex
	rc        io.ReadCloser
	buf       []byte
	max       int64
	truncated bool
	eof       bool
	taken     bool
}

var errBodyTaken = errors.New("request body handed to the legacy service")

func (b *cubeBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.taken {
		return 0, errBodyTaken
	}
	n, err := b.rc.Read(p)
	if room := b.max - int64(len(b.buf)); int64(n) > room {
		b.truncated = true
		b.buf = append(b.buf, p[:room]...)
	} else {
		b.buf = append(b.buf, p[:n]...)
	}
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// Close leaves the inbound body open: the server closes it, and the
// fallback may still need its unread part.
func (b *cubeBody) Close() error { return nil }

// take ends the cube's use of the body; complete says the whole body was read
// and kept.
func (b *cubeBody) take() (body []byte, complete bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.taken = true
	return b.buf, b.eof && !b.truncated
}

// resend returns the whole body again (kept part + unread rest) when nothing
// beyond the cap was consumed.
func (b *cubeBody) resend() (io.Reader, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.taken = true
	if b.truncated {
		return nil, false
	}
	if b.eof {
		return bytes.NewReader(b.buf), true
	}
	return io.MultiReader(bytes.NewReader(b.buf), b.rc), true
}

// cubeError answers from the legacy service when the cube gave no answer at
// all (refused, reset, timeout before headers), provided the request body can
// be sent again (nothing beyond the cap consumed). Otherwise 502.
func (t *Tap) cubeError(w http.ResponseWriter, out *http.Request, err error) {
	cs, _ := out.Context().Value(cubeKey{}).(*cubeState)
	if cs == nil || out.Context().Err() != nil {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	r2 := cs.r.Clone(out.Context())
	r2.Body = http.NoBody
	if cs.body != nil {
		rd, ok := cs.body.resend()
		if !ok {
			t.log.Warn("cube error; request body cannot be re-sent to legacy", "method", cs.r.Method, "err", redact.Err(err))
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		r2.Body = io.NopCloser(rd)
	}
	cs.fellBack = true
	t.c.m.cubeFallback.Inc()
	t.log.Warn("cube error; answering from legacy", "method", cs.r.Method, "err", redact.Err(err))
	t.legacy.ServeHTTP(w, r2)
}

type legacyJob struct {
	d      decision
	method string
	path   string
	query  string
	header http.Header
	body   []byte
	start  time.Time
}

func (t *Tap) legacyWorker() {
	defer t.wg.Done()
	for {
		select {
		case <-t.stop:
			return
		case job := <-t.jobs:
			t.callLegacy(job)
		}
	}
}

// callLegacy sends a rolled-out user's request to the legacy service and
// captures the legacy answer.
func (t *Tap) callLegacy(job *legacyJob) {
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.LegacyTimeout)
	defer cancel()
	u := *t.upURL
	u.Path = singleJoin(u.Path, job.path)
	u.RawQuery = job.query
	req, err := http.NewRequestWithContext(ctx, job.method, u.String(), bytes.NewReader(job.body))
	if err != nil {
		t.c.drop(DropUpstream)
		return
	}
	req.Header = job.header
	sent := time.Now()
	resp, err := t.client.Do(req)
	if err != nil {
		t.c.drop(DropUpstream)
		t.log.Warn("legacy call for a rolled-out user failed", "route", job.d.route, "err", redact.Err(err))
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, t.c.cfg.MaxBody+1))
	if err != nil {
		t.c.drop(DropUpstream)
		return
	}
	truncated := int64(len(body)) > t.c.cfg.MaxBody
	if truncated {
		body = body[:t.c.cfg.MaxBody]
	}
	ev := &schemas.RequestEvent{
		V: schemas.Version, ID: job.d.captureID, Service: t.c.cfg.Service, Route: job.d.route,
		Method: job.method, Path: job.path, Query: job.query,
		Headers: t.c.priv.headers(job.header), Body: job.body, UserKey: job.d.id.key,
		TraceParent: job.header.Get("Traceparent"), CapturedAt: job.start, Source: schemas.SourceTap,
		Response: schemas.HTTPResponse{Status: resp.StatusCode, Headers: resp.Header, Body: body, BodyTruncated: truncated, Latency: time.Since(sent)},
	}
	t.c.submit(&item{ev: ev, clean: true, owned: true, size: int64(len(ev.Body) + len(body)), m: job.d.m})
}

func singleJoin(a, b string) string {
	switch {
	case a == "" || a == "/":
		return b
	case b == "":
		return a
	}
	aSlash, bSlash := a[len(a)-1] == '/', b[0] == '/'
	switch {
	case aSlash && bSlash:
		return a + b[1:]
	case !aSlash && !bSlash:
		return a + "/" + b
	}
	return a + b
}

// RaiseFileLimit raises the soft limit on open files to the hard limit and
// returns the limit now in force. A proxy holds two descriptors per request
// in flight (the user's and the upstream's): at the soft limit some
// distributions still set (1024) an overload would end in accept and dial
// errors. The Go runtime raises it as well at start-up on most systems;
// the tap calls this to be sure and to log the figure.
func RaiseFileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("file limit: %w", err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, fmt.Errorf("raise the file limit to %d: %w", rl.Max, err)
		}
	}
	return rl.Cur, nil
}
