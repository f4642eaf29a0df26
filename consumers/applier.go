package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go/jetstream"

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
	// ReorderWait bounds how long a source transaction that arrived before
	// an earlier one waits for it (default 2m; txn.go); then the missing one
	// is a poison unit.
	ReorderWait time.Duration
	// MinCopyRows is the shortest run of new rows sent with COPY
	// (setapply.go; default 32): a COPY costs a round trip of its own, where
	// an upsert rides in the batch's pipelined statements.
	MinCopyRows int

	// noStage (tests and benchmarks: the path before staging.go) applies
	// runs whose keys the target holds as a probe and a JSON upsert.
	noStage bool
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
	if c.ReorderWait <= 0 {
		c.ReorderWait = 2 * time.Minute
	}
	if c.PollStop <= 0 {
		c.PollStop = time.Second
	}
	if c.MinCopyRows <= 0 {
		c.MinCopyRows = defaultMinCopyRows
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
	if c.MinCopyRows < 0 {
		errs = append(errs, fmt.Errorf("applier config: MinCopyRows %d: must be at least 1 (0: default %d)", c.MinCopyRows, defaultMinCopyRows))
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
	copies  copyState // setapply.go
	// stageOff is set when the target refused a staging table (staging.go;
	// e.g. no TEMPORARY privilege): held rows go back to JSON upserts.
	stageOff atomic.Bool
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
		met, _ = NewMetrics(nil) // registers nothing: cannot fail
	}
	return &Applier{cfg: cfg, js: js, log: log.With("target", cfg.Target.Name), met: met,
		target: cfg.Target.Name, slot: cfg.Mapping.Source.Slot}, nil
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
		if a.cfg.Target.hasConflictPolicy() {
			if err := EnsureConflictTable(ctx, a.cfg.DB); err != nil {
				return err
			}
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

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (a *Applier) loop(ctx context.Context, start pos, items <-chan item) error {
	dups := a.met.skippedTxs.WithLabelValues(a.target)
	as := &assembler{slot: a.slot, last: start, log: a.log, dup: dups.Inc, wait: a.cfg.ReorderWait,
		reordered: a.met.reordered.WithLabelValues(a.target).Inc}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
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
		case <-tick.C:
			for _, t := range as.expire() {
				ready = append(ready, t)
				events += len(t.events)
			}
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
			as.reset(applied)
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
	noCopy := false
	for {
		start := time.Now()
		n, err := a.applyWith(ctx, batch, modeNormal, noCopy)
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
		var ce *copyError
		if !noCopy && errors.As(err, &ce) && !Transient(err) {
			// COPY failed (setapply.go): the same batch through upserts only
			a.log.Warn("copy failed; applying the batch without copy", "lsn", batch[0].pos.String(), "err", err)
			noCopy = true
			continue
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
	n, err := a.applyWith(ctx, batch, mode, false)
	var ce *copyError
	if errors.As(err, &ce) && !Transient(err) {
		return a.applyWith(ctx, batch, mode, true)
	}
	return n, err
}

// applyWith is applyOnce; noCopy applies upsert runs without COPY.
func (a *Applier) applyWith(ctx context.Context, batch []*txn, mode applyMode, noCopy bool) (int, error) {
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
	cp, err := lockCheckpoint(ctx, tx, a.target, a.slot)
	if err != nil {
		return 0, err
	}
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
		*b = pgx.Batch{} // in place: applyCopy queues on b after sending
		return err
	}
	var conflicts []Conflict
	if mode != modeSkipData {
		units, found, err := a.resolveConflicts(ctx, tx, todo) // conflict.go
		if err != nil {
			return 0, err
		}
		conflicts = found
		sb := newStmtBatch(a.cfg.Target, a.log)
		sb.noCopy, sb.minCopy = noCopy, a.cfg.MinCopyRows
		var st txState
		for _, evs := range units {
			sb.addUnit(evs)
		}
		stmts, count := sb.statements()
		n = count
		for _, s := range stmts {
			if s.fill == nil && s.copy == nil {
				b.Queue(s.sql, s.args...)
				continue
			}
			if s.copy != nil {
				if err := a.applyCopy(ctx, tx, s.copy, b, send, &st); err != nil {
					return 0, err
				}
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
	if cp.less(last.pos) {
		queueAdvance(b, a.target, a.slot, last.pos, last.commitTime)
	}
	if err := send(); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	for _, c := range conflicts {
		a.met.conflicts.WithLabelValues(c.TargetTable, c.Winner).Inc()
	}
	return n, nil
}
