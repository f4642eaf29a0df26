package comparator

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/schemas"
)

// FusedConfig configures a Fused sink.
type FusedConfig struct {
	// Batch is how many verdicts are stored per transaction (default 256).
	Batch int
	// MaxWait is, after a batch's first verdict, the longest wait for it
	// to fill (default 20ms).
	MaxWait time.Duration
	// NoPublish leaves SHADOW_RESULTS alone (tests and measurements only:
	// the one-message-per-result contract wants the publish).
	NoPublish bool
}

func (c FusedConfig) withDefaults() FusedConfig {
	if c.Batch <= 0 {
		c.Batch = 256
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 20 * time.Millisecond
	}
	return c
}

// Fused is replay and compare in one process (`shadowcube shadow
// --compare`): the replayer hands it each ShadowResult (it implements
// shadow.Sink), it compares the result on the caller's goroutine, stores
// the verdicts in batches, one transaction each, exactly as the Consumer
// does, and publishes the result to SHADOW_RESULTS asynchronously
// (with the replayer's Nats-Msg-Id: the request id) for audit and
// other readers, so the one-message-per-result contract stays. A result is
// reported stored (done(nil)) once its verdict's transaction committed and
// JetStream answered its publish; a failed publish is logged and counted
// (PublishFailures) but does not fail the result: its pair is stored. A failed store fails every result of the
// batch (the replayer naks them; the store skips what a retry stores twice).
type Fused struct {
	cfg     FusedConfig
	js      jetstream.JetStream
	cmp     *Comparator
	store   *Store
	metrics *Metrics
	log     *slog.Logger

	mu     sync.RWMutex // guards closed against Put
	closed bool
	in     chan fusedItem
	acks   chan []fusedItem
	wg     sync.WaitGroup

	// PublishFailures counts results whose SHADOW_RESULTS publish failed
	// (their verdicts are stored).
	pubFailures sync.Mutex
	failed      int64

	// bufs holds *[]byte for encoding results: a buffer goes back once
	// JetStream acknowledged its publish (the async publisher keeps the
	// message for retries until then; a failed one is left to the GC).
	bufs sync.Pool
}

type fusedItem struct {
	out  *Outcome
	run  Run                    // from the Nats-Msg-Id: live or window replay
	ex   *schemas.ShadowResult  // a copy of the answers, when the store wants this pair as an example
	ack  jetstream.PubAckFuture // nil: not published
	buf  *[]byte                // the published payload's buffer, back to bufs once answered
	err  error                  // publish could not start
	done func(error)
}

// NewFused registers the compare metrics on deps.Registerer and starts the
// sink's store loop (Close stops it). deps.JetStream may be nil only with
// NoPublish; deps.Comparator and deps.Store are required (the store is the
// caller's).
func NewFused(cfg FusedConfig, deps Deps) (*Fused, error) {
	if deps.Comparator == nil || deps.Store == nil {
		return nil, errors.New("fused compare: comparator and store are required")
	}
	if deps.JetStream == nil && !cfg.NoPublish {
		return nil, errors.New("fused compare: JetStream is required to publish results")
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := NewMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	f := &Fused{cfg: cfg, js: deps.JetStream, cmp: deps.Comparator, store: deps.Store, metrics: m, log: log,
		in: make(chan fusedItem, 4*cfg.Batch), acks: make(chan []fusedItem, 4)}
	f.bufs.New = func() any { return new([]byte) }
	f.wg.Add(2)
	go func() {
		defer f.wg.Done()
		defer close(f.acks)
		f.storeLoop()
	}()
	go func() {
		defer f.wg.Done()
		f.ackLoop()
	}()
	return f, nil
}

// Put compares res and queues its verdict for the next batch; done is
// called once the verdict is stored (see Fused). msgID tells the run
// (RunOf): a live replay (msgID = request id) is stored once per request
// however often it is redelivered, a window replay
// (schemas.WindowResultMsgID) adds a pair.
func (f *Fused) Put(res *schemas.ShadowResult, msgID string, done func(error)) {
	it := fusedItem{done: done, run: RunOf(res.RequestID, msgID)}
	if !f.cfg.NoPublish {
		// Encoded before Compare, which may normalise res in place.
		bp := f.bufs.Get().(*[]byte)
		data := schemas.AppendShadowResult((*bp)[:0], res)
		*bp = data
		it.ack, it.err = f.js.PublishAsync(schemas.ShadowResultSubject(res.Service, res.Route), data,
			jetstream.WithMsgID(msgID))
		if it.err == nil {
			it.buf = bp
		}
	}
	it.out = f.cmp.Compare(res)
	if it.out.Signature != "" && f.store.WantsExample(it.out.Signature) {
		// The caller's buffers may be reused once Put returns: the example
		// keeps its own copy (mismatches only, until their signature is full).
		it.ex = exampleCopy(res)
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		done(errors.New("fused compare: closed"))
		return
	}
	f.in <- it
}

// PublishFailures is how many results could not be published to
// SHADOW_RESULTS (their verdicts are stored).
func (f *Fused) PublishFailures() int64 {
	f.pubFailures.Lock()
	defer f.pubFailures.Unlock()
	return f.failed
}

// Close stores what is queued, waits until every done ran, and stops.
// Call it after the replayer that feeds it has closed. Idempotent; the
// store stays open (it is the caller's).
func (f *Fused) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	close(f.in)
	f.mu.Unlock()
	f.wg.Wait()
	return nil
}

// storeLoop batches verdicts: it waits for one, then takes up to Batch,
// waiting at most MaxWait for more, and stores them in one transaction.
func (f *Fused) storeLoop() {
	backoff := 100 * time.Millisecond
	for first := range f.in {
		batch := append(make([]fusedItem, 0, f.cfg.Batch), first)
		t := time.NewTimer(f.cfg.MaxWait)
	fill:
		for len(batch) < f.cfg.Batch {
			select {
			case it, ok := <-f.in:
				if !ok {
					break fill
				}
				batch = append(batch, it)
			case <-t.C:
				break fill
			}
		}
		t.Stop()
		outs := make([]*Outcome, len(batch))
		answers := make([]*schemas.ShadowResult, len(batch))
		runs := make([]Run, len(batch))
		for i := range batch {
			outs[i], answers[i], runs[i] = batch[i].out, batch[i].ex, batch[i].run
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := f.store.SaveRuns(ctx, outs, answers, runs)
		cancel()
		if err != nil {
			f.log.Error("store verdicts; their requests will be replayed again", "err", err, "pairs", len(batch), "retry_in", backoff)
			for _, it := range batch {
				it.done(err)
			}
			time.Sleep(backoff)
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		seenAI := map[RouteID]bool{}
		for _, o := range outs {
			f.metrics.Observe(o)
			if o.Verdict == VerdictMismatch && !o.Accepted {
				f.log.Debug("mismatch", "route", o.Route, "request_id", o.RequestID, "signature", o.Signature)
			}
			if o.AI != nil {
				seenAI[RouteID{o.Service, o.Route}] = true
			}
		}
		for id := range seenAI {
			f.metrics.ObserveAI(id.Service, id.Route, f.cmp.AIReport(id.Service, id.Route))
		}
		f.acks <- batch
	}
}

// release hands back a payload buffer JetStream acknowledged.
func (f *Fused) release(bp *[]byte) {
	if bp != nil && cap(*bp) <= 1<<20 { // do not keep the rare huge one
		f.bufs.Put(bp)
	}
}

// ackLoop waits for each stored batch's publishes, then reports the
// results stored.
func (f *Fused) ackLoop() {
	for batch := range f.acks {
		timeout := time.NewTimer(30 * time.Second) // for the whole batch
		expired := false
		for _, it := range batch {
			err := it.err
			if it.ack != nil && err == nil && !expired {
				select {
				case <-it.ack.Ok():
					f.release(it.buf)
				case err = <-it.ack.Err(): // a timed-out publish may still be retrying: its buffer stays with it
				case <-timeout.C:
					expired = true // the publisher may still retry: its buffer stays with it
				}
			}
			if expired && err == nil && it.ack != nil {
				select {
				case <-it.ack.Ok():
				case err = <-it.ack.Err():
				default:
					err = errors.New("no publish acknowledgement within 30s")
				}
			}
			if err != nil {
				f.pubFailures.Lock()
				f.failed++
				f.pubFailures.Unlock()
				f.log.Warn("publish shadow result for other readers failed (its verdict is stored)", "request_id", it.out.RequestID, "err", err)
			}
			it.done(nil)
		}
		timeout.Stop()
	}
}
