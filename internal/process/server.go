package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a Prometheus registry with the Go and process
// collectors. Components register their metrics on it; nothing uses the
// default registry.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// ReadyFunc reports whether the process is ready to do its work; a non-nil
// error makes /readyz answer 503 with the error text.
type ReadyFunc func(ctx context.Context) error

// OpsServer serves /metrics, /healthz (alive) and /readyz (ready checks).
type OpsServer struct {
	srv   *http.Server
	ln    net.Listener
	mu    sync.Mutex
	ready []ReadyFunc
	done  chan struct{}
	err   error
}

// StartOpsServer listens on addr and serves until Close.
// SHADOWCUBE_METRICS_ADDR defaults to 127.0.0.1:9090: metrics and health
// are not exposed beyond the host unless configured. log may be nil.
func StartOpsServer(addr string, reg *prometheus.Registry, log *slog.Logger) (*OpsServer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics server: listen on %s (SHADOWCUBE_METRICS_ADDR): %w", addr, err)
	}
	o := &OpsServer{ln: ln, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := o.checkReady(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	o.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(o.done)
		if err := o.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
			o.err = err
		}
	}()
	log.Info("serving /metrics, /healthz, /readyz", "addr", ln.Addr().String())
	return o, nil
}

// Addr is the address the server listens on.
func (o *OpsServer) Addr() string { return o.ln.Addr().String() }

// AddReady adds a readiness check.
func (o *OpsServer) AddReady(f ReadyFunc) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ready = append(o.ready, f)
}

func (o *OpsServer) checkReady(ctx context.Context) error {
	o.mu.Lock()
	checks := append([]ReadyFunc(nil), o.ready...)
	o.mu.Unlock()
	for _, f := range checks {
		if err := f(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Close stops the server and waits for it.
func (o *OpsServer) Close(ctx context.Context) error {
	err := o.srv.Shutdown(ctx)
	<-o.done
	return err
}
