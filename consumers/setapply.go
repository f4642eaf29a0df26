package consumers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/heal7/shadowcube/schemas"
)

// Set-based apply of insert runs (see docs/performance.md, B4).
//
// stmtBatch already reduces a run of consecutive full-row upserts of one
// table to the newest version of each key, in source order with the runs
// around it (deletes, key changes, in-place updates of unchanged TOAST
// values, truncates and re-reads stay statements of their own, so they are
// barriers). For a table whose mapping is a plain copy (planCopy), such a
// run is not sent as one INSERT … ON CONFLICT over a JSON array: it is sent
// with COPY straight into the target table (PostgreSQL's multi-row insert
// path) under a savepoint. When the target already holds one of the run's
// keys (unique violation) the savepoint is rolled back, the run's keys are
// probed (one index probe each), held keys are upserted through a staging
// table (staging.go) and the rest go through COPY; the table then probes
// first until a run finds no held key, or, while most keys are held, sends
// whole runs through the staging table without a probe (copyMode). All of
// it runs inside the batch's target transaction, at the run's place among
// the other statements, before the checkpoint moves.
//
// COPY in text format: source values are exact PostgreSQL text, so the
// target column's input function reads them exactly as the upsert's casts
// do. A COPY that fails otherwise (a target refusing COPY, a concurrent
// writer inserting a probed-absent key) rolls the transaction back; the
// applier then applies the same batch again without COPY (applyBatch,
// applyOnce), so such a failure is never mistaken for a poison transaction.

// defaultMinCopyRows is the shortest run sent with COPY by default
// (ApplierConfig.MinCopyRows). A COPY costs a round trip of its own, where
// an upsert rides in the batch's pipelined statements: transactions touching
// several tables make runs of a few rows each, which stay upserts.
const defaultMinCopyRows = 32

// copyRun is a run of full-row upserts of a plainly mapped table, reduced to
// one row per key, in the order of their first change.
type copyRun struct {
	tm   *TableMap
	plan *copyPlan
	rows []schemas.Row
	cts  []time.Time // the commit time of each row (for the upsert of keys the target holds)
}

// copyPlan is how the rows of a plainly mapped table go into its target:
// cols[i] is the source column of target column tm.Columns[i].
type copyPlan struct {
	cols  []string
	probe string // SQL returning the ordinals (1-based) of $1.. keys the target holds
	copy  string // COPY … FROM STDIN
	stage *stagePlan
}

// planCopy returns the copy plan of tm, or nil when its rows cannot go
// through COPY: a where filter, the soft-delete policy, a conflict policy
// (conflict.go checks each row), or a target column that is not a plain
// source column of the same type. COPY writes the given value of a GENERATED
// ALWAYS identity column, as the upsert's OVERRIDING SYSTEM VALUE does.
func planCopy(tm *TableMap) *copyPlan {
	if tm.Where != "" || tm.Delete == DeleteSoft || tm.Conflict != "" || len(tm.plainKey) != len(tm.Key) {
		return nil
	}
	srcType := map[string]string{}
	for _, c := range tm.srcCols {
		srcType[c.Name] = c.Type
	}
	p := &copyPlan{}
	var tcols []string
	for _, c := range tm.Columns {
		e := strings.TrimSpace(c.Expr)
		name := plainColumn(e)
		if name == "" || e == name && strings.ToLower(name) != name {
			return nil // an unquoted mixed-case name folds: leave it to the upsert
		}
		st, ok := srcType[name]
		if !ok || st != tm.tgtTypes[c.Name] {
			return nil
		}
		p.cols = append(p.cols, name)
		tcols = append(tcols, quoteIdent(c.Name))
	}
	var arrs, defs, match []string
	for i, k := range tm.Key {
		arrs = append(arrs, fmt.Sprintf("$%d::text[]", i+1))
		defs = append(defs, fmt.Sprintf("k%d", i))
		match = append(match, fmt.Sprintf("t.%s = u.k%d::%s", quoteIdent(k), i, tm.tgtTypes[k]))
	}
	p.probe = fmt.Sprintf("SELECT u.o::int FROM unnest(%s) WITH ORDINALITY AS u(%s, o) WHERE EXISTS (SELECT 1 FROM %s AS t WHERE %s)",
		strings.Join(arrs, ", "), strings.Join(defs, ", "), tm.qTarget(), strings.Join(match, " AND "))
	p.copy = fmt.Sprintf("COPY %s (%s) FROM STDIN", tm.qTarget(), strings.Join(tcols, ", "))
	p.stage = planStage(tm, tcols)
	return p
}

// copyPlanOf caches planCopy per table for one batch.
func (b *stmtBatch) copyPlanOf(tm *TableMap) *copyPlan {
	if b.noCopy {
		return nil
	}
	if b.plans == nil {
		b.plans = map[*TableMap]*copyPlan{}
	}
	p, ok := b.plans[tm]
	if !ok {
		p = planCopy(tm)
		b.plans[tm] = p
	}
	return p
}

// copyMode is how the next copy run of a table starts, chosen from how many
// keys of its last run the target held.
type copyMode int

const (
	// copyOptimistic: COPY under a savepoint (the target held none: a
	// catch-up of new rows needs no probe)
	copyOptimistic copyMode = iota
	// copyProbe: probe the keys, COPY the new rows, upsert the held ones
	// (the target held some, at most half)
	copyProbe
	// copyStage: upsert the whole run through the staging table, no probe
	// (the target held most; staging.go)
	copyStage
)

// modeFor is the mode after a run of n rows of which the target held held.
func modeFor(held, n int) copyMode {
	switch {
	case held == 0:
		return copyOptimistic
	case 2*held > n:
		return copyStage
	}
	return copyProbe
}

// copyState remembers, per table, the mode of its next copy run.
type copyState struct {
	mu   sync.Mutex
	mode map[*TableMap]copyMode
}

func (s *copyState) get(tm *TableMap) copyMode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode[tm]
}

func (s *copyState) set(tm *TableMap, m copyMode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mode == nil {
		s.mode = map[*TableMap]copyMode{}
	}
	s.mode[tm] = m
}

// maxCopySavepoints bounds the savepoints of one target transaction: past
// 64 subtransactions PostgreSQL's snapshots of every backend slow down.
const maxCopySavepoints = 32

const copySavepoint = "shadowcube_copy"

// applyCopy applies run r in tx: rows whose key the target lacks are copied
// into the target now, the others are upserted through the staging table
// (staging.go; with ApplierConfig.noStage: queued on b as a JSON upsert).
// Where the target held most keys of the table's last run, the whole run
// is upserted through the staging table without a probe. b holds the
// statements before the run, not yet sent; st is what tx has used.
func (a *Applier) applyCopy(ctx context.Context, tx pgx.Tx, r *copyRun, b *pgx.Batch, send func() error, st *txState) error {
	tm := r.tm
	mode := a.copies.get(tm)
	if mode == copyStage && !a.noStage() {
		return a.stageUpsert(ctx, tx, r, b, send, st, true)
	}
	if mode == copyOptimistic && st.savepoints < maxCopySavepoints {
		st.savepoints++
		if err := send(); err != nil {
			return err
		}
		var buf bytes.Buffer
		for _, row := range r.rows {
			appendCopyRow(&buf, r.plan.cols, row)
		}
		// one round trip: the savepoint rides in the COPY's query string
		_, err := tx.Conn().PgConn().CopyFrom(ctx, &buf, "SAVEPOINT "+copySavepoint+"; "+r.plan.copy)
		if err == nil {
			b.Queue("RELEASE SAVEPOINT " + copySavepoint)
			a.met.copied.WithLabelValues(a.target).Add(float64(len(r.rows)))
			return nil
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "23505" {
			return &copyError{table: tm.Target, err: err}
		}
		// the target holds some of the keys: probe them
		if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT "+copySavepoint); err != nil {
			return err
		}
		b.Queue("RELEASE SAVEPOINT " + copySavepoint)
	} else if err := send(); err != nil {
		return err
	}
	present, err := probeKeys(ctx, tx, r)
	if err != nil {
		return err
	}
	held := &copyRun{tm: tm, plan: r.plan}
	var buf bytes.Buffer
	for j, row := range r.rows {
		if present[j] {
			held.rows = append(held.rows, row)
			held.cts = append(held.cts, r.cts[j])
		} else {
			appendCopyRow(&buf, r.plan.cols, row)
		}
	}
	a.copies.set(tm, modeFor(len(held.rows), len(r.rows)))
	if len(held.rows) < len(r.rows) {
		if _, err := tx.Conn().PgConn().CopyFrom(ctx, &buf, r.plan.copy); err != nil {
			return &copyError{table: tm.Target, err: err}
		}
		a.met.copied.WithLabelValues(a.target).Add(float64(len(r.rows) - len(held.rows)))
	}
	switch {
	case len(held.rows) == 0:
	case a.noStage():
		upsert := make([][]byte, len(held.rows))
		for j, row := range held.rows {
			upsert[j] = rowJSON(tm, row, held.cts[j])
		}
		b.Queue(tm.upsertSQL(nil), jsonArray(upsert))
	default:
		return a.stageUpsert(ctx, tx, held, b, send, st, false)
	}
	return nil
}

// probeKeys reports which rows of r have a key the target holds.
func probeKeys(ctx context.Context, tx pgx.Tx, r *copyRun) ([]bool, error) {
	tm, p := r.tm, r.plan
	keys := make([][]*string, len(tm.Key))
	for i := range keys {
		keys[i] = make([]*string, len(r.rows))
	}
	for j, row := range r.rows {
		for i, c := range tm.plainKey {
			keys[i][j] = row[c]
		}
	}
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	rows, err := tx.Query(ctx, p.probe, args...)
	if err != nil {
		return nil, fmt.Errorf("probe keys of %s: %w", tm.Target, err)
	}
	held, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, fmt.Errorf("probe keys of %s: %w", tm.Target, err)
	}
	present := make([]bool, len(r.rows))
	for _, o := range held {
		if o < 1 || int(o) > len(r.rows) {
			return nil, fmt.Errorf("probe keys of %s: ordinal %d of %d", tm.Target, o, len(r.rows))
		}
		present[o-1] = true
	}
	return present, nil
}

// copyError is a failed COPY: the batch is applied again without COPY.
type copyError struct {
	table string
	err   error
}

func (e *copyError) Error() string { return "copy into " + e.table + ": " + e.err.Error() }
func (e *copyError) Unwrap() error { return e.err }

// appendCopyRow appends row (cols in order) as one line of COPY text format:
// a value not in the row, or NULL, is \N (as the upsert writes NULL).
func appendCopyRow(buf *bytes.Buffer, cols []string, row schemas.Row) {
	for i, c := range cols {
		if i > 0 {
			buf.WriteByte('\t')
		}
		v := row[c]
		if v == nil {
			buf.WriteString(`\N`)
			continue
		}
		s := *v
		for k := 0; k < len(s); k++ {
			switch ch := s[k]; ch {
			case '\\':
				buf.WriteString(`\\`)
			case '\n':
				buf.WriteString(`\n`)
			case '\r':
				buf.WriteString(`\r`)
			case '\t':
				buf.WriteString(`\t`)
			default:
				buf.WriteByte(ch)
			}
		}
	}
	buf.WriteByte('\n')
}
