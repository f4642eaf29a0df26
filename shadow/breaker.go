package shadow

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// BreakerState is the state of a circuit breaker, exported as the value of
// the shadowcube_shadow_breaker_state gauge.
type BreakerState int

// Breaker states. Closed lets every request through; Open rejects every
// request until OpenFor has passed; HalfOpen lets Probes requests through:
// that many successes close the breaker, one failure opens it again.
const (
	BreakerClosed   BreakerState = 0
	BreakerHalfOpen BreakerState = 1
	BreakerOpen     BreakerState = 2
)

func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerHalfOpen:
		return "half-open"
	case BreakerOpen:
		return "open"
	}
	return "unknown"
}

// BreakerConfig configures the circuit breaker of every target.
type BreakerConfig struct {
	// Failures is the number of consecutive failed requests (transport error,
	// timeout, 502/503/504) that opens the breaker. Default 5.
	Failures int
	// OpenFor is how long an open breaker rejects requests before letting
	// probes through. Default 5s.
	OpenFor time.Duration
	// Probes is how many requests may be in flight while half-open; that
	// many successes close the breaker. Default 1.
	Probes int
}

func (c *BreakerConfig) defaults() {
	if c.Failures <= 0 {
		c.Failures = 5
	}
	if c.OpenFor <= 0 {
		c.OpenFor = 5 * time.Second
	}
	if c.Probes <= 0 {
		c.Probes = 1
	}
}

// Outcomes reported to the breaker besides success (nil).
var (
	errCanceled = errors.New("replay abandoned") // not counted: shutdown, or never sent
	errFailed   = errors.New("target failed")    // transport error, timeout, 502/503/504
)

// breaker is a target's consecutive-failure circuit breaker
// (sony/gobreaker), plus what the replayer needs around it: whether the
// target has proven healthy since it last opened, when an open breaker lets
// probes through, and a way to wait until it may be asked again.
type breaker struct {
	cb      *gobreaker.TwoStepCircuitBreaker[struct{}]
	cfg     BreakerConfig
	healthy atomic.Bool // a real answer since the breaker last opened (or started)

	mu       sync.Mutex
	openedAt time.Time
	changed  chan struct{} // closed and replaced on every state change
}

func newBreaker(name string, cfg BreakerConfig, onChange func(BreakerState)) *breaker {
	cfg.defaults()
	if onChange == nil {
		onChange = func(BreakerState) {}
	}
	b := &breaker{cfg: cfg, changed: make(chan struct{})}
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: uint32(cfg.Probes),
		Timeout:     cfg.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(cfg.Failures) },
		IsExcluded:  func(err error) bool { return errors.Is(err, errCanceled) },
		OnStateChange: func(_ string, _, to gobreaker.State) { // under gobreaker's lock
			s := stateOf(to)
			b.mu.Lock()
			if s == BreakerOpen {
				b.openedAt = time.Now()
				b.healthy.Store(false)
			}
			close(b.changed)
			b.changed = make(chan struct{})
			b.mu.Unlock()
			onChange(s)
		},
	})
	return b
}

func stateOf(s gobreaker.State) BreakerState {
	switch s {
	case gobreaker.StateOpen:
		return BreakerOpen
	case gobreaker.StateHalfOpen:
		return BreakerHalfOpen
	}
	return BreakerClosed
}

// allow asks to send one request; on success the caller must call done
// with nil (the target answered), errFailed or errCanceled.
func (b *breaker) allow() (done func(error), ok bool) {
	done, err := b.cb.Allow()
	if err != nil {
		return nil, false
	}
	return done, true
}

// State returns the current state (an open breaker whose OpenFor has passed
// turns half-open here).
func (b *breaker) State() BreakerState { return stateOf(b.cb.State()) }

// retryDelay is how long a request the breaker turned away should wait
// before it is offered again: the rest of the open period, or, while probes
// are in flight, a quarter of it (at most 1s).
func (b *breaker) retryDelay() time.Duration {
	if b.State() == BreakerOpen {
		b.mu.Lock()
		left := time.Until(b.openedAt.Add(b.cfg.OpenFor))
		b.mu.Unlock()
		return max(left, 10*time.Millisecond)
	}
	return min(max(b.cfg.OpenFor/4, 10*time.Millisecond), time.Second)
}

// changes returns a channel closed at the next state change.
func (b *breaker) changes() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// probeFree reports whether a half-open breaker has a free probe slot.
func (b *breaker) probeFree() bool {
	c := b.cb.Counts()
	return c.Requests-min(c.TotalExclusions, c.Requests) < uint32(b.cfg.Probes)
}

// waitChange waits until changed is closed, d has passed or ctx ends (its
// error).
func waitChange(ctx context.Context, changed <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-changed:
	case <-t.C:
	}
	return nil
}

// waitReady returns once the breaker would let a request through: at once
// when closed, after the open period when open, and, while half-open, when
// a probe slot is free or the state changes. The error is ctx's.
func (b *breaker) waitReady(ctx context.Context) error {
	for {
		changed := b.changes()
		var wait time.Duration
		switch b.State() {
		case BreakerClosed:
			return nil
		case BreakerHalfOpen:
			if b.probeFree() {
				return nil
			}
			wait = b.cfg.OpenFor // a probe abandoned without outcome changes nothing: look again
		default:
			wait = b.retryDelay()
		}
		if err := waitChange(ctx, changed, wait); err != nil {
			return err
		}
	}
}
