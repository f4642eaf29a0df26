package shadow

import (
	"context"
	"sync"
	"time"
)

// tokenBucket is a small rate limiter: rate tokens per second, up to burst
// saved. A nil *tokenBucket does not limit.
type tokenBucket struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newTokenBucket(rate float64, now func() time.Time) *tokenBucket {
	if rate <= 0 {
		return nil
	}
	burst := rate / 10 // at most a tenth of a second of requests at once
	if burst < 1 {
		burst = 1
	}
	return &tokenBucket{rate: rate, burst: burst, now: now, tokens: burst, last: now()}
}

// wait takes one token, sleeping until it is available or ctx ends (then the
// token is given back and ctx's error returned).
func (b *tokenBucket) wait(ctx context.Context) error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	now := b.now()
	b.tokens += now.Sub(b.last).Seconds() * b.rate
	if b.tokens > b.burst {
		b.tokens = b.burst
	}
	b.last = now
	b.tokens--
	var delay time.Duration
	if b.tokens < 0 {
		delay = time.Duration(-b.tokens / b.rate * float64(time.Second))
	}
	b.mu.Unlock()
	if delay <= 0 {
		return nil
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		b.tokens++
		b.mu.Unlock()
		return ctx.Err()
	}
}
