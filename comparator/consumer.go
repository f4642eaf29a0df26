package comparator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/schemas"
)

// ConsumerConfig configures the compare loop on SHADOW_RESULTS.
type ConsumerConfig struct {
	Durable string        // durable consumer name (default "comparator"); processes sharing it share the work
	Filter  string        // subject filter (default shadow.result.>)
	Batch   int           // messages fetched and stored per transaction (default 256)
	MaxWait time.Duration // longest wait for a batch to fill (default 500ms)
	AckWait time.Duration // redelivery after this long without an ack (default 60s)
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.Durable == "" {
		c.Durable = "comparator"
	}
	if c.Filter == "" {
		c.Filter = schemas.PrefixShadowResult + ".>"
	}
	if c.Batch <= 0 {
		c.Batch = 256
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 500 * time.Millisecond
	}
	if c.AckWait <= 0 {
		c.AckWait = 60 * time.Second
	}
	return c
}

// Consumer reads ShadowResults, compares them and stores the verdicts; it
// acknowledges a message only after the transaction holding its verdict
// committed, so a crash re-delivers and never loses (the store skips
// duplicates). Undecodable messages go to dlq.compare.
type Consumer struct {
	cfg     ConsumerConfig
	js      jetstream.JetStream
	cmp     *Comparator
	store   *Store
	metrics *Metrics
	log     *slog.Logger
	cons    jetstream.Consumer
}

// NewConsumer ensures the SHADOW_RESULTS and DLQ streams and the durable
// consumer exist, and returns the loop (not started).
func NewConsumer(ctx context.Context, cfg ConsumerConfig, js jetstream.JetStream, cmp *Comparator, store *Store, m *Metrics, log *slog.Logger) (*Consumer, error) {
	if js == nil || cmp == nil || store == nil {
		return nil, errors.New("comparator consumer: JetStream, comparator and store are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	for _, name := range []string{schemas.StreamShadowResults, schemas.StreamDLQ} {
		sc, err := natsx.StreamConfig(name, natsx.StreamSettings{})
		if err != nil {
			return nil, err
		}
		if _, err := natsx.EnsureStream(ctx, js, sc); err != nil {
			return nil, err
		}
	}
	cons, err := natsx.EnsureConsumer(ctx, js, schemas.StreamShadowResults, jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		FilterSubject: cfg.Filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxAckPending: 4 * cfg.Batch,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, err
	}
	return &Consumer{cfg: cfg, js: js, cmp: cmp, store: store, metrics: m, log: log.With("stage", "compare"), cons: cons}, nil
}

// Run fetches, compares, stores and acknowledges until ctx ends. Store
// failures are retried with bounded, jittered back-off (the batch is not
// acknowledged meanwhile). It returns nil when ctx is cancelled.
func (c *Consumer) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		batch, err := c.cons.Fetch(c.cfg.Batch, jetstream.FetchMaxWait(c.cfg.MaxWait))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.log.Warn("fetch shadow results", "err", err)
			sleep(ctx, backoff)
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		var msgs []jetstream.Msg
		for msg := range batch.Messages() {
			msgs = append(msgs, msg)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			c.log.Debug("fetch ended", "err", err)
		}
		if len(msgs) == 0 {
			continue
		}
		if err := c.process(ctx, msgs); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.log.Error("store verdicts; batch will be redelivered", "err", err, "messages", len(msgs))
			for _, m := range msgs {
				_ = m.NakWithDelay(backoff)
			}
			sleep(ctx, backoff)
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	d += time.Duration(rand.Int64N(int64(d)/2 + 1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// process compares and stores one batch, then acknowledges it.
func (c *Consumer) process(ctx context.Context, msgs []jetstream.Msg) error {
	outs := make([]*Outcome, 0, len(msgs))
	good := make([]jetstream.Msg, 0, len(msgs))
	for _, m := range msgs {
		res, err := schemas.DecodeShadowResult(m.Data())
		if err != nil {
			if err := c.deadLetter(ctx, m, err); err != nil {
				return err
			}
			continue
		}
		outs = append(outs, c.cmp.Compare(&res))
		good = append(good, m)
	}
	if _, err := c.store.Save(ctx, outs); err != nil {
		return err
	}
	for _, m := range good {
		if err := m.Ack(); err != nil {
			c.log.Warn("ack shadow result (it will be redelivered and skipped as a duplicate)", "err", err)
		}
	}
	seenAI := map[RouteID]bool{}
	for _, o := range outs {
		c.metrics.Observe(o)
		if o.Verdict == VerdictMismatch && !o.Accepted {
			c.log.Debug("mismatch", "route", o.Route, "request_id", o.RequestID, "signature", o.Signature)
		}
		if o.AI != nil {
			seenAI[RouteID{o.Service, o.Route}] = true
		}
	}
	for id := range seenAI {
		c.metrics.ObserveAI(id.Service, id.Route, c.cmp.AIReport(id.Service, id.Route))
	}
	return nil
}

// deadLetter moves an undecodable message to dlq.compare and terminates it.
func (c *Consumer) deadLetter(ctx context.Context, m jetstream.Msg, cause error) error {
	c.log.Error("undecodable shadow result sent to the DLQ", "subject", m.Subject(), "err", cause)
	dm := nats.NewMsg(schemas.DLQSubject("compare"))
	dm.Data = m.Data()
	dm.Header.Set("Shadowcube-Error", cause.Error())
	dm.Header.Set("Shadowcube-Subject", m.Subject())
	if meta, err := m.Metadata(); err == nil {
		dm.Header.Set(nats.MsgIdHdr, fmt.Sprintf("compare-%s-%d", meta.Stream, meta.Sequence.Stream))
	}
	if _, err := c.js.PublishMsg(ctx, dm); err != nil {
		return fmt.Errorf("publish to DLQ: %w", err)
	}
	c.metrics.deadLetter("decode")
	return m.Term()
}
