package consumers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/schemas"
)

type item struct {
	msg   jetstream.Msg
	ev    *schemas.ChangeEvent
	err   error
	reset chan struct{} // a delivery was lost: drop partial state, then close it
}

// consumer opens the durable consumer. A consumer left with unacknowledged
// messages by a previous process (or any existing one, when force is set) is
// recreated from its ack floor: JetStream would otherwise deliver newer
// messages before redelivering those, and transactions must be applied in
// order. Everything below the ack floor is committed in the target.
func (a *Applier) consumer(ctx context.Context, force bool) (jetstream.Consumer, error) {
	want := jetstream.ConsumerConfig{
		Durable:       a.cfg.Durable,
		Description:   "shadowcube sync to target " + a.target,
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       a.cfg.AckWait,
		MaxAckPending: -1, // a source transaction may hold any number of events: never starve its tail
		MaxDeliver:    -1,
		FilterSubject: schemas.PrefixCDC + ".>",
	}
	// sync reads CDC, cdc owns it: created only when missing, never updated
	if _, err := natsx.StreamForReader(ctx, a.js, a.cfg.Stream); err != nil {
		return nil, err
	}
	c, err := a.js.Consumer(ctx, a.cfg.Stream, a.cfg.Durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		want.DeliverPolicy = jetstream.DeliverAllPolicy
		return a.js.CreateConsumer(ctx, a.cfg.Stream, want)
	case err != nil:
		return nil, fmt.Errorf("look up consumer %s on stream %s: %w", a.cfg.Durable, a.cfg.Stream, err)
	}
	info := c.CachedInfo()
	if !force && info.NumAckPending == 0 && info.NumRedelivered == 0 && info.Config.AckWait == want.AckWait && info.Config.MaxAckPending == want.MaxAckPending {
		return c, nil
	}
	start := info.AckFloor.Stream + 1
	a.log.Info("recreating consumer from its ack floor", "consumer", a.cfg.Durable, "start_seq", start, "ack_pending", info.NumAckPending)
	if err := a.js.DeleteConsumer(ctx, a.cfg.Stream, a.cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("delete consumer %s: %w", a.cfg.Durable, err)
	}
	want.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
	want.OptStartSeq = start
	return a.js.CreateConsumer(ctx, a.cfg.Stream, want)
}

// read pulls messages with one bounded fetch at a time (the next fetch runs
// while the applier works on the last one's messages; messages stream in as
// they arrive, so the bound adds no latency) and decodes them; it ends when
// ctx ends. A fetch is used rather than the client's continuous Messages
// iterator, which can stall with messages waiting (see natsx.PullExpiry); a
// fetch always ends with its request.
//
// Deliveries must arrive gap-free: a message lost in flight (e.g. NATS
// restarted) would only be redelivered after AckWait, behind newer ones.
// On a gap in the delivery sequence the applier drops its partial state and
// the consumer is recreated from its ack floor (everything below it is
// committed; duplicates are skipped).
func (a *Applier) read(ctx context.Context, cons jetstream.Consumer, out chan<- item) {
	var lastDSeq uint64
	for ctx.Err() == nil {
		gap, err := a.fetch(ctx, cons, &lastDSeq, out)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			a.log.Warn("pull failed; retrying", "err", err)
			sleepCtx(ctx, time.Second)
			continue
		}
		if !gap {
			continue
		}
		done := make(chan struct{})
		select {
		case out <- item{reset: done}:
		case <-ctx.Done():
			return
		}
		select {
		case <-done:
		case <-ctx.Done():
			return
		}
		for ctx.Err() == nil {
			c, err := a.consumer(ctx, true)
			if err == nil {
				cons, lastDSeq = c, 0
				break
			}
			a.log.Warn("recreate consumer failed; retrying", "err", err)
			sleepCtx(ctx, time.Second)
		}
	}
}

// fetch runs one pull request and hands its messages to out. It reports a
// gap when the delivery sequence skips or the consumer is gone.
func (a *Applier) fetch(ctx context.Context, cons jetstream.Consumer, lastDSeq *uint64, out chan<- item) (gap bool, err error) {
	fctx, cancel := context.WithTimeout(ctx, natsx.PullExpiry)
	defer cancel()
	batch, err := cons.Fetch(a.cfg.MaxBatch, jetstream.FetchContext(fctx))
	if err != nil {
		return false, fmt.Errorf("fetch from consumer %s: %w", a.cfg.Durable, err)
	}
	for msg := range batch.Messages() {
		if md, err := msg.Metadata(); err == nil {
			if *lastDSeq != 0 && md.Sequence.Consumer != *lastDSeq+1 {
				a.log.Warn("delivery gap; re-reading from the ack floor", "after", *lastDSeq, "got", md.Sequence.Consumer)
				return true, nil
			}
			*lastDSeq = md.Sequence.Consumer
		}
		ev, err := schemas.DecodeChangeEvent(msg.Data())
		var evp *schemas.ChangeEvent
		if err == nil {
			evp = &ev
		}
		select {
		case out <- item{msg: msg, ev: evp, err: err}:
		case <-ctx.Done():
			return false, nil
		}
	}
	switch err := batch.Error(); {
	case err == nil, fctx.Err() != nil:
		return false, nil
	case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, nats.ErrNoResponders):
		a.log.Warn("consumer gone; recreating it from its ack floor", "err", err)
		return true, nil
	default:
		return false, fmt.Errorf("fetch from consumer %s: %w", a.cfg.Durable, err)
	}
}
