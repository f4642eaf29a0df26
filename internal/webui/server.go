package webui

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/internal/analyst"
)

// DefaultRefresh is how often a page reloads itself unless the URL says
// otherwise (refresh=0 turns it off).
const DefaultRefresh = 30 * time.Second

// Config configures the web UI.
type Config struct {
	// Addr is the listen address (SHADOWCUBE_SERVE_ADDR), e.g. 127.0.0.1:8088.
	Addr string
	// Token enables changes (accepting signatures): without it the UI is
	// read-only. A secret: it is never logged.
	Token Token
	// AcceptedOut, when set, is the accepted-signatures YAML file rewritten
	// (atomically) after every change and at start.
	AcceptedOut string
	// Refresh is the default auto-refresh period of the pages (0: DefaultRefresh;
	// negative: off).
	Refresh time.Duration
	// AcceptedIn is the accepted-signatures file compare reads
	// (SHADOWCUBE_COMPARE_ACCEPTED_FILE); default AcceptedOut when that
	// exists. At start its signature entries that the store has never
	// seen are imported (audited as accepted by "file <path>"); its route
	// + cause entries count as accepted for the figures and are kept in
	// the export.
	AcceptedIn string
	// AI is the rollback rule of AI routes (zero: defaults).
	AI comparator.AIConfig
	// Examples bounds the examples shown per signature (0: all kept).
	Examples int
	// Criteria are the gate's criteria: each service's verdict is shown
	// as in the report (nil: no gate).
	Criteria *analyst.Criteria
	// TLSCert and TLSKey, both set, serve HTTPS (the session cookie is
	// then Secure).
	TLSCert, TLSKey string
}

// Deps are the web UI's dependencies.
type Deps struct {
	Store *comparator.Store
	Log   *slog.Logger // nil discards
	// JS, when set, feeds the gate's sync-lag and DLQ criteria (else
	// they show "no data").
	JS jetstream.JetStream
}

// Server is the running web UI. Close stops it.
type Server struct {
	cfg   Config
	store *comparator.Store
	js    jetstream.JetStream
	log   *slog.Logger
	auth  *auth
	ln    net.Listener
	srv   *http.Server
	done  chan struct{}
	err   error
	once  sync.Once
	cerr  error
	login *rate.Limiter              // failed logins: slows token guessing
	rules []comparator.AcceptedEntry // route + cause entries of AcceptedIn
	// active counts connections serving a request (tests wait on it).
	active   atomic.Int64
	activeOf sync.Map // net.Conn → true while serving a request
	// exportMu serialises YAML exports: each writes the store's state as it
	// is after the change that triggered it.
	exportMu sync.Mutex
}

// Start listens on cfg.Addr and serves the UI until Close. When
// cfg.AcceptedOut is set, the export is written once before serving, so a
// broken path fails at start rather than at the first change.
func Start(ctx context.Context, cfg Config, deps Deps) (*Server, error) {
	if deps.Store == nil {
		return nil, errors.New("web UI: no mismatch store")
	}
	if cfg.Addr == "" {
		return nil, errors.New("web UI: empty listen address (set SHADOWCUBE_SERVE_ADDR or --addr)")
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("web UI: set both SHADOWCUBE_SERVE_TLS_CERT and SHADOWCUBE_SERVE_TLS_KEY, or neither")
	}
	if cfg.TLSCert != "" {
		if _, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey); err != nil {
			return nil, fmt.Errorf("web UI: TLS certificate %s / key %s: %w", cfg.TLSCert, cfg.TLSKey, err)
		}
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = DefaultRefresh
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a, err := newAuth(cfg.Token)
	if err != nil {
		return nil, fmt.Errorf("web UI: session key: %w", err)
	}
	s := &Server{cfg: cfg, store: deps.Store, js: deps.JS, log: log, auth: a, done: make(chan struct{}),
		login: rate.NewLimiter(rate.Every(time.Second), 5)}
	if err := s.loadAccepted(ctx); err != nil {
		return nil, err
	}
	if cfg.AcceptedOut != "" {
		if err := s.export(ctx); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("web UI: listen on %s (SHADOWCUBE_SERVE_ADDR): %w", cfg.Addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnState:         s.connState,
	}
	go func() {
		defer close(s.done)
		var err error
		if cfg.TLSCert != "" {
			err = s.srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			err = s.srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("web UI stopped", "err", err)
			s.err = err
		}
	}()
	log.Info("serving the web UI", "addr", ln.Addr().String(), "read_only", !a.enabled, "tls", cfg.TLSCert != "", "accepted_out", cfg.AcceptedOut)
	if a.enabled && cfg.TLSCert == "" && !loopback(ln.Addr()) {
		log.Warn("the UI token and session cookie travel in clear text: serve with SHADOWCUBE_SERVE_TLS_CERT/KEY or behind a TLS proxy")
	}
	return s, nil
}

func (s *Server) connState(c net.Conn, st http.ConnState) {
	if st == http.StateActive {
		if _, was := s.activeOf.Swap(c, true); !was {
			s.active.Add(1)
		}
		return
	}
	if _, was := s.activeOf.LoadAndDelete(c); was {
		s.active.Add(-1)
	}
}

// Addr is the address the UI listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Done is closed when the server stopped serving.
func (s *Server) Done() <-chan struct{} { return s.done }

// Close stops the server gracefully: no new connections; requests in
// flight finish until ctx ends (SHADOWCUBE_SHUTDOWN_TIMEOUT), then
// connections are closed. It returns when the serving goroutine has
// exited. Idempotent.
func (s *Server) Close(ctx context.Context) error {
	s.once.Do(func() {
		err := s.srv.Shutdown(ctx)
		if err != nil {
			s.srv.Close()
		}
		<-s.done
		s.cerr = errors.Join(err, s.err)
	})
	return s.cerr
}

// Handler is the UI's HTTP handler: pages, login, changes, /healthz.
// Cross-origin POSTs are refused (Sec-Fetch-Site / Origin), on top of
// SameSite=Strict cookies and per-session CSRF tokens.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /{$}", s.page(s.overview))
	mux.HandleFunc("GET /route", s.page(s.routePage))
	mux.HandleFunc("GET /signature", s.page(s.signaturePage))
	mux.HandleFunc("GET /audit", s.page(s.auditPage))
	mux.HandleFunc("GET /report", s.report)
	mux.HandleFunc("GET /accepted.yaml", s.acceptedYAML)
	mux.HandleFunc("GET /login", s.page(s.loginPage))
	mux.HandleFunc("POST /login", s.doLogin)
	mux.HandleFunc("POST /logout", s.doLogout)
	mux.HandleFunc("POST /accept", s.change(true))
	mux.HandleFunc("POST /unaccept", s.change(false))
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("cross-origin request refused", "method", r.Method, "path", r.URL.Path,
			"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
	}))
	return secureHeaders(cop.Handler(limitBody(mux)))
}

// nonceKey carries the per-response CSP nonce of the inline script.
type nonceKey struct{}

// secureHeaders sets the headers every answer carries: a strict content
// security policy (only this response's inline script runs), no framing,
// no sniffing, no referrer, no caching of pages that may hold examples.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var nb [16]byte
		rand.Read(nb[:])
		nonce := base64.RawStdEncoding.EncodeToString(nb[:])
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'nonce-"+nonce+
			"'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), nonceKey{}, nonce)))
	})
}

func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		next.ServeHTTP(w, r)
	})
}

func loopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
