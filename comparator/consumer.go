package comparator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/stage"
	"github.com/heal7/shadowcube/schemas"
)

// ConsumerConfig configures the compare loop on SHADOW_RESULTS.
type ConsumerConfig struct {
	Durable string        // durable consumer name (default "comparator"); processes sharing it share the work
	Filter  string        // subject filter (default shadow.result.>)
	Batch   int           // messages fetched and stored per transaction (default 256)
	MaxWait time.Duration // after a batch's first message, longest wait for it to fill (default 100ms)
	AckWait time.Duration // redelivery after this long without an ack (default 60s)
}

// withDefaults validates c and fills in defaults; errors name the field.
func (c ConsumerConfig) withDefaults() (ConsumerConfig, error) {
	var errs []error
	if c.Durable == "" {
		c.Durable = "comparator"
	}
	if strings.ContainsAny(c.Durable, ".*> \t") {
		errs = append(errs, fmt.Errorf("compare config: Durable %q: must not contain '.', '*', '>' or whitespace", c.Durable))
	}
	if c.Filter == "" {
		c.Filter = schemas.PrefixShadowResult + ".>"
	}
	if c.Batch == 0 {
		c.Batch = 256
	}
	if c.MaxWait == 0 {
		c.MaxWait = 100 * time.Millisecond
	}
	if c.AckWait == 0 {
		c.AckWait = 60 * time.Second
	}
	if c.Batch < 0 {
		errs = append(errs, fmt.Errorf("compare config: Batch %d: must be positive (0: default 256)", c.Batch))
	}
	if c.MaxWait < 0 {
		errs = append(errs, fmt.Errorf("compare config: MaxWait %s: must be positive (0: default 100ms)", c.MaxWait))
	}
	if c.AckWait < 0 {
		errs = append(errs, fmt.Errorf("compare config: AckWait %s: must be positive (0: default 60s)", c.AckWait))
	}
	return c, errors.Join(errs...)
}

// Deps are what a Consumer uses and does not own.
type Deps struct {
	JetStream  jetstream.JetStream   // required
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: metrics not registered
	Comparator *Comparator           // required: the rules verdicts are made with
	Store      *Store                // required: where verdicts are kept (the caller closes it)
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
	life    stage.Life
}

// NewConsumer validates cfg and registers the metrics; it does no I/O.
// Run ensures the streams and the durable consumer exist, then compares.
func NewConsumer(cfg ConsumerConfig, deps Deps) (*Consumer, error) {
	if deps.JetStream == nil || deps.Comparator == nil || deps.Store == nil {
		return nil, errors.New("compare: JetStream, comparator and store are required")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := NewMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	return &Consumer{cfg: cfg, js: deps.JetStream, cmp: deps.Comparator, store: deps.Store, metrics: m, log: log}, nil
}

// Close stops a running Run and waits for it (the batch being stored is
// finished or handed back). Idempotent. The store is the caller's.
func (c *Consumer) Close() error { return c.life.Close(nil) }

// setup ensures the streams compare reads and its durable consumer.
func (c *Consumer) setup(ctx context.Context) error {
	// compare owns neither stream: created when missing, never updated
	// (shadow sets SHADOW_RESULTS' limits).
	for _, name := range []string{schemas.StreamShadowResults, schemas.StreamDLQ} {
		if _, err := natsx.StreamForReader(ctx, c.js, name); err != nil {
			return err
		}
	}
	cons, err := natsx.EnsureConsumer(ctx, c.js, schemas.StreamShadowResults, jetstream.ConsumerConfig{
		Durable:       c.cfg.Durable,
		FilterSubject: c.cfg.Filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.cfg.AckWait,
		MaxAckPending: 4 * c.cfg.Batch,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return err
	}
	c.cons = cons
	return nil
}

// Run fetches, compares, stores and acknowledges until ctx ends. Two
// stages overlap: while one batch is being stored and acknowledged, the
// next is fetched and compared. Store failures are retried with bounded,
// jittered back-off (the batch is not acknowledged meanwhile, and is
// redelivered). It returns nil when ctx is cancelled or Close is called;
// set-up errors (streams, durable consumer) are returned at once.
func (c *Consumer) Run(ctx context.Context) error {
	ctx, end, err := c.life.Begin(ctx, "compare")
	if err != nil {
		return err
	}
	defer end()
	if err := c.setup(ctx); err != nil {
		return err
	}
	ready := make(chan []compared, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.storeLoop(ctx, ready)
	}()
	pruneCtx, stopPrune := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.pruneLoop(pruneCtx)
	}()
	defer wg.Wait()
	defer stopPrune() // before wg.Wait: the prune loop ends first
	defer close(ready)
	// At most three batches per process are out at once (buffered here,
	// being compared, being stored), below the consumer's MaxAckPending of
	// four: processes sharing the durable all get work.
	iter, err := c.cons.Messages(jetstream.PullMaxMessages(c.cfg.Batch), jetstream.PullExpiry(natsx.PullExpiry))
	if err != nil {
		return fmt.Errorf("compare: consume %s/%s: %w", schemas.StreamShadowResults, c.cfg.Durable, err)
	}
	defer iter.Stop()
	// On stop: no more pulls, and the messages already buffered are handed
	// back at once, so another process takes them without waiting AckWait.
	defer nakBuffered(iter)
	defer context.AfterFunc(ctx, iter.Drain)() // also unblocks Next
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		msgs, err := c.nextBatch(ctx, iter)
		if err != nil {
			nakAll(msgs)
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			c.log.Warn("consume shadow results", "err", err)
			sleep(ctx, backoff)
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		outs, err := c.compareBatch(ctx, msgs)
		if err != nil {
			c.log.Error("dead-letter publish failed; batch will be redelivered", "err", err)
			c.retryLater(ctx, msgs, time.Second)
			continue
		}
		select {
		case ready <- outs:
		case <-ctx.Done():
			nakAll(msgs)
			return nil
		}
	}
	return nil
}

// nextBatch waits for a message, then takes up to Batch messages, waiting
// at most MaxWait for more: a backlog is taken in full batches at once, a
// trickle is stored within MaxWait.
func (c *Consumer) nextBatch(ctx context.Context, iter jetstream.MessagesContext) ([]jetstream.Msg, error) {
	first, err := iter.Next()
	if err != nil {
		return nil, err
	}
	msgs := append(make([]jetstream.Msg, 0, c.cfg.Batch), first)
	linger, cancel := context.WithTimeout(ctx, c.cfg.MaxWait)
	defer cancel()
	for len(msgs) < c.cfg.Batch {
		m, err := iter.Next(jetstream.NextContext(linger))
		if err != nil {
			if ctx.Err() != nil {
				return msgs, ctx.Err()
			}
			break
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// compared is one message and its verdict.
type compared struct {
	msg jetstream.Msg
	out *Outcome
	res *schemas.ShadowResult // kept for the store's example pairs
	run Run                   // from the message's Nats-Msg-Id (RunOf)
}

// PruneEvery is how often the compare loop deletes pairs older than the
// store's retention (the first pass runs at start).
const PruneEvery = 10 * time.Minute

// pruneLoop applies the store's retention until ctx ends.
func (c *Consumer) pruneLoop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := c.store.Prune(ctx, time.Now())
		switch {
		case err != nil && ctx.Err() == nil:
			c.log.Warn("prune pairs past retention", "err", err)
		case n > 0:
			c.log.Info("pruned pairs past retention", "pairs", n, "retention", c.store.Retention())
		}
		t.Reset(PruneEvery)
	}
}

// storeLoop stores and acknowledges compared batches until in is closed.
func (c *Consumer) storeLoop(ctx context.Context, in <-chan []compared) {
	backoff := 100 * time.Millisecond
	for batch := range in {
		if ctx.Err() != nil {
			nakPairs(batch)
			continue
		}
		if err := c.saveBatch(ctx, batch); err != nil {
			if ctx.Err() != nil {
				nakPairs(batch)
				continue
			}
			msgs := make([]jetstream.Msg, len(batch))
			for i, p := range batch {
				msgs[i] = p.msg
			}
			c.log.Error("store verdicts; batch will be redelivered", "err", err, "messages", len(msgs), "retry_in", backoff)
			c.retryLater(ctx, msgs, backoff)
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
	}
}

// retryLater gives a batch back for redelivery after delay, and waits
// about as long (jittered) before going on.
func (c *Consumer) retryLater(ctx context.Context, msgs []jetstream.Msg, delay time.Duration) {
	if ctx.Err() != nil {
		nakAll(msgs)
		return
	}
	for _, m := range msgs {
		_ = m.NakWithDelay(delay)
	}
	sleep(ctx, delay)
}

// nakBuffered naks what a draining iterator still holds.
func nakBuffered(iter jetstream.MessagesContext) {
	iter.Drain()
	for {
		m, err := iter.Next(jetstream.NextMaxWait(time.Second))
		if err != nil {
			return
		}
		_ = m.Nak()
	}
}

func nakAll(msgs []jetstream.Msg) {
	for _, m := range msgs {
		_ = m.Nak()
	}
}

func nakPairs(batch []compared) {
	for _, p := range batch {
		_ = p.msg.Nak()
	}
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

// compareBatch decodes and compares one batch; undecodable messages go to the
// DLQ. The error is a failed DLQ publish.
func (c *Consumer) compareBatch(ctx context.Context, msgs []jetstream.Msg) ([]compared, error) {
	out := make([]compared, 0, len(msgs))
	for _, m := range msgs {
		res, err := schemas.DecodeShadowResult(m.Data())
		if err != nil {
			if err := c.deadLetter(ctx, m, err); err != nil {
				return nil, err
			}
			continue
		}
		// The run is read before Compare, which may normalise res in place.
		run := RunOf(res.RequestID, m.Headers().Get(jetstream.MsgIDHeader))
		out = append(out, compared{msg: m, out: c.cmp.Compare(&res), res: &res, run: run})
	}
	return out, nil
}

// saveBatch saves one compared batch in one transaction, then acknowledges it.
func (c *Consumer) saveBatch(ctx context.Context, batch []compared) error {
	outs := make([]*Outcome, len(batch))
	answers := make([]*schemas.ShadowResult, len(batch))
	runs := make([]Run, len(batch))
	for i, p := range batch {
		outs[i], answers[i], runs[i] = p.out, p.res, p.run
	}
	// A redelivered message is the same replay (skipped on request id and
	// replay time); a live result published again after JetStream's
	// de-duplication window is a second live replay (skipped on the
	// request id): the request keeps one live pair either way.
	if _, err := c.store.SaveRuns(ctx, outs, answers, runs); err != nil {
		return err
	}
	for _, p := range batch {
		if err := p.msg.Ack(); err != nil {
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
	dl := natsx.DeadLetterFromMsg(schemas.StageCompare, schemas.ReasonUndecodable, m, cause)
	if err := natsx.PublishDeadLetter(ctx, c.js, &dl, natsx.DeadLetterMsgID(&dl)); err != nil {
		return err
	}
	c.metrics.deadLetter("decode")
	return m.Term()
}
