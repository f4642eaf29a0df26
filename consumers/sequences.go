package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/pgsession"
	"github.com/heal7/shadowcube/internal/stage"
)

// Sequence positions.
//
// pgoutput replicates rows, not sequences: after the copy, a cube's serial or
// identity sequence would still stand at 1 and the cube's first own insert
// would collide with a synced key. SyncSequences moves each cube sequence that
// feeds a mapped column past every value in use: past the source sequence's
// last value when the column maps a sequence-fed source column as is, and past
// the largest value the cube table holds in any case. It never moves a
// sequence backwards, and it keeps the cube sequence on its own lattice
// (values ≡ its current value modulo its increment), so a cube that takes ids
// interleaved with legacy's (same INCREMENT, different START) keeps its own
// residue. Only ascending sequences of smallint, integer and bigint columns
// are handled.
//
// The sync stage runs it at start, when a target finishes its initial copy
// (the first source transaction applied after snapshot rows), and every
// SequenceInterval; `shadowcube sync --sequences` runs it once.

// DefaultSequenceInterval is how often the sync stage moves cube sequences
// when Config.SequenceInterval is zero.
const DefaultSequenceInterval = 30 * time.Second

// seqColumn is an integer column whose values a sequence supplies.
type seqColumn struct {
	Column    string
	Sequence  string // schema-qualified, quoted: usable in SQL as is
	Increment int64
	Max       int64
}

// sequenceColumns lists the integer columns of table (quoted, qualified)
// fed by a sequence: serial (owned), identity, or a nextval default.
func sequenceColumns(ctx context.Context, db DB, table string) ([]seqColumn, error) {
	rows, err := db.Query(ctx, `
WITH rel AS (SELECT to_regclass($1::text) AS oid),
cols AS (
  SELECT d.refobjsubid AS attnum, d.objid AS seq
  FROM pg_depend d, rel
  WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
    AND d.refobjid = rel.oid AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')
  UNION
  SELECT ad.adnum, d.refobjid
  FROM pg_attrdef ad JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
       AND d.refclassid = 'pg_class'::regclass, rel
  WHERE ad.adrelid = rel.oid)
SELECT a.attname, quote_ident(n.nspname) || '.' || quote_ident(s.relname), ps.seqincrement, ps.seqmax
FROM cols c
JOIN rel ON true
JOIN pg_attribute a ON a.attrelid = rel.oid AND a.attnum = c.attnum AND NOT a.attisdropped
JOIN pg_class s ON s.oid = c.seq AND s.relkind = 'S'
JOIN pg_namespace n ON n.oid = s.relnamespace
JOIN pg_sequence ps ON ps.seqrelid = s.oid
WHERE a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
ORDER BY a.attnum, 2`, table)
	if err != nil {
		return nil, fmt.Errorf("read sequences of %s: %w", table, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (seqColumn, error) {
		var c seqColumn
		err := r.Scan(&c.Column, &c.Sequence, &c.Increment, &c.Max)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("read sequences of %s: %w", table, err)
	}
	return out, nil
}

// sequenceNext returns the value the sequence's next nextval returns (its
// last value plus the increment once called), and its last value.
func sequenceNext(ctx context.Context, db DB, seq string, inc int64) (next, last int64, err error) {
	var called bool
	if err := db.QueryRow(ctx, fmt.Sprintf("SELECT last_value, is_called FROM %s", seq)).Scan(&last, &called); err != nil {
		return 0, 0, fmt.Errorf("read sequence %s: %w", seq, err)
	}
	if called {
		return last + inc, last, nil
	}
	return last, last, nil
}

func columnMax(ctx context.Context, db DB, table, column string) (*int64, error) {
	var v *int64
	if err := db.QueryRow(ctx, fmt.Sprintf("SELECT max(%s)::bigint FROM %s", quoteIdent(column), table)).Scan(&v); err != nil {
		return nil, fmt.Errorf("max(%s) of %s: %w", column, table, err)
	}
	return v, nil
}

// SequencePosition is what SyncSequences did with one cube sequence.
type SequencePosition struct {
	Target     string   `json:"target"`
	Sequence   string   `json:"sequence"`              // the cube sequence
	Columns    []string `json:"columns"`               // target table.column it feeds
	SourceLast *int64   `json:"source_last,omitempty"` // last value of the source sequence of a column mapped as is
	TargetMax  *int64   `json:"target_max,omitempty"`  // largest value of its columns in the cube
	Want       int64    `json:"want"`                  // highest value in use: the cube's next value must exceed it
	NextBefore int64    `json:"next_before"`           // the cube sequence's next value before
	NextAfter  int64    `json:"next_after"`            // and after
	Moved      bool     `json:"moved"`
	Note       string   `json:"note,omitempty"` // why a position was not used or moved
}

// SyncSequences moves every cube sequence feeding a mapped column of target
// t (validated) past the values in use (see the comment at the top of this
// file). src is the legacy database, dst the cube database.
func SyncSequences(ctx context.Context, t *Target, src, dst DB) ([]SequencePosition, error) {
	var order []string
	bySeq := map[string]*SequencePosition{}
	incs := map[string]seqColumn{}
	for _, tm := range t.Tables {
		if tm.srcCols == nil {
			return nil, fmt.Errorf("sequences of %s: mapping not validated", tm.Source)
		}
		tcols, err := sequenceColumns(ctx, dst, tm.qTarget())
		if err != nil {
			return nil, err
		}
		var scols []seqColumn
		for _, tc := range tcols {
			i := slices.IndexFunc(tm.Columns, func(c *ColumnMap) bool { return c.Name == tc.Column })
			if i < 0 {
				continue // filled by the cube itself
			}
			p := bySeq[tc.Sequence]
			if p == nil {
				p = &SequencePosition{Target: t.Name, Sequence: tc.Sequence}
				bySeq[tc.Sequence] = p
				incs[tc.Sequence] = tc
				order = append(order, tc.Sequence)
			}
			p.Columns = append(p.Columns, tm.Target+"."+tc.Column)
			mx, err := columnMax(ctx, dst, tm.qTarget(), tc.Column)
			if err != nil {
				return nil, err
			}
			if mx != nil && (p.TargetMax == nil || *mx > *p.TargetMax) {
				p.TargetMax = mx
			}
			name := plainColumn(tm.Columns[i].Expr)
			if name == "" {
				continue // computed: only the cube's largest value tells
			}
			if scols == nil {
				if scols, err = sequenceColumns(ctx, src, tm.qSource()); err != nil {
					return nil, err
				}
			}
			j := slices.IndexFunc(scols, func(c seqColumn) bool { return c.Column == name })
			if j < 0 {
				continue // the source column has no sequence: the cube's largest value tells
			}
			var last *int64
			if err := src.QueryRow(ctx, "SELECT pg_sequence_last_value(to_regclass($1::text))", scols[j].Sequence).Scan(&last); err != nil {
				p.Note = fmt.Sprintf("source sequence %s unreadable (%s): grant SELECT on it to use its position", scols[j].Sequence, pgMessage(err))
				continue
			}
			if last != nil && (p.SourceLast == nil || *last > *p.SourceLast) {
				p.SourceLast = last
			}
		}
	}
	var out []SequencePosition
	for _, seq := range order {
		p, sc := bySeq[seq], incs[seq]
		p.Want = 0
		for _, v := range []*int64{p.SourceLast, p.TargetMax} {
			if v != nil && *v > p.Want {
				p.Want = *v
			}
		}
		var err error
		p.NextBefore, p.NextAfter, p.Moved, err = advanceSequence(ctx, dst, sc, p.Want)
		if err != nil {
			return out, fmt.Errorf("target %s: %w", t.Name, err)
		}
		if sc.Increment <= 0 {
			p.Note = "descending sequence: left alone"
		}
		out = append(out, *p)
	}
	return out, nil
}

// advanceSequence moves seq so that its next value exceeds want, never
// backwards. It locks the sequence (ALTER SEQUENCE takes a lock that nextval
// waits for) while it reads and sets it, so no value handed out between the
// read and the setval can be handed out again; without the privilege to alter
// the sequence it falls back to one conditional setval statement.
func advanceSequence(ctx context.Context, db DB, sc seqColumn, want int64) (before, after int64, moved bool, err error) {
	before, _, err = sequenceNext(ctx, db, sc.Sequence, sc.Increment)
	if err != nil || sc.Increment <= 0 || before > want {
		return before, before, false, err
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return before, before, false, fmt.Errorf("advance sequence %s: %w", sc.Sequence, err)
	}
	defer tx.Rollback(ctx)
	locked := true
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '5s'"); err != nil {
		return before, before, false, fmt.Errorf("advance sequence %s: %w", sc.Sequence, err)
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return before, before, false, fmt.Errorf("advance sequence %s: %w", sc.Sequence, err)
	}
	if _, err := sp.Exec(ctx, fmt.Sprintf("ALTER SEQUENCE %s INCREMENT BY %d", sc.Sequence, sc.Increment)); err != nil {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || (pe.Code != "42501" && pe.Code != "55P03") { // not the owner; lock timeout
			return before, before, false, fmt.Errorf("lock sequence %s: %w", sc.Sequence, err)
		}
		locked = false
		if err := sp.Rollback(ctx); err != nil {
			return before, before, false, err
		}
	} else if err := sp.Commit(ctx); err != nil {
		return before, before, false, err
	}
	next, last, err := sequenceNext(ctx, tx, sc.Sequence, sc.Increment)
	if err != nil {
		return before, before, false, err
	}
	if next > want {
		return before, next, false, tx.Commit(ctx)
	}
	// the smallest value >= want on the sequence's lattice (last mod increment)
	v := last + (want-last+sc.Increment-1)/sc.Increment*sc.Increment
	if v > sc.Max || v < last {
		return before, next, false, fmt.Errorf("sequence %s: cannot move past %d: its MAXVALUE is %d", sc.Sequence, want, sc.Max)
	}
	q := "SELECT setval(to_regclass($1::text), $2, true)"
	if !locked {
		q = fmt.Sprintf("SELECT setval(to_regclass($1::text), $2, true) FROM %s WHERE CASE WHEN is_called THEN last_value + $3 ELSE last_value END <= $2", sc.Sequence)
	}
	args := []any{sc.Sequence, v}
	if !locked {
		args = append(args, sc.Increment)
	}
	if _, err := tx.Exec(ctx, q, args...); err != nil {
		return before, next, false, fmt.Errorf("setval %s: %w", sc.Sequence, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return before, next, false, fmt.Errorf("advance sequence %s: %w", sc.Sequence, err)
	}
	after, _, err = sequenceNext(ctx, db, sc.Sequence, sc.Increment)
	return before, after, after != before, err
}

// SequenceCheck is reconcile's view of one sequence feeding a mapped column.
type SequenceCheck struct {
	Sequence string `json:"sequence"`
	Column   string `json:"column"`
	Next     int64  `json:"next"`              // the value its next nextval returns
	MaxValue *int64 `json:"max_value"`         // the column's largest value in the target
	Behind   bool   `json:"behind,omitempty"`  // Next <= MaxValue: the cube's next insert would collide
	Fix      string `json:"fix,omitempty"`     // how to fix it when Behind
	Error    string `json:"error,omitempty"`   // why it could not be read
	Skipped  string `json:"skipped,omitempty"` // why it was not checked
}

// sequences checks every sequence feeding a mapped column of the table; one
// Behind its column's largest value is a difference.
func (r *reconciler) sequences(ctx context.Context) error {
	r.rep.Queries++
	cols, err := sequenceColumns(ctx, r.cfg.Dest, r.tm.qTarget())
	if err != nil {
		return err
	}
	for _, sc := range cols {
		if !slices.ContainsFunc(r.tm.Columns, func(c *ColumnMap) bool { return c.Name == sc.Column }) {
			continue
		}
		chk := SequenceCheck{Sequence: sc.Sequence, Column: sc.Column}
		if sc.Increment <= 0 {
			chk.Skipped = "descending sequence"
			r.rep.Sequences = append(r.rep.Sequences, chk)
			continue
		}
		r.rep.Queries += 2
		if chk.Next, _, err = sequenceNext(ctx, r.cfg.Dest, sc.Sequence, sc.Increment); err != nil {
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "42501" {
				return err
			}
			// unknown is not equal: count it, say how to check or skip it
			r.rep.Queries--
			chk.Error = pgMessage(err)
			chk.Fix = fmt.Sprintf("GRANT SELECT ON SEQUENCE %s to the reconcile role, or run reconcile --no-sequences", sc.Sequence)
			r.rep.Differences++
			r.rep.Sequences = append(r.rep.Sequences, chk)
			continue
		}
		if chk.MaxValue, err = columnMax(ctx, r.cfg.Dest, r.tm.qTarget(), sc.Column); err != nil {
			return err
		}
		if chk.MaxValue != nil && chk.Next <= *chk.MaxValue {
			chk.Behind = true
			chk.Fix = "run shadowcube sync --sequences (sync moves sequences at start, after the initial copy and periodically)"
			r.rep.Differences++
		}
		r.rep.Sequences = append(r.rep.Sequences, chk)
	}
	return nil
}

// sequenceSyncer runs SyncSequences for the sync stage's targets.
type sequenceSyncer struct {
	interval time.Duration
	poll     time.Duration // how often checkpoints are read to see a snapshot end
	srcURL   string
	log      *slog.Logger
	passes   *prometheus.CounterVec
	advanced *prometheus.CounterVec
	errors   *prometheus.CounterVec
	// inSnapshot is 1 while the target's checkpoint is inside the initial copy.
	inSnapshot *prometheus.GaugeVec
}

func newSequenceSyncer(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*sequenceSyncer, error) {
	q := &sequenceSyncer{interval: cfg.SequenceInterval, poll: time.Second, srcURL: cfg.SourceURL, log: log,
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_sync_sequence_passes_total",
			Help: "Passes that moved the target's sequences past the values in use, by reason (start, snapshot, interval)."}, []string{"target", "reason"}),
		advanced: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_sync_sequences_advanced_total",
			Help: "Cube sequences moved forward."}, []string{"target"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shadowcube_sync_sequence_errors_total",
			Help: "Sequence passes that failed (retried at the next one)."}, []string{"target"}),
		inSnapshot: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shadowcube_sync_snapshot_in_progress",
			Help: "1 while the target is applying the initial copy (its checkpoint is at a snapshot row)."}, []string{"target"}),
	}
	if q.interval == 0 {
		q.interval = DefaultSequenceInterval
	}
	if err := stage.Register(reg, "sync", q.passes, q.advanced, q.errors, q.inSnapshot); err != nil {
		return nil, err
	}
	return q, nil
}

// run moves the appliers' target sequences at start, when a target's
// checkpoint leaves the snapshot (its initial copy is applied), and every
// interval, until ctx ends.
func (q *sequenceSyncer) run(ctx context.Context, appliers []*Applier) {
	pc, err := pgxpool.ParseConfig(q.srcURL)
	if err != nil {
		q.log.Error("sequence sync disabled: bad source database URL", "err", err)
		return
	}
	pgsession.Apply(pc.ConnConfig.RuntimeParams)
	pc.MaxConns = 1
	src, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		q.log.Error("sequence sync disabled: source database", "err", err)
		return
	}
	defer src.Close()
	pass := func(a *Applier, reason string) {
		ps, err := SyncSequences(ctx, a.cfg.Target, src, a.cfg.DB)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			q.errors.WithLabelValues(a.target).Inc()
			q.log.Warn("sequence sync failed; retrying at the next pass", "target", a.target, "reason", reason, "err", err)
			return
		}
		for _, p := range ps {
			if p.Moved {
				q.advanced.WithLabelValues(a.target).Inc()
				q.log.Info("sequence moved past the values in use", "target", a.target, "sequence", p.Sequence,
					"next_before", p.NextBefore, "next_after", p.NextAfter, "reason", reason)
			}
			if p.Note != "" {
				q.log.Warn("sequence", "target", a.target, "sequence", p.Sequence, "note", p.Note)
			}
		}
		q.passes.WithLabelValues(a.target, reason).Inc()
	}
	for _, a := range appliers {
		pass(a, "start")
	}
	tick := time.NewTicker(q.interval)
	defer tick.Stop()
	poll := time.NewTicker(q.poll)
	defer poll.Stop()
	inSnapshot := make([]bool, len(appliers))
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			for _, a := range appliers {
				pass(a, "interval")
			}
		case <-poll.C:
			for i, a := range appliers {
				cp, err := ReadCheckpoint(ctx, a.cfg.DB, a.target, a.slot)
				if err != nil {
					continue
				}
				snap := cp.LSN != 0 && cp.Index < wholeTx
				if inSnapshot[i] && !snap {
					pass(a, "snapshot")
				}
				inSnapshot[i] = snap
				if snap {
					q.inSnapshot.WithLabelValues(a.target).Set(1)
				} else {
					q.inSnapshot.WithLabelValues(a.target).Set(0)
				}
			}
		}
	}
}
