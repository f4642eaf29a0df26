package shadow

import (
	"sync"
	"time"
)

// BreakerState is the state of a circuit breaker, exported as the value of
// the shadowcube_shadow_breaker_state gauge.
type BreakerState int

// Breaker states. Closed lets every request through; Open rejects every
// request until OpenFor has passed; HalfOpen lets a bounded number of probe
// requests through: one success closes the breaker, one failure opens it again.
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
	// Probes is how many requests may be in flight while half-open. Default 1.
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

// breaker is a consecutive-failure circuit breaker. It is safe for concurrent
// use; onChange is called (under the lock) on every state change.
type breaker struct {
	cfg      BreakerConfig
	now      func() time.Time
	onChange func(BreakerState)

	mu       sync.Mutex
	state    BreakerState
	fails    int
	openedAt time.Time
	probes   int // probes in flight while half-open
}

func newBreaker(cfg BreakerConfig, now func() time.Time, onChange func(BreakerState)) *breaker {
	cfg.defaults()
	if onChange == nil {
		onChange = func(BreakerState) {}
	}
	return &breaker{cfg: cfg, now: now, onChange: onChange}
}

// allow reports whether a request may be sent now. When it returns true the
// caller must call done with the same probe value and the outcome.
func (b *breaker) allow() (ok, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case BreakerClosed:
		return true, false
	case BreakerOpen:
		if b.now().Sub(b.openedAt) < b.cfg.OpenFor {
			return false, false
		}
		b.set(BreakerHalfOpen)
		fallthrough
	default: // half-open
		if b.probes >= b.cfg.Probes {
			return false, false
		}
		b.probes++
		return true, true
	}
}

// cancel releases a request let through by allow that was never sent
// (shutdown), without counting an outcome.
func (b *breaker) cancel(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	b.probes--
	b.mu.Unlock()
}

// done records the outcome of a request let through by allow.
func (b *breaker) done(probe, success bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probes--
	}
	if success {
		b.fails = 0
		if b.state != BreakerClosed && (probe || b.state == BreakerHalfOpen) {
			b.set(BreakerClosed)
		}
		return
	}
	b.fails++
	switch {
	case b.state == BreakerHalfOpen && probe:
		b.open()
	case b.state == BreakerClosed && b.fails >= b.cfg.Failures:
		b.open()
	}
}

func (b *breaker) open() {
	b.openedAt = b.now()
	b.set(BreakerOpen)
}

func (b *breaker) set(s BreakerState) {
	if b.state == s {
		return
	}
	b.state = s
	if s == BreakerClosed {
		b.fails = 0
	}
	b.onChange(s)
}

// State returns the current state (an open breaker whose OpenFor has passed is
// still reported open until the next request probes it).
func (b *breaker) State() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}
