package wiring

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/heal7/shadowcube/internal/natsx"
)

// Stage is the shape every stage has (docs/architecture.md, "Stage
// contract"): Run works until its context ends and drains; Close is
// idempotent.
type Stage interface {
	Run(ctx context.Context) error
	Close() error
}

// Group supervises the stages of one process: it starts them, joins their
// errors (the first failure stops the others) and stops everything in order,
// newest first.
type Group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	errs   []error
	stops  []func()
}

// NewGroup returns a group whose context ends with ctx, with Stop, or when
// a stage fails.
func NewGroup(ctx context.Context) *Group {
	g := &Group{}
	g.ctx, g.cancel = context.WithCancel(ctx)
	return g
}

// Context is the group's context: it ends when a stage fails or Stop is called.
func (g *Group) Context() context.Context { return g.ctx }

// Go runs run in its own goroutine with the group's context; an error it
// returns while the group is running is recorded and stops the group.
func (g *Group) Go(name string, run func(context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := run(g.ctx); err != nil && g.ctx.Err() == nil {
			g.fail(fmt.Errorf("%s: %w", name, err))
		}
	}()
}

// Run starts s under the group and registers its Close.
func (g *Group) Run(name string, s Stage) {
	g.OnStop(func() { s.Close() })
	g.Go(name, s.Run)
}

func (g *Group) fail(err error) {
	g.mu.Lock()
	g.errs = append(g.errs, err)
	g.mu.Unlock()
	g.cancel()
}

// OnStop registers f to run when the group stops, newest first.
func (g *Group) OnStop(f func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stops = append(g.stops, f)
}

// Err returns the joined errors of the stages that failed so far.
func (g *Group) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return errors.Join(g.errs...)
}

// Stop cancels the group, waits for every goroutine (each stage drains on
// its own), then runs the stop functions newest first and returns Err.
// Idempotent.
func (g *Group) Stop() error {
	g.cancel()
	g.wg.Wait()
	g.mu.Lock()
	stops := g.stops
	g.stops = nil
	g.mu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
	return g.Err()
}

// Serve serves h on ln until ctx ends or the server fails, then shuts it
// down gracefully: in-flight requests get up to timeout
// (SHADOWCUBE_SHUTDOWN_TIMEOUT) to finish. It returns the server's error,
// or nil after a graceful stop.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, timeout time.Duration) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-errc
	if err != nil {
		return fmt.Errorf("shut down %s: %w", ln.Addr(), err)
	}
	return nil
}

// ServeLoopback serves h on a free loopback port under g (stopped with it,
// gracefully within 5s) and returns its base URL.
func (g *Group) ServeLoopback(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); Serve(ctx, ln, h, 5*time.Second) }()
	g.OnStop(func() { stop(); <-done })
	return "http://" + ln.Addr().String(), nil
}

// RunStage is the life of a one-stage command: connect to NATS, build the
// stage, run it until ctx ends (it drains), close it.
func RunStage(ctx context.Context, p *Process, build func(ctx context.Context, conn *natsx.Conn) (Stage, error)) error {
	conn, err := p.ConnectNATS(ctx)
	if err != nil {
		return err
	}
	s, err := build(ctx, conn)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Run(ctx); err != nil {
		return err
	}
	p.Log.Info(p.name + " stopped")
	return nil
}
