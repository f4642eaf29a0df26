package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/jsonenc"
	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/schemas"
)

// ApplierConfig configures the applier of one target. Mapping and Target must
// have passed Mapping.Validate.
type ApplierConfig struct {
	Mapping *Mapping
	Target  *Target
	DB      DB // the target database (a pgxpool.Pool in production)
	// Source is the source database, to re-read rows whose unchanged TOAST
	// values the target cannot supply (nil: connect when needed through
	// Mapping.Source.DatabaseURLEnv).
	Source DB
	FKMode string // FKReplica, FKOrdered or FKNone/"" (see DecideFK)

	Stream    string        // CDC stream (schemas.StreamCDC)
	Durable   string        // durable consumer name (default "sync-<target>")
	MaxBatch  int           // most source events per target transaction (default 5000)
	AckWait   time.Duration // JetStream ack wait (default 5m; redeliveries are de-duplicated anyway)
	RetryMin  time.Duration // first back-off of a transient failure (default 100ms)
	RetryMax  time.Duration // back-off bound (default 5s)
	Watermark time.Duration // how often the watermark KV entry is refreshed (default 200ms)
	PollStop  time.Duration // how often a stopped target looks for a replayed poison transaction (default 1s)
}

func (c *ApplierConfig) defaults() error {
	if c.Mapping == nil || c.Target == nil || c.DB == nil {
		return errors.New("applier config: Mapping, Target and DB are required")
	}
	for _, tm := range c.Target.Tables {
		if tm.srcCols == nil {
			return fmt.Errorf("applier config: target %s table %s: mapping not validated", c.Target.Name, tm.Source)
		}
	}
	if err := c.validate(); err != nil {
		return err
	}
	if c.Stream == "" {
		c.Stream = schemas.StreamCDC
	}
	if c.Durable == "" {
		c.Durable = "sync-" + c.Target.Name
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 5000
	}
	if c.AckWait <= 0 {
		c.AckWait = 5 * time.Minute
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Second
	}
	if c.Watermark <= 0 {
		c.Watermark = 200 * time.Millisecond
	}
	if c.PollStop <= 0 {
		c.PollStop = time.Second
	}
	return nil
}

// validate checks the numeric settings: zero means the default, a negative
// value is an error naming the field.
func (c *ApplierConfig) validate() error {
	var errs []error
	if c.MaxBatch < 0 {
		errs = append(errs, fmt.Errorf("applier config: MaxBatch %d: must be at least 1 (0: default 5000)", c.MaxBatch))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"AckWait", c.AckWait}, {"RetryMin", c.RetryMin}, {"RetryMax", c.RetryMax}, {"Watermark", c.Watermark}, {"PollStop", c.PollStop}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("applier config: %s %s: must be positive (0: default)", d.name, d.v))
		}
	}
	if c.RetryMin > 0 && c.RetryMax > 0 && c.RetryMin > c.RetryMax {
		errs = append(errs, fmt.Errorf("applier config: RetryMin %s is above RetryMax %s", c.RetryMin, c.RetryMax))
	}
	return errors.Join(errs...)
}

// Applier applies the CDC stream to one target database. See the package
// documentation for its guarantees.
type Applier struct {
	cfg     ApplierConfig
	js      jetstream.JetStream
	log     *slog.Logger
	met     *Metrics
	target  string
	slot    string
	wmMu    sync.Mutex
	wm      schemas.Watermark
	wmDirty bool
}

// NewApplier checks cfg and returns an applier; Run starts it.
func NewApplier(cfg ApplierConfig, js jetstream.JetStream, log *slog.Logger, met *Metrics) (*Applier, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if js == nil {
		return nil, errors.New("applier: JetStream handle required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if met == nil {
		met = NewMetrics(nil)
	}
	return &Applier{cfg: cfg, js: js, log: log.With("target", cfg.Target.Name), met: met,
		target: cfg.Target.Name, slot: cfg.Mapping.Source.Slot}, nil
}

// pos is a position in the source: commit LSN plus index (snapshot rows) or
// wholeTx for a whole stream transaction.
type pos struct {
	LSN schemas.LSN
	Idx int64
}

const wholeTx = math.MaxInt32

func (p pos) less(q pos) bool { return p.LSN < q.LSN || p.LSN == q.LSN && p.Idx < q.Idx }

func (p pos) String() string {
	if p.Idx == wholeTx {
		return p.LSN.String()
	}
	return fmt.Sprintf("%s#%d", p.LSN, p.Idx)
}

// txn is one unit applied atomically: a whole source transaction, or one
// snapshot row.
type txn struct {
	pos        pos
	commitTime time.Time
	events     []*schemas.ChangeEvent
	ackMsg     jetstream.Msg // newest message consumed when this unit completed
	broken     string        // why this unit cannot be applied (decode error, incomplete tx)
	raw        [][]byte      // undecodable message bodies
}

type item struct {
	msg   jetstream.Msg
	ev    *schemas.ChangeEvent
	err   error
	reset chan struct{} // a delivery was lost: drop partial state, then close it
}

const checkpointDDL = `
CREATE SCHEMA IF NOT EXISTS shadowcube;
CREATE TABLE IF NOT EXISTS shadowcube.applied (
  target      text NOT NULL,
  slot        text NOT NULL,
  lsn         pg_lsn NOT NULL DEFAULT '0/0',
  idx         bigint NOT NULL DEFAULT 0,
  commit_time timestamptz,
  applied_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (target, slot)
)`

// EnsureCheckpoint creates shadowcube.applied and the target's row.
func EnsureCheckpoint(ctx context.Context, db DB, target, slot string) error {
	for attempt := 1; ; attempt++ {
		_, err := db.Exec(ctx, checkpointDDL)
		if err == nil {
			break
		}
		// concurrent CREATE ... IF NOT EXISTS (two targets in one database)
		// may race on the catalog: the loser retries and finds it created
		var pe *pgconn.PgError
		if attempt == 3 || !errors.As(err, &pe) || (pe.Code != "23505" && pe.Code != "42P07") {
			return fmt.Errorf("create shadowcube.applied: %w", err)
		}
	}
	if _, err := db.Exec(ctx, `INSERT INTO shadowcube.applied (target, slot) VALUES ($1, $2) ON CONFLICT DO NOTHING`, target, slot); err != nil {
		return fmt.Errorf("create checkpoint row of %s/%s: %w", target, slot, err)
	}
	return nil
}

// Checkpoint is the position stored in a target's shadowcube.applied row.
type Checkpoint struct {
	LSN        schemas.LSN
	Index      int64 // snapshot row index, or MaxInt32 after a whole stream transaction
	CommitTime time.Time
}

// ReadCheckpoint returns the target's checkpoint for slot (zero when none).
func ReadCheckpoint(ctx context.Context, db DB, target, slot string) (Checkpoint, error) {
	var lsn string
	var cp Checkpoint
	var ct *time.Time
	err := db.QueryRow(ctx, `SELECT lsn::text, idx, commit_time FROM shadowcube.applied WHERE target = $1 AND slot = $2`, target, slot).Scan(&lsn, &cp.Index, &ct)
	if errors.Is(err, pgx.ErrNoRows) {
		return Checkpoint{}, nil
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("read checkpoint of %s/%s: %w", target, slot, err)
	}
	if cp.LSN, err = schemas.ParseLSN(lsn); err != nil {
		return Checkpoint{}, err
	}
	if ct != nil {
		cp.CommitTime = *ct
	}
	return cp, nil
}

// Run consumes and applies until ctx ends. It returns nil on cancellation,
// or an error it cannot recover from (bad stream, consumer deleted...).
func (a *Applier) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var cp Checkpoint
	if err := a.retry(ctx, "prepare checkpoint", func() error {
		if err := EnsureCheckpoint(ctx, a.cfg.DB, a.target, a.slot); err != nil {
			return err
		}
		var err error
		cp, err = ReadCheckpoint(ctx, a.cfg.DB, a.target, a.slot)
		return err
	}); err != nil {
		return nilOnCancel(ctx, err)
	}
	a.log.Info("starting", "lsn", pos{cp.LSN, cp.Index}.String(), "stream", a.cfg.Stream, "consumer", a.cfg.Durable)
	var cons jetstream.Consumer
	if err := a.retry(ctx, "open consumer", func() error {
		var err error
		// Always restart from the ack floor: a previous process's pull
		// request may still receive deliveries after it stopped, which would
		// otherwise sit unacknowledged for AckWait, behind newer messages.
		cons, err = a.consumer(ctx, true)
		return err
	}); err != nil {
		return nilOnCancel(ctx, err)
	}
	kv := a.openKV(ctx)

	items := make(chan item, 2*a.cfg.MaxBatch)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(2)
	go func() {
		defer wg.Done()
		a.read(ctx, cons, items)
	}()
	go func() {
		defer wg.Done()
		a.watermarkLoop(ctx, kv)
	}()
	if !cp.CommitTime.IsZero() {
		a.setWatermark(pos{cp.LSN, cp.Index}, cp.CommitTime)
	}
	err := a.loop(ctx, pos{cp.LSN, cp.Index}, items)
	return nilOnCancel(ctx, err)
}

func nilOnCancel(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
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

func (a *Applier) openKV(ctx context.Context) jetstream.KeyValue {
	kv, err := natsx.KVForReader(ctx, a.js, natsx.SharedKVConfig())
	if err != nil {
		a.log.Warn("watermark KV bucket unavailable; will retry", "bucket", schemas.KVBucket, "err", err)
		return nil
	}
	return kv
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

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// assembler turns the ordered message flow into whole units.
type assembler struct {
	slot string
	last pos  // newest unit completed (or the checkpoint)
	cur  *txn // stream transaction being assembled
	have map[int]bool
	size int
	log  *slog.Logger
	dup  func() // called for each duplicate event dropped
}

// add consumes one item and returns the units it completes.
func (as *assembler) add(it item) []*txn {
	if it.err != nil {
		var done []*txn
		if as.cur != nil {
			done = append(done, as.breakCur())
		}
		return append(done, &txn{pos: as.last, ackMsg: it.msg, broken: "undecodable event: " + it.err.Error(), raw: [][]byte{it.msg.Data()}})
	}
	ev := it.ev
	if ev.Slot != as.slot {
		return nil
	}
	if ev.Op == schemas.OpSnapshot {
		p := pos{ev.CommitLSN, int64(ev.Index)}
		if !as.last.less(p) {
			as.dup()
			return nil
		}
		var done []*txn
		if as.cur != nil {
			done = append(done, as.breakCur())
		}
		as.last = p
		return append(done, &txn{pos: p, commitTime: ev.CommitTime, events: []*schemas.ChangeEvent{ev}, ackMsg: it.msg})
	}
	p := pos{ev.CommitLSN, wholeTx}
	if !as.last.less(p) {
		as.dup() // already applied or assembled
		return nil
	}
	var done []*txn
	if as.cur != nil && as.cur.pos != p {
		done = append(done, as.breakCur())
	}
	if as.cur == nil {
		as.cur = &txn{pos: p, commitTime: ev.CommitTime}
		as.have = map[int]bool{}
		as.size = ev.TxSize
	}
	if ev.Index < 0 || ev.Index >= as.size || ev.TxSize != as.size {
		as.log.Error("event outside its transaction; ignored", "lsn", p.LSN.String(), "index", ev.Index, "tx_size", ev.TxSize)
		return done
	}
	if !as.have[ev.Index] {
		as.have[ev.Index] = true
		as.cur.events = append(as.cur.events, ev)
	}
	as.cur.ackMsg = it.msg
	if len(as.have) == as.size {
		t := as.cur
		sort.Slice(t.events, func(i, j int) bool { return t.events[i].Index < t.events[j].Index })
		as.cur, as.have = nil, nil
		as.last = p
		done = append(done, t)
	}
	return done
}

func (as *assembler) breakCur() *txn {
	t := as.cur
	t.broken = fmt.Sprintf("incomplete source transaction: %d of %d events before the next one", len(as.have), as.size)
	as.cur, as.have = nil, nil
	as.last = t.pos
	return t
}

func (a *Applier) loop(ctx context.Context, start pos, items <-chan item) error {
	dups := a.met.skippedTxs.WithLabelValues(a.target)
	as := &assembler{slot: a.slot, last: start, log: a.log, dup: dups.Inc}
	applied := start
	var ready []*txn
	var reset chan struct{}
	events := 0
	take := func(it item) {
		if it.reset != nil {
			reset = it.reset
			return
		}
		for _, t := range as.add(it) {
			ready = append(ready, t)
			events += len(t.events)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case it := <-items:
			take(it)
		}
	drain:
		for events < a.cfg.MaxBatch && reset == nil {
			select {
			case it := <-items:
				take(it)
			default:
				break drain
			}
		}
		if len(ready) > 0 {
			if err := a.applyUnits(ctx, ready); err != nil {
				return err
			}
			applied = ready[len(ready)-1].pos
			ready, events = ready[:0], 0
		}
		if reset != nil {
			// complete units before the gap are applied; forget the partial one
			as.cur, as.have, as.last = nil, nil, applied
			close(reset)
			reset = nil
		}
	}
}

// applyUnits applies ready units in order, splitting off broken ones.
func (a *Applier) applyUnits(ctx context.Context, units []*txn) error {
	for len(units) > 0 {
		i := slices.IndexFunc(units, func(t *txn) bool { return t.broken != "" })
		if i == 0 {
			if err := a.poison(ctx, units[0], errors.New(units[0].broken)); err != nil {
				return err
			}
			units = units[1:]
			continue
		}
		if i < 0 {
			i = len(units)
		}
		if err := a.applyBatch(ctx, units[:i]); err != nil {
			return err
		}
		units = units[i:]
	}
	return nil
}

// applyBatch applies whole units in one target transaction, retrying
// transient failures; a permanent failure is narrowed down to its unit.
func (a *Applier) applyBatch(ctx context.Context, batch []*txn) error {
	backoff := a.cfg.RetryMin
	for {
		start := time.Now()
		n, err := a.applyOnce(ctx, batch, modeNormal)
		if err == nil {
			last := batch[len(batch)-1]
			a.met.batchTime.WithLabelValues(a.target).Observe(time.Since(start).Seconds())
			a.met.batchSize.WithLabelValues(a.target).Observe(float64(countEvents(batch)))
			a.met.applied.WithLabelValues(a.target).Add(float64(n))
			a.met.txs.WithLabelValues(a.target).Add(float64(len(batch)))
			if last.ackMsg != nil {
				if err := last.ackMsg.Ack(); err != nil {
					a.log.Warn("ack failed; the messages will be redelivered and skipped", "lsn", last.pos.String(), "err", err)
				}
			}
			a.setWatermark(last.pos, last.commitTime)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !Transient(err) {
			if len(batch) > 1 {
				a.log.Warn("batch failed; applying its transactions one by one", "units", len(batch), "err", err)
				for _, t := range batch {
					if err := a.applyBatch(ctx, []*txn{t}); err != nil {
						return err
					}
				}
				return nil
			}
			return a.poison(ctx, batch[0], err)
		}
		a.met.retries.WithLabelValues(a.target).Inc()
		d := backoff/2 + rand.N(backoff/2+1)
		a.log.Warn("transient failure; retrying", "lsn", batch[0].pos.String(), "in", d.Round(time.Millisecond), "err", err)
		sleepCtx(ctx, d)
		backoff = min(2*backoff, a.cfg.RetryMax)
	}
}

func countEvents(b []*txn) int {
	n := 0
	for _, t := range b {
		n += len(t.events)
	}
	return n
}

// retry runs f until it succeeds, ctx ends, or it fails permanently.
func (a *Applier) retry(ctx context.Context, what string, f func() error) error {
	backoff := a.cfg.RetryMin
	for {
		err := f()
		if err == nil || ctx.Err() != nil {
			return err
		}
		var me *MappingError
		if errors.As(err, &me) || !Transient(err) {
			return fmt.Errorf("%s: %w", what, err)
		}
		a.met.retries.WithLabelValues(a.target).Inc()
		d := backoff/2 + rand.N(backoff/2+1)
		a.log.Warn(what+" failed; retrying", "in", d.Round(time.Millisecond), "err", err)
		sleepCtx(ctx, d)
		backoff = min(2*backoff, a.cfg.RetryMax)
	}
}

// Transient reports whether err is worth retrying as is: lost connections,
// server shutdown, serialization failures, deadlocks, lock timeouts, resource
// exhaustion. Other database errors (constraint violations, bad data, bad SQL)
// are permanent: retrying the same transaction cannot succeed.
func Transient(err error) bool {
	var perm *permanentError
	if err == nil || errors.Is(err, context.Canceled) || errors.As(err, &perm) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "40"), strings.HasPrefix(pe.Code, "53"),
			strings.HasPrefix(pe.Code, "57P"), pe.Code == "55P03", strings.HasPrefix(pe.Code, "58"), pe.Code == "55006":
			return true
		}
		return false
	}
	return true // network, timeouts, closed connections
}

type applyMode int

const (
	modeNormal   applyMode = iota
	modeSkipData           // only move the checkpoint past the batch (skip policy)
	modeForce              // apply even at or below the checkpoint, never move it back (DLQ replay)
)

// applyOnce runs one target transaction holding batch and returns the
// number of changes applied.
func (a *Applier) applyOnce(ctx context.Context, batch []*txn, mode applyMode) (int, error) {
	tx, err := a.cfg.DB.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.Background())
	switch a.cfg.FKMode {
	case FKReplica:
		if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
			return 0, fmt.Errorf("set session_replication_role: %w", err)
		}
	case FKOrdered:
		if _, err := tx.Exec(ctx, "SET CONSTRAINTS ALL DEFERRED"); err != nil {
			return 0, fmt.Errorf("defer constraints: %w", err)
		}
	}
	var lsnText string
	var idx int64
	err = tx.QueryRow(ctx, `SELECT pg_logical_emit_message(true, 'shadowcube.origin', $3)::text, lsn::text, idx
FROM shadowcube.applied WHERE target = $1 AND slot = $2 FOR UPDATE`, a.target, a.slot, a.slot).Scan(new(string), &lsnText, &idx)
	if err != nil {
		return 0, fmt.Errorf("read checkpoint: %w", err)
	}
	cpLSN, err := schemas.ParseLSN(lsnText)
	if err != nil {
		return 0, err
	}
	cp := pos{cpLSN, idx}
	var todo []*txn
	for _, t := range batch {
		if cp.less(t.pos) || mode == modeForce {
			todo = append(todo, t)
		} else {
			a.met.skippedTxs.WithLabelValues(a.target).Add(float64(max(1, len(t.events))))
		}
	}
	if len(todo) == 0 {
		return 0, tx.Commit(ctx)
	}
	n := 0
	b := &pgx.Batch{}
	send := func() error {
		if b.Len() == 0 {
			return nil
		}
		err := tx.SendBatch(ctx, b).Close()
		b = &pgx.Batch{}
		return err
	}
	if mode != modeSkipData {
		stmts, count, err := a.statements(todo)
		if err != nil {
			return 0, err
		}
		n = count
		for _, s := range stmts {
			if s.fill == nil {
				b.Queue(s.sql, s.args...)
				continue
			}
			if err := send(); err != nil {
				return 0, err
			}
			if err := a.complete(ctx, tx, s, b); err != nil {
				return 0, err
			}
		}
	}
	last := todo[len(todo)-1]
	var ct any
	if !last.commitTime.IsZero() {
		ct = last.commitTime
	}
	if cp.less(last.pos) {
		b.Queue(`UPDATE shadowcube.applied SET lsn = $3::pg_lsn, idx = $4, commit_time = coalesce($5, commit_time), applied_at = now()
WHERE target = $1 AND slot = $2`, a.target, a.slot, last.pos.LSN.String(), last.pos.Idx, ct)
	}
	if err := send(); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	return n, nil
}

type stmt struct {
	sql  string
	args []any
	// fill, when set, makes the statement run on its own: it returns the
	// ordinals (into fill.evs) of source rows the target cannot complete
	// (an empty sql: all of them); those are re-read from the source and
	// upserted whole before the next statement runs.
	fill *fill
}

// fill is a set of update events whose new version lacks unchanged TOAST
// values the target needs.
type fill struct {
	tm  *TableMap
	evs []*schemas.ChangeEvent
}

type groupKind int

const (
	gUpsert groupKind = iota
	gRemove
	gInPlace // updates of existing rows that leave unchanged TOAST values alone
)

// group is a run of same-kind changes to one table, applied by one statement.
type group struct {
	tm       *TableMap
	kind     groupKind
	excluded map[string]bool
	sig      string
	rows     [][]byte
	evs      []*schemas.ChangeEvent // gInPlace: the event of each row
	keys     map[string]int
}

// jsonArray joins JSON objects into one JSON array (a statement parameter).
func jsonArray(rows [][]byte) string {
	size := 2
	for _, r := range rows {
		size += len(r) + 1
	}
	buf := make([]byte, 0, size)
	buf = append(buf, '[')
	for i, r := range rows {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, r...)
	}
	return string(append(buf, ']'))
}

// statements turns units into SQL, keeping order: consecutive changes of the
// same kind to the same table share one statement; a row changed twice in
// such a run keeps only its newest version.
//
// Updates whose new version carries every mapped value are upserts. An
// update with unchanged TOAST values (not sent by the source) never goes
// through an insert: it updates the target row in place, setting only what
// the event carries (a key change moves the row to its new key in place).
// Where the target cannot supply the missing values (it lacks the row, the
// row enters the where filter, the filter or a mapped expression reads an
// unchanged value together with sent ones) the row is re-read from the
// source by key (see Applier.reselect).
func (a *Applier) statements(units []*txn) ([]stmt, int, error) {
	var out []stmt
	var g *group
	count := 0
	flush := func() {
		if g == nil || len(g.rows) == 0 {
			g = nil
			return
		}
		param := jsonArray(g.rows)
		switch g.kind {
		case gUpsert:
			out = append(out, stmt{sql: g.tm.upsertSQL(g.excluded), args: []any{param}})
			if s := g.tm.filteredOutSQL(); s != "" {
				out = append(out, stmt{sql: s, args: []any{param}})
			}
		case gInPlace:
			out = append(out, stmt{sql: g.tm.updateInPlaceSQL(g.excluded), args: []any{param}, fill: &fill{tm: g.tm, evs: g.evs}})
			if s := g.tm.filteredOutSQL(); s != "" {
				out = append(out, stmt{sql: s, args: []any{param}})
			}
		default:
			if s := g.tm.deleteSQL(); s != "" {
				out = append(out, stmt{sql: s, args: []any{param}})
			}
		}
		g = nil
	}
	add := func(tm *TableMap, kind groupKind, excluded map[string]bool, ev *schemas.ChangeEvent, row schemas.Row, key string) {
		sig := ""
		if kind != gRemove {
			sig = excludedSig(excluded)
		}
		if g == nil || g.tm != tm || g.kind != kind || g.sig != sig || (key == "" && len(g.rows) > 0) {
			flush()
			g = &group{tm: tm, kind: kind, excluded: excluded, sig: sig, keys: map[string]int{}}
		}
		var js []byte
		if kind == gInPlace {
			js = rowJSONOrd(tm, row, ev.CommitTime, len(g.rows))
		} else {
			js = rowJSON(tm, row, ev.CommitTime)
		}
		if key != "" {
			if i, ok := g.keys[key]; ok {
				if tm.Where == "" {
					// the newer version replaces the older: same end state
					// (in place: both carry the same columns, same signature)
					if kind == gInPlace {
						g.rows[i], g.evs[i] = rowJSONOrd(tm, row, ev.CommitTime, i), ev
					} else {
						g.rows[i] = js
					}
					return
				}
				// with a filter the older version may matter (it may have been
				// in the subset, then left it): keep both, in order
				flush()
				g = &group{tm: tm, kind: kind, excluded: excluded, sig: sig, keys: map[string]int{}}
				if kind == gInPlace {
					js = rowJSONOrd(tm, row, ev.CommitTime, 0)
				}
			}
			g.keys[key] = len(g.rows)
		}
		g.rows = append(g.rows, js)
		if kind == gInPlace {
			g.evs = append(g.evs, ev)
		}
	}
	// single appends a statement of its own (after the current group).
	single := func(st stmt) {
		flush()
		out = append(out, st)
	}
	for _, t := range units {
		truncated := map[string]bool{} // target tables truncated in this unit
		for _, ev := range t.events {
			switch ev.Op {
			case schemas.OpInsert, schemas.OpUpdate, schemas.OpSnapshot:
				tm := a.cfg.Target.table(ev.Schema, ev.Table)
				if tm == nil {
					continue
				}
				count++
				rekey := ev.Op == schemas.OpUpdate && ev.Old != nil && keyChanged(tm, ev)
				excluded := excludedFor(tm, ev.Unchanged)
				whereReads := len(ev.Unchanged) > 0 && slices.ContainsFunc(tm.whereDeps, func(c string) bool { return slices.Contains(ev.Unchanged, c) })
				if ev.Op != schemas.OpUpdate || len(excluded) == 0 && !whereReads {
					// the event carries every value the mapping reads
					if rekey {
						// the old key row goes whatever the delete policy: the row was re-keyed, not deleted
						add(hardDeleteView(tm), gRemove, nil, ev, ev.Old, rowKey(tm, ev, ev.Old))
					}
					add(tm, gUpsert, nil, ev, ev.New, rowKey(tm, ev, ev.New))
					continue
				}
				if whereReads || mixedRead(tm, ev, excluded, rekey) || rekey && tm.alwaysKey {
					// the target cannot compute the row: complete it from the source
					if rekey {
						add(hardDeleteView(tm), gRemove, nil, ev, ev.Old, rowKey(tm, ev, ev.Old))
					}
					single(stmt{fill: &fill{tm: tm, evs: []*schemas.ChangeEvent{ev}}})
					continue
				}
				if rekey {
					nw := jsonArray([][]byte{rowJSONOrd(tm, ev.New, ev.CommitTime, 0)})
					old := jsonArray([][]byte{rowJSON(tm, ev.Old, ev.CommitTime)})
					single(stmt{sql: tm.staleNewKeySQL(), args: []any{nw, old}})
					out = append(out, stmt{sql: tm.rekeySQL(excluded), args: []any{nw, old}, fill: &fill{tm: tm, evs: []*schemas.ChangeEvent{ev}}})
					if s := tm.rekeyedOutSQL(); s != "" {
						out = append(out, stmt{sql: s, args: []any{nw, old}})
					}
					continue
				}
				add(tm, gInPlace, excluded, ev, ev.New, rowKey(tm, ev, ev.New))
			case schemas.OpDelete:
				tm := a.cfg.Target.table(ev.Schema, ev.Table)
				if tm == nil || tm.Delete == DeleteIgnore {
					continue
				}
				count++
				row := ev.Old
				if row == nil {
					row = ev.New
				}
				add(tm, gRemove, nil, ev, row, rowKey(tm, ev, row))
			case schemas.OpTruncate:
				// cdc publishes one truncate event per truncated table: truncate
				// only this event's table (Truncate.Tables when it names none).
				tables := []string{ev.Schema + "." + ev.Table}
				restart := false
				if ev.Truncate != nil {
					if ev.Table == "" {
						tables = ev.Truncate.Tables
					}
					restart = ev.Truncate.RestartIdentity
				}
				// Hard-policy tables truncated by one source statement are
				// truncated by one target statement (on the first of its
				// events): PostgreSQL refuses to truncate a table referenced
				// by a foreign key unless the referencing table goes with it.
				var hard []string
				for _, name := range tables {
					s, tb, _ := strings.Cut(name, ".")
					tm := a.cfg.Target.table(s, tb)
					if tm == nil {
						continue
					}
					if tm.Delete == DeleteHard {
						if !truncated[tm.qTarget()] {
							truncated[tm.qTarget()] = true
							hard = append(hard, tm.qTarget())
						}
						if ev.Truncate != nil {
							for _, other := range ev.Truncate.Tables {
								s, tb, _ := strings.Cut(other, ".")
								if om := a.cfg.Target.table(s, tb); om != nil && om.Delete == DeleteHard && !truncated[om.qTarget()] {
									truncated[om.qTarget()] = true
									hard = append(hard, om.qTarget())
								}
							}
						}
						continue
					}
					if sql := tm.truncateSQL(restart); sql != "" {
						count++
						single(stmt{sql: sql})
					}
				}
				if len(hard) > 0 {
					sql := "TRUNCATE " + strings.Join(hard, ", ")
					if restart {
						sql += " RESTART IDENTITY"
					}
					count++
					single(stmt{sql: sql})
				}
			case schemas.OpSchema:
				if tm := a.cfg.Target.table(ev.Schema, ev.Table); tm != nil {
					a.log.Warn("source table changed shape; restart sync to re-validate the mapping if mapped columns changed",
						"table", ev.Schema+"."+ev.Table, "lsn", ev.CommitLSN.String())
				}
			}
		}
	}
	flush()
	return out, count, nil
}

// mixedRead reports whether a target column left alone (excluded: it reads
// an unchanged TOAST value) also reads a value the event sent, which may have
// changed: a non-key column, or a key column of a re-keyed row. The stored
// value is then stale and the target cannot recompute it.
func mixedRead(tm *TableMap, ev *schemas.ChangeEvent, excluded map[string]bool, rekey bool) bool {
	for c := range excluded {
		for _, d := range tm.deps[c] {
			if slices.Contains(ev.Unchanged, d) {
				continue
			}
			if rekey || !slices.Contains(ev.Key, d) {
				return true
			}
		}
	}
	return false
}

// hardDeleteView is tm with the hard delete policy (for primary-key changes).
func hardDeleteView(tm *TableMap) *TableMap {
	if tm.hardView == nil {
		c := *tm
		c.Delete = DeleteHard
		c.hardView = &c
		tm.hardView = &c
	}
	return tm.hardView
}

func excludedFor(tm *TableMap, unchanged []string) map[string]bool {
	if len(unchanged) == 0 {
		return nil
	}
	ex := map[string]bool{}
	for _, c := range tm.Columns[len(tm.Key):] {
		for _, d := range tm.deps[c.Name] {
			if slices.Contains(unchanged, d) {
				ex[c.Name] = true
			}
		}
	}
	return ex
}

func excludedSig(ex map[string]bool) string {
	if len(ex) == 0 {
		return ""
	}
	names := make([]string, 0, len(ex))
	for k := range ex {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

// rowKey identifies the target row a source row maps to, to merge repeated
// changes of one row inside a statement; "" when it cannot be known.
func rowKey(tm *TableMap, ev *schemas.ChangeEvent, row schemas.Row) string {
	cols := tm.plainKey
	if cols == nil {
		cols = ev.Key
	}
	if len(cols) == 0 {
		return ""
	}
	var b strings.Builder
	for _, c := range cols {
		v, ok := row[c]
		if !ok {
			return ""
		}
		if v == nil {
			b.WriteString("\x00N")
		} else {
			b.WriteString(*v)
		}
		b.WriteByte(0)
	}
	return b.String()
}

func keyChanged(tm *TableMap, ev *schemas.ChangeEvent) bool {
	cols := ev.Key
	if len(cols) == 0 {
		cols = tm.plainKey
	}
	for _, c := range cols {
		o, ok1 := ev.Old[c]
		n, ok2 := ev.New[c]
		if !ok1 || !ok2 {
			continue
		}
		if (o == nil) != (n == nil) || o != nil && *o != *n {
			return true
		}
	}
	return false
}

// rowJSONOrd is rowJSON with the row's ordinal in its statement.
func rowJSONOrd(tm *TableMap, row schemas.Row, ct time.Time, ord int) []byte {
	b := rowJSON(tm, row, ct)
	b = append(b[:len(b)-1], ',')
	b = jsonenc.AppendString(b, ordColumn)
	b = append(b, ':', '"')
	b = strconv.AppendInt(b, int64(ord), 10)
	return append(b, '"', '}')
}

func rowJSON(tm *TableMap, row schemas.Row, ct time.Time) []byte {
	b := make([]byte, 0, 64*len(tm.srcCols))
	b = append(b, '{')
	first := true
	for _, c := range tm.srcCols {
		v, ok := row[c.Name]
		if !ok || v == nil {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = jsonenc.AppendString(b, c.Name)
		b = append(b, ':')
		b = jsonenc.AppendString(b, *v)
	}
	if !first {
		b = append(b, ',')
	}
	b = jsonenc.AppendString(b, ctColumn)
	b = append(b, ':')
	b = jsonenc.AppendString(b, ct.UTC().Format(time.RFC3339Nano))
	return append(b, '}')
}

func (a *Applier) setWatermark(p pos, ct time.Time) {
	a.wmMu.Lock()
	defer a.wmMu.Unlock()
	if ct.IsZero() {
		ct = a.wm.CommitTime
	}
	a.wm = schemas.Watermark{Target: a.target, Slot: a.slot, LSN: p.LSN, CommitTime: ct, AppliedAt: time.Now().UTC()}
	a.wmDirty = true
}

// Watermark returns the last applied position (zero before the first batch).
func (a *Applier) Watermark() schemas.Watermark {
	a.wmMu.Lock()
	defer a.wmMu.Unlock()
	return a.wm
}

func (a *Applier) watermarkLoop(ctx context.Context, kv jetstream.KeyValue) {
	t := time.NewTicker(a.cfg.Watermark)
	defer t.Stop()
	depthEvery := 0
	for {
		select {
		case <-ctx.Done():
			a.flushWatermark(kv)
			return
		case <-t.C:
		}
		if kv == nil {
			kv = a.openKV(ctx)
		}
		a.flushWatermark(kv)
		a.wmMu.Lock()
		ct := a.wm.CommitTime
		a.wmMu.Unlock()
		if !ct.IsZero() {
			a.met.lag.WithLabelValues(a.target).Set(max(0, time.Since(ct).Seconds()))
			a.met.watermark.WithLabelValues(a.target).Set(float64(ct.UnixNano()) / 1e9)
		}
		if depthEvery--; depthEvery <= 0 {
			depthEvery = int(10 * time.Second / a.cfg.Watermark)
			if n, err := DLQDepth(ctx, a.js); err == nil {
				if n > 0 {
					n -= a.pruneObsoleteDLQ(ctx)
				}
				a.met.dlqDepth.Set(float64(n))
			}
		}
	}
}

func (a *Applier) flushWatermark(kv jetstream.KeyValue) {
	if kv == nil {
		return
	}
	a.wmMu.Lock()
	wm, dirty := a.wm, a.wmDirty
	a.wmDirty = false
	a.wmMu.Unlock()
	if !dirty {
		return
	}
	data, err := wm.Encode()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := kv.Put(ctx, schemas.WatermarkKey(a.target), data); err != nil {
		a.log.Warn("publish watermark failed", "lsn", wm.LSN.String(), "err", err)
		a.wmMu.Lock()
		a.wmDirty = true
		a.wmMu.Unlock()
	}
}
