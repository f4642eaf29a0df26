package cdc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/schemas"
)

// errPublish marks a session that ended because JetStream did not store an
// event; the session is restarted from the last durable LSN.
var errPublish = errors.New("publish to JetStream failed")

// ackItem is one published event (fut) and/or the end of a transaction
// (end != 0): once every item before and including it is acknowledged, end is
// durable.
type ackItem struct {
	fut    jetstream.PubAckFuture
	op     schemas.Op
	size   int
	sent   time.Time
	end    schemas.LSN
	commit time.Time
}

// publisher publishes events asynchronously through a bounded window and
// tracks, in publish order, which transaction ends JetStream has stored
// contiguously. One publisher lives for one replication session.
type publisher struct {
	js         jetstream.JetStream
	reconnects uint64 // of js's connection when the publisher started
	m          *metrics
	timeout    time.Duration
	items      chan ackItem

	durable  *atomic.Uint64 // owned by the Reader: survives sessions
	lastTime *atomic.Int64
	queued   atomic.Int64 // items sent to the acker and not yet processed

	mu     sync.Mutex
	err    error // first failure
	failed chan struct{}
	gaps   int // later events stored after an earlier one failed

	done    chan struct{}
	closing sync.Once

	// ordered publishing (fence.go); used by the one publishing goroutine
	slot    string
	fence   fence
	lastID  string // id of the event published last (the next one's expected last id)
	skipped int    // events at or before the fence, not published again
	// prev is the commit LSN of the transaction this session published last
	// (zero before the first): each event carries it as PrevLSN, so sync can
	// tell that an earlier transaction is missing where it reads (a publish
	// lost in a leader election and stored again after later ones) and wait
	// for it. A session's first transaction carries zero: every transaction
	// before it was acknowledged, so stored, before this session began.
	prev schemas.LSN
}

func newPublisher(js jetstream.JetStream, window int, timeout time.Duration, durable *atomic.Uint64, lastTime *atomic.Int64, m *metrics, slot string, f fence) *publisher {
	p := &publisher{js: js, reconnects: js.Conn().Stats().Reconnects, m: m, timeout: timeout, items: make(chan ackItem, window),
		durable: durable, lastTime: lastTime, failed: make(chan struct{}), done: make(chan struct{}),
		slot: slot, fence: f, lastID: f.lastID}
	go p.ackLoop()
	return p
}

// publish sends one event. It blocks while the window is full.
func (p *publisher) publish(ctx context.Context, subject, msgID string, data []byte, op schemas.Op, end schemas.LSN, commit time.Time) error {
	// After a reconnect, an event published before it may have been lost:
	// publishing more would store them behind a gap. The session restarts
	// from the durable position instead.
	if p.js.Conn().Stats().Reconnects != p.reconnects {
		err := fmt.Errorf("%w: NATS reconnected while publishing; restarting from the durable position", errPublish)
		p.fail(err)
		return err
	}
	if p.fence.stored(msgID, p.slot) {
		// the stream holds it already, in order (fence.go)
		p.skipped++
		if end != 0 {
			return p.mark(ctx, end, commit)
		}
		return nil
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{jetstream.MsgIDHeader: []string{msgID}}}
	if p.fence.chain {
		// stored only right after the event published before it (fence.go)
		if p.lastID != "" {
			msg.Header.Set(jetstream.ExpectedLastMsgIDHeader, p.lastID)
		}
		p.lastID = msgID
	}
	// No retries on "no responders": a retried event would be stored after
	// later ones.
	fut, err := p.js.PublishMsgAsync(msg, jetstream.WithRetryAttempts(0))
	if err != nil {
		err = fmt.Errorf("%w: publish %s (%s): %w", errPublish, msgID, subject, err)
		p.fail(err)
		return err
	}
	return p.enqueue(ctx, ackItem{fut: fut, op: op, size: len(data), sent: time.Now(), end: end, commit: commit})
}

// mark records the end of a transaction with no published event.
func (p *publisher) mark(ctx context.Context, end schemas.LSN, commit time.Time) error {
	return p.enqueue(ctx, ackItem{end: end, commit: commit})
}

func (p *publisher) enqueue(ctx context.Context, it ackItem) error {
	p.queued.Add(1)
	if it.fut != nil {
		p.m.inflight.Inc()
	}
	select {
	case p.items <- it:
		return nil
	default:
	}
	select {
	case p.items <- it:
		return nil
	case <-p.failed:
		p.queued.Add(-1)
		return p.failure()
	case <-ctx.Done():
		p.queued.Add(-1)
		return ctx.Err()
	}
}

// idle reports whether nothing is in flight and nothing failed.
func (p *publisher) idle() bool { return p.queued.Load() == 0 && p.failure() == nil }

func (p *publisher) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
		close(p.failed)
	}
}

func (p *publisher) failure() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *publisher) ackLoop() {
	defer close(p.done)
	var timer *time.Timer
	for it := range p.items {
		var err error
		if it.fut != nil {
			select {
			case <-it.fut.Ok():
			case err = <-it.fut.Err():
			default:
				if timer == nil {
					timer = time.NewTimer(p.timeout + time.Second)
				} else {
					timer.Reset(p.timeout + time.Second)
				}
				select {
				case <-it.fut.Ok():
				case err = <-it.fut.Err():
				case <-timer.C:
					err = jetstream.ErrAsyncPublishTimeout
				}
				timer.Stop()
			}
			p.m.inflight.Dec()
		}
		p.mu.Lock()
		failedBefore := p.err != nil
		if err != nil && p.err == nil {
			id := it.fut.Msg().Header.Get(jetstream.MsgIDHeader)
			p.err = fmt.Errorf("%w: event %s on %s: %w", errPublish, id, it.fut.Msg().Subject, err)
			close(p.failed)
		}
		if err == nil && failedBefore && it.fut != nil {
			p.gaps++
		}
		p.mu.Unlock()
		if err == nil && !failedBefore {
			if it.fut != nil {
				p.m.publishLat.Observe(time.Since(it.sent).Seconds())
				p.m.event(it.op).Inc()
				p.m.bytes.Add(float64(it.size))
			}
			if it.end != 0 {
				if uint64(it.end) > p.durable.Load() {
					p.durable.Store(uint64(it.end))
				}
				p.lastTime.Store(it.commit.UnixNano())
				p.m.confirmedLSN.Set(float64(it.end))
			}
		}
		p.queued.Add(-1)
	}
}

// close stops accepting events and waits until every published event is
// acknowledged or failed (bounded by the publish timeout). It returns how
// many events were stored after the first failure, and that failure.
func (p *publisher) close() (int, error) {
	p.closing.Do(func() { close(p.items) })
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gaps, p.err
}
