package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/internal/redact"
	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/publisher"
)

// CaptureEnv is the configuration shared by tap and import.
type CaptureEnv struct {
	redact.Env
	Service        string `envconfig:"TAP_SERVICE"`
	MaxBody        string `envconfig:"TAP_MAX_BODY" default:"1MiB"`
	RoutesFile     string `envconfig:"ROUTES_FILE"`
	UserHeader     string `envconfig:"TAP_USER_HEADER" default:"X-User-Id"`
	TrustedProxies string `envconfig:"TAP_TRUSTED_PROXIES" default:"127.0.0.0/8,::1/128"`
	UserCookie     string `envconfig:"TAP_USER_COOKIE"`
	UserJWTClaim   string `envconfig:"TAP_USER_JWT_CLAIM"`
	JWTHS256Secret string `envconfig:"TAP_JWT_HS256_SECRET"`
	JWTPublicKey   string `envconfig:"TAP_JWT_PUBLIC_KEY"`
	JWTJWKS        string `envconfig:"TAP_JWT_JWKS"`
	JWTAudience    string `envconfig:"TAP_JWT_AUDIENCE"`
	JWTIssuer      string `envconfig:"TAP_JWT_ISSUER"`
	QueueSize      int    `envconfig:"TAP_QUEUE_SIZE" default:"4096" min:"1"`
	QueueBytes     string `envconfig:"TAP_QUEUE_BYTES" default:"64MiB"`
	SpillDir       string `envconfig:"TAP_SPILL_DIR"`
	SpillMaxBytes  string `envconfig:"TAP_SPILL_MAX_BYTES" default:"256MiB"`
	StreamMaxAge   string `envconfig:"LEGACY_REQUESTS_MAX_AGE"`
	StreamMaxSize  string `envconfig:"LEGACY_REQUESTS_MAX_BYTES"`
	StreamDupes    string `envconfig:"LEGACY_REQUESTS_DUPLICATES"`
	StreamReplicas *int   `envconfig:"LEGACY_REQUESTS_REPLICAS" min:"1" max:"5"`
	StreamStorage  string `envconfig:"LEGACY_REQUESTS_STORAGE"`
}

const captureEnvHelp = `
  SHADOWCUBE_TAP_SERVICE        legacy service name: first token of legacy.req.<service>.<route> (--service)
  SHADOWCUBE_TAP_MAX_BODY       cap per captured body, request and response; longer ones are captured
                                truncated and flagged (default 1MiB; units B, KiB, MiB) (--max-body)
  SHADOWCUBE_ROUTES_FILE        routes file: route templates, per-route sample share and capture: false,
                                the service's cube_url (--routes; without it every path is /_other)
  SHADOWCUBE_TAP_USER_HEADER    header holding the raw user id, set by a trusted proxy (default X-User-Id;
                                never published; removed from requests of other peers)
  SHADOWCUBE_TAP_TRUSTED_PROXIES comma list of CIDRs whose user header is believed (default
                                127.0.0.0/8,::1/128; "none": nobody)
  SHADOWCUBE_TAP_USER_COOKIE    cookie holding the user id when no verified identity is found (default none;
                                gives a user key, never a rollout: the client chooses it)
  SHADOWCUBE_TAP_USER_JWT_CLAIM claim of the bearer JWT holding the user id (default sub when a JWT key is set)
  SHADOWCUBE_TAP_JWT_HS256_SECRET  HS256 key (at least 32 bytes) verifying bearer JWTs, or
  SHADOWCUBE_TAP_JWT_PUBLIC_KEY    PEM file of the RSA (RS256) or EC P-256 (ES256) public key, or
  SHADOWCUBE_TAP_JWT_JWKS          JWKS file (RSA / EC P-256 keys by kid); tokens need a valid exp
  SHADOWCUBE_TAP_JWT_AUDIENCE, SHADOWCUBE_TAP_JWT_ISSUER   required aud and iss of the tokens (default: any)
  Only a verified identity (trusted proxy header or verified JWT) is ever rolled out to the cube.` + redact.EnvHelp + `
  SHADOWCUBE_TAP_QUEUE_SIZE     events the in-memory publish queue holds (default 4096)
  SHADOWCUBE_TAP_QUEUE_BYTES    body bytes the queue holds (default 64MiB); beyond either, captures are dropped
  SHADOWCUBE_TAP_SPILL_DIR      directory of the optional on-disk spill for events NATS did not take (default off)
  SHADOWCUBE_TAP_SPILL_MAX_BYTES  spill file limit (default 256MiB)
  SHADOWCUBE_LEGACY_REQUESTS_MAX_AGE    retention of the LEGACY_REQUESTS stream, e.g. 72h (default unlimited)
  SHADOWCUBE_LEGACY_REQUESTS_MAX_BYTES  size limit of the LEGACY_REQUESTS stream, e.g. 10GiB (default unlimited)
  SHADOWCUBE_LEGACY_REQUESTS_REPLICAS   replicas of the LEGACY_REQUESTS stream, 1..5 (default 1)
  SHADOWCUBE_LEGACY_REQUESTS_STORAGE    file or memory (default file)
  SHADOWCUBE_LEGACY_REQUESTS_DUPLICATES de-duplication window of Nats-Msg-Id (re-import, spill replay), e.g. 24h (default 2m)`

// parseSize reads "1048576", "512KiB", "1MiB", "2GiB" (KB/MB/GB are the same
// binary units).
func parseSize(name, s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, &process.EnvError{Var: name, Value: s, Msg: "want a size like 1048576, 512KiB or 1MiB"}
	}
	return n * mult, nil
}

// capturerConfig builds the publisher config; routes may be nil.
func (c *CaptureEnv) capturerConfig() (publisher.Config, *routes.File, error) {
	var errs []error
	cfg := publisher.Config{
		Service:   c.Service,
		QueueSize: c.QueueSize,
		Privacy: publisher.PrivacyConfig{
			Secret: []byte(c.UserKeySecret), UserHeader: c.UserHeader, UserCookie: c.UserCookie,
			TrustedProxies: splitList(c.TrustedProxies),
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
	if cfg.MaxBody, err = parseSize("SHADOWCUBE_TAP_MAX_BODY", c.MaxBody); err != nil {
		errs = append(errs, err)
	}
	if cfg.QueueBytes, err = parseSize("SHADOWCUBE_TAP_QUEUE_BYTES", c.QueueBytes); err != nil {
		errs = append(errs, err)
	}
	if c.SpillDir != "" {
		cfg.Spill.Dir = c.SpillDir
		if cfg.Spill.MaxBytes, err = parseSize("SHADOWCUBE_TAP_SPILL_MAX_BYTES", c.SpillMaxBytes); err != nil {
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

func (c *CaptureEnv) streamSettings() (natsx.StreamSettings, error) {
	var s natsx.StreamSettings
	if c.StreamMaxAge != "" {
		d, err := time.ParseDuration(c.StreamMaxAge)
		if err != nil {
			return s, &process.EnvError{Var: "SHADOWCUBE_LEGACY_REQUESTS_MAX_AGE", Value: c.StreamMaxAge, Msg: "want a duration like 72h"}
		}
		s.MaxAge = d
	}
	if c.StreamMaxSize != "" {
		n, err := parseSize("SHADOWCUBE_LEGACY_REQUESTS_MAX_BYTES", c.StreamMaxSize)
		if err != nil {
			return s, err
		}
		s.MaxBytes = n
	}
	if c.StreamReplicas != nil {
		s.Replicas = *c.StreamReplicas
	}
	if err := storageValue("SHADOWCUBE_LEGACY_REQUESTS_STORAGE", c.StreamStorage); err != nil {
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

// bindCaptureFlags lets flags override the environment.
func bindCaptureFlags(cmd *cobra.Command, service, routesFile, maxBody *string) {
	cmd.Flags().StringVar(service, "service", "", "legacy service name (SHADOWCUBE_TAP_SERVICE)")
	cmd.Flags().StringVar(routesFile, "routes", "", "routes file (SHADOWCUBE_ROUTES_FILE)")
	cmd.Flags().StringVar(maxBody, "max-body", "", "cap per captured body, e.g. 1MiB (SHADOWCUBE_TAP_MAX_BODY)")
}

func (c *CaptureEnv) override(service, routesFile, maxBody string) {
	if service != "" {
		c.Service = service
	}
	if routesFile != "" {
		c.RoutesFile = routesFile
	}
	if maxBody != "" {
		c.MaxBody = maxBody
	}
}

type tapEnv struct {
	CaptureEnv
	Listen             string        `envconfig:"TAP_LISTEN" default:":8080"`
	Upstream           string        `envconfig:"TAP_UPSTREAM"`
	CubeURL            string        `envconfig:"TAP_CUBE_URL"`
	Unmatched          string        `envconfig:"TAP_UNMATCHED" default:"capture"`
	H2C                bool          `envconfig:"TAP_UPSTREAM_H2C"`
	UpstreamCA         string        `envconfig:"TAP_UPSTREAM_CA"`
	UpstreamCert       string        `envconfig:"TAP_UPSTREAM_CERT"`
	UpstreamKey        string        `envconfig:"TAP_UPSTREAM_KEY"`
	UpstreamServerName string        `envconfig:"TAP_UPSTREAM_SERVER_NAME"`
	UpstreamInsecure   bool          `envconfig:"TAP_UPSTREAM_INSECURE"`
	UpstreamTimeout    time.Duration `envconfig:"TAP_UPSTREAM_TIMEOUT" min:"0s" default:"0s"`
	Rollout            bool          `envconfig:"TAP_ROLLOUT" default:"true"`
	LegacyWorkers      int           `envconfig:"TAP_LEGACY_WORKERS" default:"8" min:"1"`
	UpstreamMaxConns   int           `envconfig:"TAP_UPSTREAM_MAX_CONNS" default:"1024" min:"1" max:"65536" desc:"connections to each upstream (legacy, cube) at most; requests beyond wait for one"`
	UpstreamMaxIdle    int           `envconfig:"TAP_UPSTREAM_MAX_IDLE_CONNS" default:"512" min:"1" max:"65536" desc:"idle connections kept per upstream for reuse"`
	EchoID             bool          `envconfig:"TAP_ECHO_ID"`
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

func newTapCmd() *cobra.Command {
	var service, routesFile, maxBody, listen, upstream, cube string
	cmd := &cobra.Command{
		Use:   "tap",
		Short: "Reverse proxy in front of the legacy service that captures traffic into JetStream",
		Long: `tap is a reverse proxy in front of a legacy HTTP service. Users always get the
legacy answer, unchanged and streamed as it comes; each request and its answer
(bodies up to the cap, longer ones truncated and flagged) go through a bounded
in-memory queue to the LEGACY_REQUESTS stream, subject
legacy.req.<service>.<route template>, with Nats-Msg-Id = the capture id. When
NATS is down or slow the queue fills and new captures are dropped and counted
(shadowcube_tap_dropped_total{reason}); the user path never waits or fails.
A tap started while NATS is unreachable starts anyway: it proxies every
request, drops (or spills) and counts captures, keeps connecting in the
background (shadowcube_tap_capture_up is 0 meanwhile, /readyz stays ready)
and captures once NATS answers.

Privacy: the raw user id becomes user_key = hmac-sha256 of it. Only allowed
headers are published (a safe default list, e.g. Content-Type, Traceparent,
X-Truth-Label, plus SHADOWCUBE_TAP_ALLOW_HEADERS); token-like query parameters
and form fields are removed or HMAC'd, and configured JSON body paths in every
JSON value of a body. A client's X-Shadow-Request header is removed.

Rollout: the tap watches the KV key rollout.<service> (see 'shadowcube flags').
A user whose hash(user key) mod 100 < percent is served by the cube instead;
the request is then sent to the legacy service in the background (bounded,
following the route's replay policy) and the legacy answer is captured.
When the cube gives no answer at all (down, reset, timeout before headers),
the user is answered by the legacy service instead
(shadowcube_tap_cube_fallback_total). Changes take effect within a second,
without restart.

Metrics on SHADOWCUBE_METRICS_ADDR: shadowcube_tap_requests_total{route,target},
shadowcube_tap_captured_total{route}, shadowcube_tap_captured_bytes_total{route},
shadowcube_tap_dropped_total{reason}, shadowcube_tap_published_total,
shadowcube_tap_queue_depth, shadowcube_tap_publish_seconds, shadowcube_tap_cube_fallback_total,
shadowcube_tap_upstream_seconds{route,target}.

Flags:
  --listen ADDR      listen address (SHADOWCUBE_TAP_LISTEN, default :8080)
  --upstream URL     legacy base URL (SHADOWCUBE_TAP_UPSTREAM, required)
  --cube-url URL     cube base URL for rolled-out users (SHADOWCUBE_TAP_CUBE_URL; default the routes file's cube_url)
  --service NAME     (SHADOWCUBE_TAP_SERVICE)   --routes FILE (SHADOWCUBE_ROUTES_FILE)   --max-body SIZE (SHADOWCUBE_TAP_MAX_BODY)

Environment:
  SHADOWCUBE_TAP_LISTEN         listen address (default :8080)
  SHADOWCUBE_TAP_UPSTREAM       legacy base URL, http:// or https:// (required)
  SHADOWCUBE_TAP_CUBE_URL       cube base URL (default: cube_url of the service in the routes file)
  SHADOWCUBE_TAP_UNMATCHED      capture (as route /_other, default) or skip paths matching no route
  SHADOWCUBE_TAP_UPSTREAM_H2C   true: HTTP/2 without TLS (prior knowledge) to http:// upstreams
  SHADOWCUBE_TAP_UPSTREAM_CA    PEM CA bundle for https:// upstreams (default system roots)
  SHADOWCUBE_TAP_UPSTREAM_CERT, SHADOWCUBE_TAP_UPSTREAM_KEY   client certificate for mutual TLS
  SHADOWCUBE_TAP_UPSTREAM_SERVER_NAME  expected TLS server name (default from the URL)
  SHADOWCUBE_TAP_UPSTREAM_INSECURE     true: do not verify the upstream certificate (tests only)
  SHADOWCUBE_TAP_UPSTREAM_TIMEOUT      wait for the upstream's response headers, e.g. 30s (default 0: none)
  SHADOWCUBE_TAP_UPSTREAM_MAX_CONNS    connections to each upstream at most (default 1024); requests beyond wait for
                                one, as at a busy upstream, instead of exhausting file descriptors
  SHADOWCUBE_TAP_UPSTREAM_MAX_IDLE_CONNS  idle connections kept per upstream (default 512)
  SHADOWCUBE_TAP_ROLLOUT        false: ignore rollout flags (default true when a cube URL is known)
  SHADOWCUBE_TAP_LEGACY_WORKERS background legacy calls for rolled-out users in flight (default 8)
  SHADOWCUBE_TAP_ECHO_ID        true: answer captured requests with X-Shadowcube-Capture-Id: <capture id>, to look
                                up their verdict with 'compare show <id>' (default false: answers unchanged)` + captureEnvHelp + commonEnvHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var te tapEnv
			if err := process.Load(&te); err != nil {
				return err
			}
			te.override(service, routesFile, maxBody)
			if listen != "" {
				te.Listen = listen
			}
			if upstream != "" {
				te.Upstream = upstream
			}
			if cube != "" {
				te.CubeURL = cube
			}
			return runTap(cmd, te)
		},
	}
	bindCaptureFlags(cmd, &service, &routesFile, &maxBody)
	cmd.Flags().StringVar(&listen, "listen", "", "listen address (SHADOWCUBE_TAP_LISTEN)")
	cmd.Flags().StringVar(&upstream, "upstream", "", "legacy base URL (SHADOWCUBE_TAP_UPSTREAM)")
	cmd.Flags().StringVar(&cube, "cube-url", "", "cube base URL (SHADOWCUBE_TAP_CUBE_URL)")
	return cmd
}

func runTap(cmd *cobra.Command, te tapEnv) error {
	cfg, _, err := te.capturerConfig()
	if te.Upstream == "" {
		err = errors.Join(err, &process.EnvError{Var: "SHADOWCUBE_TAP_UPSTREAM", Msg: "required: the legacy base URL (or --upstream)"})
	}
	if _, _, e := net.SplitHostPort(te.Listen); e != nil {
		err = errors.Join(err, &process.EnvError{Var: "SHADOWCUBE_TAP_LISTEN", Value: te.Listen, Msg: "want host:port, e.g. :8080"})
	}
	cfg.Unmatched = te.Unmatched
	settings, serr := te.streamSettings()
	if err = errors.Join(err, serr); err != nil {
		return usageError{err}
	}
	ctx, e, err := setup(cmd, "tap", true)
	if err != nil {
		return err
	}
	defer e.Close()
	// NATS is connected in the background: a tap restarted during a NATS
	// outage must still serve users. Until it connects, captures are
	// dropped (or spilled) and counted, rollout stays at 0%, /readyz stays
	// ready (proxying works) and shadowcube_tap_capture_up is 0.
	var conn atomic.Pointer[natsx.Conn]
	rollout := &lateRollout{}
	defer func() {
		if w := rollout.w.Load(); w != nil {
			w.Close()
		}
		if cn := conn.Load(); cn != nil {
			cn.Close()
		}
	}()
	c, err := publisher.New(cfg, publisher.Deps{Logger: e.Log, Registerer: e.Reg})
	if err != nil {
		return err
	}
	defer c.Close()
	// The capturer outlives the signal: Close (deferred, after the server's
	// shutdown) drains what the last requests captured.
	capErr := make(chan error, 1)
	go func() { capErr <- c.Run(context.WithoutCancel(ctx)) }()
	tr, err := publisher.NewTransport(te.H2C, publisher.UpstreamTLS{
		CAFile: te.UpstreamCA, CertFile: te.UpstreamCert, KeyFile: te.UpstreamKey,
		ServerName: te.UpstreamServerName, InsecureSkipVerify: te.UpstreamInsecure,
	})
	if err != nil {
		return err
	}
	tr.ResponseHeaderTimeout = te.UpstreamTimeout
	tr.MaxConnsPerHost, tr.MaxIdleConnsPerHost = te.UpstreamMaxConns, min(te.UpstreamMaxIdle, te.UpstreamMaxConns)
	tr.MaxIdleConns = 2 * tr.MaxIdleConnsPerHost
	if n, err := publisher.RaiseFileLimit(); err != nil {
		e.Log.Warn("file descriptor limit", "err", err)
	} else {
		e.Log.Info("file descriptor limit", "open_files", n)
	}
	tcfg := publisher.TapConfig{Upstream: te.Upstream, Cube: te.CubeURL, Transport: tr, LegacyWorkers: te.LegacyWorkers, Log: e.Log, EchoID: te.EchoID}
	if tcfg.Cube == "" && cfg.Routes != nil {
		tcfg.Cube = cfg.Routes.CubeURL
	}
	useRollout := te.Rollout && tcfg.Cube != ""
	if useRollout {
		tcfg.Rollout = rollout
	}
	tap, err := publisher.NewTap(c, tcfg)
	if err != nil {
		return err
	}
	defer tap.Close()
	lctx, stopLoop := context.WithCancel(ctx)
	var loop sync.WaitGroup
	var reportOnce sync.Once
	loop.Add(1)
	go func() {
		defer loop.Done()
		err := c.ConnectLoop(lctx, func(ctx context.Context) (*nats.Conn, error) {
			actx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			cn, err := natsx.Connect(actx, e.Common.NATS("shadowcube-tap"), e.Log)
			if err != nil {
				return nil, err
			}
			if err := publisher.EnsureStream(actx, cn.JS, settings); err != nil {
				cn.Close()
				return nil, err
			}
			if useRollout {
				flags, err := publisher.OpenFlags(actx, cn.JS)
				if err != nil {
					cn.Close()
					return nil, err
				}
				w, err := publisher.WatchFlag(lctx, flags.KV(), cfg.Service, e.Log)
				if err != nil {
					cn.Close()
					return nil, err
				}
				rollout.w.Store(w)
				reportOnce.Do(func() { // in-flight count at the cube, for the rollback drill (publisher/inflight.go)
					loop.Add(1)
					go func() {
						defer loop.Done()
						publisher.ReportTap(lctx, flags.KV(), tap, cfg.Service, tapInstance(), 0, e.Log)
					}()
				})
				e.Log.Info("following rollout flag", "key", publisher.FlagKey(cfg.Service), "percent", w.Percent(), "cube", redact.URLString(tcfg.Cube))
			}
			conn.Store(cn)
			return cn.NC, nil
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			e.Log.Error("capture stays down", "err", err)
		}
	}()
	defer func() { stopLoop(); loop.Wait() }()
	ln, err := net.Listen("tcp", te.Listen)
	if err != nil {
		return fmt.Errorf("SHADOWCUBE_TAP_LISTEN=%s: %w", te.Listen, err)
	}
	srv := &http.Server{Handler: tap, ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	e.Log.Info("tap listening", "addr", ln.Addr().String(), "upstream", redact.URLString(te.Upstream), "service", cfg.Service)
	select {
	case err := <-errc:
		return fmt.Errorf("tap server: %w", err)
	case err := <-capErr:
		if err != nil {
			return err
		}
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		e.Log.Warn("tap shutdown", "err", err)
	}
	<-errc
	return nil
}

// tapInstance names this tap process in its rollout report: host and pid.
func tapInstance() string {
	h, err := os.Hostname()
	if err != nil {
		h = "tap"
	}
	return fmt.Sprintf("%s-%d", h, os.Getpid())
}
