// Package stage holds the mechanics every pipeline stage shares under the
// stage contract (docs/architecture.md, "Stage contract"): the one rule for
// registering metrics, and the run/close bookkeeping behind Run(ctx) and an
// idempotent Close. Stage packages embed these; none of it appears in their
// exported APIs.
package stage

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers cs on reg, the one rule of every stage: a conflict
// (the same metric registered twice, e.g. two stages of one kind on one
// registry) is returned as an error naming the stage, never a panic. A nil
// reg registers nothing.
func Register(reg prometheus.Registerer, name string, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return fmt.Errorf("register %s metrics: %w (one %s per registry)", name, err, name)
			}
			return fmt.Errorf("register %s metrics: %w", name, err)
		}
	}
	return nil
}

// ErrClosed is returned by Run after Close: a closed stage does not run again.
var ErrClosed = errors.New("stage closed")

// Life is the run/close bookkeeping of one stage: Run may be entered once,
// Close is idempotent, cancels a running Run and waits for it to return,
// then releases what the stage holds. The zero value is ready.
type Life struct {
	mu      sync.Mutex
	name    string
	running bool
	ran     bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}
	once    sync.Once
	err     error
}

// Begin marks the start of Run for the stage called name. It returns the
// context Run works under (cancelled by ctx or Close) and end, which Run
// must call (deferred) when it returns.
func (l *Life) Begin(ctx context.Context, name string) (context.Context, func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return nil, nil, fmt.Errorf("%s: run: %w", name, ErrClosed)
	case l.ran:
		return nil, nil, fmt.Errorf("%s: run called twice", name)
	}
	l.name, l.ran, l.running = name, true, true
	ctx, cancel := context.WithCancel(ctx)
	l.cancel, l.done = cancel, make(chan struct{})
	end := func() {
		cancel()
		l.mu.Lock()
		l.running = false
		l.mu.Unlock()
		close(l.done)
	}
	return ctx, end, nil
}

// Started reports whether Run has been entered.
func (l *Life) Started() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ran
}

// Close cancels a running Run, waits for it to return, then calls release
// once (nil: nothing to release). Later calls return the first call's error.
func (l *Life) Close(release func() error) error {
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		cancel, done := l.cancel, l.done
		l.mu.Unlock()
		if cancel != nil {
			cancel()
			<-done
		}
		if release != nil {
			l.err = release()
		}
	})
	return l.err
}
