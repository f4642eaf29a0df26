package publisher

import (
	"context"
	mrand "math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heal7/shadowcube/internal/redact"
)

// Back-off of ConnectLoop between failed attempts.
const (
	connectFirstWait = 250 * time.Millisecond
	connectMaxWait   = 10 * time.Second
)

// ConnectLoop calls connect until it returns a connection, then attaches it
// (Attach) and returns nil; it returns ctx's error when ctx ends first. A
// tap started while NATS is down serves users at once and runs this in a
// goroutine it owns: captures are dropped (counted) or spilled until the
// loop attaches. connect should also prepare what publishing needs (the
// stream) so that an attached capturer can publish. Between attempts the
// loop waits with jittered back-off (250 ms doubling to 10 s) and logs each
// failure, with any URL password masked.
func (c *Capturer) ConnectLoop(ctx context.Context, connect func(context.Context) (*nats.Conn, error)) error {
	wait := connectFirstWait
	for attempt := 1; ; attempt++ {
		nc, err := connect(ctx)
		if err == nil {
			if err := c.Attach(nc); err != nil {
				nc.Close()
				return err
			}
			if attempt > 1 {
				c.log.Info("capture up: connected to NATS", "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.m.connectFailures.Inc()
		c.log.Warn("capture down: NATS unavailable; requests are proxied, captures dropped or spilled",
			"attempt", attempt, "retry_in", wait, "err", redact.Secrets(err))
		t := time.NewTimer(wait/2 + mrand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, connectMaxWait)
	}
}
