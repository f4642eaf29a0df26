package wiring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/internal/redact"
	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/internal/stage"
	"github.com/heal7/shadowcube/publisher"
)

// CaptureEnv is the configuration shared by tap and import.
type CaptureEnv struct {
	redact.Env
	Service        string `envconfig:"TAP_SERVICE" flag:"service" desc:"legacy service name: first token of legacy.req.<service>.<route>"`
	MaxBody        string `envconfig:"TAP_MAX_BODY" flag:"max-body" default:"1MiB" desc:"cap per captured body, request and response; longer ones are captured truncated and flagged (units B, KiB, MiB)"`
	RoutesFile     string `envconfig:"ROUTES_FILE" flag:"routes" desc:"routes file: route templates, per-route sample share and capture: false, the service's cube_url (without it every path is /_other)"`
	UserHeader     string `envconfig:"TAP_USER_HEADER" default:"X-User-Id" desc:"header holding the raw user id, set by a trusted proxy (never published; removed from requests of other peers)"`
	TrustedProxies string `envconfig:"TAP_TRUSTED_PROXIES" default:"127.0.0.0/8,::1/128" desc:"comma list of CIDRs whose user header is believed (none: nobody)"`
	UserCookie     string `envconfig:"TAP_USER_COOKIE" desc:"cookie holding the user id when no verified identity is found (gives a user key, never a rollout: the client chooses it)"`
	UserJWTClaim   string `envconfig:"TAP_USER_JWT_CLAIM" desc:"claim of the bearer JWT holding the user id (default sub when a JWT key is set)"`
	JWTHS256Secret string `envconfig:"TAP_JWT_HS256_SECRET" desc:"HS256 key (at least 32 bytes) verifying bearer JWTs"`
	JWTPublicKey   string `envconfig:"TAP_JWT_PUBLIC_KEY" desc:"PEM file of the RSA (RS256) or EC P-256 (ES256) public key verifying bearer JWTs"`
	JWTJWKS        string `envconfig:"TAP_JWT_JWKS" desc:"JWKS file (RSA / EC P-256 keys by kid); tokens need a valid exp. Only a verified identity (trusted proxy header or verified JWT) is ever rolled out to the cube"`
	JWTAudience    string `envconfig:"TAP_JWT_AUDIENCE" desc:"required aud of the tokens (default: any)"`
	JWTIssuer      string `envconfig:"TAP_JWT_ISSUER" desc:"required iss of the tokens (default: any)"`
	QueueSize      int    `envconfig:"TAP_QUEUE_SIZE" default:"4096" min:"1" desc:"events the in-memory publish queue holds"`
	QueueBytes     string `envconfig:"TAP_QUEUE_BYTES" default:"64MiB" desc:"body bytes the queue holds; beyond either, captures are dropped"`
	SpillDir       string `envconfig:"TAP_SPILL_DIR" desc:"directory of the optional on-disk spill for events NATS did not take (default off)"`
	SpillMaxBytes  string `envconfig:"TAP_SPILL_MAX_BYTES" default:"256MiB" desc:"spill file limit"`
	StreamMaxAge   string `envconfig:"LEGACY_REQUESTS_MAX_AGE" desc:"retention of the LEGACY_REQUESTS stream, e.g. 72h (default unlimited)"`
	StreamMaxSize  string `envconfig:"LEGACY_REQUESTS_MAX_BYTES" desc:"size limit of the LEGACY_REQUESTS stream, e.g. 10GiB (default unlimited)"`
	StreamDupes    string `envconfig:"LEGACY_REQUESTS_DUPLICATES" desc:"de-duplication window of Nats-Msg-Id (re-import, spill replay), e.g. 24h (default 2m)"`
	StreamReplicas *int   `envconfig:"LEGACY_REQUESTS_REPLICAS" min:"1" max:"5" desc:"replicas of the LEGACY_REQUESTS stream, 1..5 (default 1)"`
	StreamStorage  string `envconfig:"LEGACY_REQUESTS_STORAGE" desc:"file or memory (default file)"`
}

// CapturerConfig builds the capturer's configuration and loads the routes
// file (nil without one); errors name the variable.
func (c *CaptureEnv) CapturerConfig() (publisher.Config, *routes.File, error) {
	var errs []error
	cfg := publisher.Config{
		Service:   c.Service,
		QueueSize: c.QueueSize,
		Privacy: publisher.PrivacyConfig{
			Secret: []byte(c.UserKeySecret), UserHeader: c.UserHeader, UserCookie: c.UserCookie,
			TrustedProxies: SplitList(c.TrustedProxies),
			AllowHeaders:   c.AllowHeaders, StripHeaders: c.StripHeaders,
			RedactPaths: c.RedactPaths, RedactParams: c.RedactParams, RedactMode: c.RedactMode,
			JWT: publisher.JWTConfig{Claim: c.UserJWTClaim, Audience: c.JWTAudience, Issuer: c.JWTIssuer},
		},
	}
	if cfg.Privacy.TrustedProxies == nil {
		cfg.Privacy.TrustedProxies = []string{} // empty: nobody
	}
	if c.JWTHS256Secret != "" {
		cfg.Privacy.JWT.HS256Secret = []byte(c.JWTHS256Secret)
	}
	for _, f := range []struct {
		env, path string
		dst       *[]byte
	}{{"SHADOWCUBE_TAP_JWT_PUBLIC_KEY", c.JWTPublicKey, &cfg.Privacy.JWT.PublicKeyPEM}, {"SHADOWCUBE_TAP_JWT_JWKS", c.JWTJWKS, &cfg.Privacy.JWT.JWKS}} {
		if f.path == "" {
			continue
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			errs = append(errs, &process.EnvError{Var: f.env, Value: f.path, Msg: err.Error()})
			continue
		}
		*f.dst = b
	}
	var err error
	if cfg.MaxBody, err = ParseSize("SHADOWCUBE_TAP_MAX_BODY", c.MaxBody); err != nil {
		errs = append(errs, err)
	}
	if cfg.QueueBytes, err = ParseSize("SHADOWCUBE_TAP_QUEUE_BYTES", c.QueueBytes); err != nil {
		errs = append(errs, err)
	}
	if c.SpillDir != "" {
		cfg.Spill.Dir = c.SpillDir
		if cfg.Spill.MaxBytes, err = ParseSize("SHADOWCUBE_TAP_SPILL_MAX_BYTES", c.SpillMaxBytes); err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case c.UserKeySecret == "":
		errs = append(errs, &process.EnvError{Var: "SHADOWCUBE_USER_KEY_SECRET", Msg: "required: the HMAC secret for user keys, at least 32 bytes (e.g. `openssl rand -hex 32`)"})
	case len(c.UserKeySecret) < redact.MinSecretLen:
		errs = append(errs, &process.EnvError{Var: "SHADOWCUBE_USER_KEY_SECRET", Value: "(hidden)", Msg: fmt.Sprintf("%d bytes: want at least %d (e.g. `openssl rand -hex 32`)", len(c.UserKeySecret), redact.MinSecretLen)})
	}
	if c.Service == "" {
		errs = append(errs, &process.EnvError{Var: "SHADOWCUBE_TAP_SERVICE", Msg: "required: the legacy service name (or --service)"})
	}
	var rf *routes.File
	if c.RoutesFile != "" {
		if rf, err = routes.Load(c.RoutesFile); err != nil {
			errs = append(errs, err)
		} else if c.Service != "" {
			svc, ok := rf.Service(c.Service)
			if !ok {
				errs = append(errs, fmt.Errorf("routes file %s has no service %q", c.RoutesFile, c.Service))
			}
			cfg.Routes = svc
		}
	}
	return cfg, rf, errors.Join(errs...)
}

// StreamSettings are the LEGACY_REQUESTS limits of c.
func (c *CaptureEnv) StreamSettings() (publisher.StreamSettings, error) {
	var s publisher.StreamSettings
	if c.StreamMaxAge != "" {
		d, err := time.ParseDuration(c.StreamMaxAge)
		if err != nil {
			return s, &process.EnvError{Var: "SHADOWCUBE_LEGACY_REQUESTS_MAX_AGE", Value: c.StreamMaxAge, Msg: "want a duration like 72h"}
		}
		s.MaxAge = d
	}
	if c.StreamMaxSize != "" {
		n, err := ParseSize("SHADOWCUBE_LEGACY_REQUESTS_MAX_BYTES", c.StreamMaxSize)
		if err != nil {
			return s, err
		}
		s.MaxBytes = n
	}
	if c.StreamReplicas != nil {
		s.Replicas = *c.StreamReplicas
	}
	if err := StorageValue("SHADOWCUBE_LEGACY_REQUESTS_STORAGE", c.StreamStorage); err != nil {
		return s, err
	}
	s.Storage = c.StreamStorage
	if c.StreamDupes != "" {
		d, err := time.ParseDuration(c.StreamDupes)
		if err != nil || d <= 0 {
			return s, &process.EnvError{Var: "SHADOWCUBE_LEGACY_REQUESTS_DUPLICATES", Value: c.StreamDupes, Msg: "want a positive duration like 24h"}
		}
		s.Duplicates = d
	}
	return s, nil
}

// TapEnv is the configuration of `shadowcube tap`.
type TapEnv struct {
	CaptureEnv
	Listen             string        `envconfig:"TAP_LISTEN" flag:"listen" default:":8080" desc:"listen address"`
	Upstream           string        `envconfig:"TAP_UPSTREAM" flag:"upstream" desc:"legacy base URL, http:// or https:// (required)"`
	CubeURL            string        `envconfig:"TAP_CUBE_URL" flag:"cube-url" desc:"cube base URL for rolled-out users (default: cube_url of the service in the routes file)"`
	Unmatched          string        `envconfig:"TAP_UNMATCHED" default:"capture" desc:"capture (as route /_other) or skip paths matching no route"`
	H2C                bool          `envconfig:"TAP_UPSTREAM_H2C" desc:"true: HTTP/2 without TLS (prior knowledge) to http:// upstreams"`
	UpstreamCA         string        `envconfig:"TAP_UPSTREAM_CA" desc:"PEM CA bundle for https:// upstreams (default system roots)"`
	UpstreamCert       string        `envconfig:"TAP_UPSTREAM_CERT" desc:"client certificate for mutual TLS to the upstream"`
	UpstreamKey        string        `envconfig:"TAP_UPSTREAM_KEY" desc:"client key for mutual TLS to the upstream"`
	UpstreamServerName string        `envconfig:"TAP_UPSTREAM_SERVER_NAME" desc:"expected TLS server name (default from the URL)"`
	UpstreamInsecure   bool          `envconfig:"TAP_UPSTREAM_INSECURE" desc:"true: do not verify the upstream certificate (tests only)"`
	UpstreamTimeout    time.Duration `envconfig:"TAP_UPSTREAM_TIMEOUT" min:"0s" default:"0s" desc:"wait for the upstream's response headers, e.g. 30s (0: none)"`
	Rollout            bool          `envconfig:"TAP_ROLLOUT" default:"true" desc:"false: ignore rollout flags (rollout needs a cube URL)"`
	LegacyWorkers      int           `envconfig:"TAP_LEGACY_WORKERS" default:"8" min:"1" desc:"background legacy calls for rolled-out users in flight"`
	UpstreamMaxConns   int           `envconfig:"TAP_UPSTREAM_MAX_CONNS" default:"1024" min:"1" max:"65536" desc:"connections to each upstream (legacy, cube) at most; requests beyond wait for one, as at a busy upstream, instead of exhausting file descriptors"`
	UpstreamMaxIdle    int           `envconfig:"TAP_UPSTREAM_MAX_IDLE_CONNS" default:"512" min:"1" max:"65536" desc:"idle connections kept per upstream for reuse"`
	EchoID             bool          `envconfig:"TAP_ECHO_ID" desc:"true: answer captured requests with X-Shadowcube-Capture-Id: <capture id>, to look up their verdict with 'compare show <id>'"`
}

// Check validates what the tap needs besides the capture settings.
func (te *TapEnv) Check() (publisher.Config, publisher.StreamSettings, error) {
	cfg, _, err := te.CapturerConfig()
	if te.Upstream == "" {
		err = errors.Join(err, &process.EnvError{Var: "SHADOWCUBE_TAP_UPSTREAM", Msg: "required: the legacy base URL (or --upstream)"})
	}
	if _, _, e := net.SplitHostPort(te.Listen); e != nil {
		err = errors.Join(err, &process.EnvError{Var: "SHADOWCUBE_TAP_LISTEN", Value: te.Listen, Msg: "want host:port, e.g. :8080"})
	}
	cfg.Unmatched = te.Unmatched
	settings, serr := te.StreamSettings()
	return cfg, settings, errors.Join(err, serr)
}

// lateRollout follows the flag watcher once NATS is connected; 0% before.
type lateRollout struct {
	w atomic.Pointer[publisher.FlagWatcher]
}

func (r *lateRollout) Percent() int {
	if w := r.w.Load(); w != nil {
		return w.Percent()
	}
	return 0
}

// TapDeps are what a Tap uses: Connect reaches NATS (retried in the
// background until it succeeds: a tap must serve users while NATS is
// down); with SharedConn the connection is the caller's and not closed.
type TapDeps struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Connect    func(context.Context) (*natsx.Conn, error)
	SharedConn bool
	// Instance names this tap in its rollout report (in-flight requests
	// at the cube, for the rollback drill); default host-pid.
	Instance string
}

// Tap is the capture stage in front of one legacy service: a capturer, the
// reverse proxy (Handler) with its upstream transport and rollout. Serve
// Handler; Run connects in the background; Close drains the captures.
type Tap struct {
	Capturer *publisher.Capturer
	Handler  *publisher.Tap
	Cube     string // cube URL of rolled-out users ("" = no rollout)

	deps       TapDeps
	service    string
	settings   publisher.StreamSettings
	useRollout bool
	rollout    *lateRollout
	conn       atomic.Pointer[natsx.Conn]
	capDone    chan error
	life       stage.Life
}

// NewTap builds the tap of te (te.Check done by the caller or here); no I/O.
func NewTap(te TapEnv, deps TapDeps) (*Tap, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Instance == "" {
		h, err := os.Hostname()
		if err != nil {
			h = "tap"
		}
		deps.Instance = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	cfg, settings, err := te.Check()
	if err != nil {
		return nil, err
	}
	c, err := publisher.New(cfg, publisher.Deps{Logger: deps.Logger, Registerer: deps.Registerer})
	if err != nil {
		return nil, err
	}
	tr, err := publisher.NewTransport(te.H2C, publisher.UpstreamTLS{
		CAFile: te.UpstreamCA, CertFile: te.UpstreamCert, KeyFile: te.UpstreamKey,
		ServerName: te.UpstreamServerName, InsecureSkipVerify: te.UpstreamInsecure,
	})
	if err != nil {
		c.Close()
		return nil, err
	}
	tr.ResponseHeaderTimeout = te.UpstreamTimeout
	if te.UpstreamMaxConns > 0 { // 0 only for a TapEnv not read by Load
		tr.MaxConnsPerHost, tr.MaxIdleConnsPerHost = te.UpstreamMaxConns, min(max(te.UpstreamMaxIdle, 1), te.UpstreamMaxConns)
		tr.MaxIdleConns = 2 * tr.MaxIdleConnsPerHost
	}
	t := &Tap{Capturer: c, deps: deps, service: cfg.Service, settings: settings, rollout: &lateRollout{}, capDone: make(chan error, 1)}
	tcfg := publisher.TapConfig{Upstream: te.Upstream, Cube: te.CubeURL, Transport: tr, LegacyWorkers: te.LegacyWorkers, Log: deps.Logger, EchoID: te.EchoID}
	if tcfg.Cube == "" && cfg.Routes != nil {
		tcfg.Cube = cfg.Routes.CubeURL
	}
	t.useRollout = te.Rollout && tcfg.Cube != ""
	if t.useRollout {
		tcfg.Rollout, t.Cube = t.rollout, tcfg.Cube
	}
	if t.Handler, err = publisher.NewTap(c, tcfg); err != nil {
		c.Close()
		return nil, err
	}
	return t, nil
}

// Run publishes captures and connects to NATS in the background (until then
// captures are dropped or spilled and counted, rollout stays at 0%) until
// ctx ends. The capturer keeps running until Close, so the captures of the
// last requests the server finishes are still published.
func (t *Tap) Run(ctx context.Context) error {
	ctx, end, err := t.life.Begin(ctx, "tap")
	if err != nil {
		return err
	}
	defer end()
	capCtx := context.WithoutCancel(ctx) // the capturer runs until Close
	go func() { t.capDone <- t.Capturer.Run(capCtx) }()
	ctx, cancelRun := context.WithCancel(ctx)
	log := t.deps.Logger
	var reports sync.WaitGroup
	defer reports.Wait()
	wait := attachInBackground(ctx, t.Capturer, t.deps.Connect, t.deps.SharedConn, t.settings, log,
		func(actx context.Context, cn *natsx.Conn) error {
			if !t.useRollout {
				return nil
			}
			flags, err := publisher.OpenFlags(actx, cn.JS)
			if err != nil {
				return err
			}
			w, err := publisher.WatchFlag(ctx, flags.KV(), t.service, log)
			if err != nil {
				return err
			}
			t.rollout.w.Store(w)
			reports.Add(1)
			go func() { // in-flight count at the cube, for the rollback drill (publisher/inflight.go)
				defer reports.Done()
				publisher.ReportTap(ctx, flags.KV(), t.Handler, t.service, t.deps.Instance, 0, log)
			}()
			log.Info("following rollout flag", "key", publisher.FlagKey(t.service), "percent", w.Percent(), "cube", redact.URLString(t.Cube))
			return nil
		}, t.conn.Store)
	defer wait()
	defer cancelRun() // first: the attempts and reports end, then they are waited for
	select {
	case <-ctx.Done():
	case err := <-t.capDone:
		t.capDone <- err // for Close
		return err
	}
	return nil
}

// attachInBackground connects the capturer c to NATS in the background,
// retrying with back-off until it succeeds or ctx ends (captures meanwhile
// are dropped or spilled, and counted): each attempt connects, ensures
// LEGACY_REQUESTS with settings and calls ready (nil: nothing more); the
// connection is handed to keep. The returned wait waits for the attempts to
// end (after ctx ended).
func attachInBackground(ctx context.Context, c *publisher.Capturer, connect func(context.Context) (*natsx.Conn, error), shared bool,
	settings publisher.StreamSettings, log *slog.Logger, ready func(context.Context, *natsx.Conn) error, keep func(*natsx.Conn)) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := c.ConnectLoop(ctx, func(ctx context.Context) (*nats.Conn, error) {
			actx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			cn, err := connect(actx)
			if err != nil {
				return nil, err
			}
			err = publisher.EnsureStream(actx, cn.JS, settings)
			if err == nil && ready != nil {
				err = ready(actx, cn)
			}
			if err != nil {
				if !shared {
					cn.Close()
				}
				return nil, err
			}
			keep(cn)
			return cn.NC, nil
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Error("capture stays down", "err", err)
		}
	}()
	return func() { <-done }
}

// Close stops Run, closes the proxy, drains the capturer (publishing what
// is queued, waiting at most its ack timeout) and releases the connection.
// Idempotent.
func (t *Tap) Close() error {
	return t.life.Close(func() error {
		t.Handler.Close()
		err := t.Capturer.Close()
		if t.life.Started() {
			if rerr := <-t.capDone; rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		if w := t.rollout.w.Load(); w != nil {
			w.Close()
		}
		if cn := t.conn.Load(); cn != nil && !t.deps.SharedConn {
			cn.Close()
		}
		return err
	})
}

// RunTap is `shadowcube tap`: the tap of te on SHADOWCUBE_TAP_LISTEN until
// ctx ends, then the server stops gracefully (SHADOWCUBE_SHUTDOWN_TIMEOUT)
// and the captures are drained.
func RunTap(ctx context.Context, p *Process, te TapEnv) error {
	t, err := NewTap(te, TapDeps{Logger: p.Log, Registerer: p.Reg, Connect: func(ctx context.Context) (*natsx.Conn, error) {
		return natsx.Connect(ctx, p.Common.NATS("shadowcube-tap"), p.Log)
	}})
	if err != nil {
		return err
	}
	if n, err := publisher.RaiseFileLimit(); err != nil {
		p.Log.Warn("file descriptor limit", "err", err)
	} else {
		p.Log.Info("file descriptor limit", "open_files", n)
	}
	ln, err := net.Listen("tcp", te.Listen)
	if err != nil {
		t.Close()
		return fmt.Errorf("SHADOWCUBE_TAP_LISTEN=%s: %w", te.Listen, err)
	}
	g := NewGroup(ctx)
	g.Run("tap", t)
	g.Go("tap server", func(ctx context.Context) error { return Serve(ctx, ln, t.Handler, p.ShutdownTimeout()) })
	p.Log.Info("tap listening", "addr", ln.Addr().String(), "upstream", redact.URLString(te.Upstream), "service", te.Service)
	<-g.Context().Done()
	return g.Stop()
}
