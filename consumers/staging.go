package consumers

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Staged apply of runs whose keys the target holds (see
// docs/performance.md, B4).
//
// The rows of a run of full-row upserts of a plainly mapped table
// (setapply.go) whose keys the target already holds are not sent as one
// statement over a json_to_recordset array (PostgreSQL parses and casts
// every value of the JSON per row): they go with COPY into a staging
// table, then one statement applies them to the target:
//
//	INSERT INTO target (…) OVERRIDING SYSTEM VALUE SELECT … FROM staging
//	  ON CONFLICT (key) DO UPDATE SET …
//
// stmtBatch has already reduced the run to the newest version of each key,
// and runs are barriers in source order (in-place updates of unchanged
// TOAST values, key changes, truncates, re-reads stay on the row path), so
// the set statement has the run's end state. Everything runs in the batch's
// target transaction, before the checkpoint moves.
//
// The staging table is a temporary table per session and target table
// (ON COMMIT DELETE ROWS), created on first use and reused by every later
// transaction of the pooled connection: a table created and dropped per
// batch would add and remove catalog rows (pg_class, pg_attribute, pg_type)
// per batch, bloating the catalog. Its columns are the target's columns,
// with the target's types and no constraints: COPY in text format reads the
// source's exact text with the column type's input function, as the upsert's
// casts do (planCopy only admits tables whose target types are the source
// types), and the set statement checks the target's constraints. Its name
// carries a hash of the columns and types, so a target whose shape changed
// gets a new staging table. A second run of the same table in one
// transaction truncates it first (a truncate of a table created or
// truncated in the same transaction is done in place).
//
// Which rows of a run go this way (setapply.go, copyMode): a table whose
// last run found most keys held upserts its whole next run through the
// staging table, without a key probe (the count of rows the upsert updated
// picks the next run's mode); otherwise a run is copied optimistically or
// probed, the new rows go with COPY straight into the target (PostgreSQL's
// multi-row insert, which no INSERT … SELECT gets) and only the held rows
// through the staging table. Per row, the staging table saves the JSON
// parse of every value; it cannot save PostgreSQL's per-row update (there
// is no multi-row update), so it pays on wide rows and is level on narrow
// ones (docs/performance.md, B4). Runs of deletes keep the JSON delete:
// through a staging table they measured no faster.
//
// A failing staging COPY is a copyError: the applier applies the same batch
// again without COPY or staging (applyBatch).

// stagePlan is how runs of a plainly mapped table go through its staging table.
type stagePlan struct {
	table  string // pg_temp."shadowcube_stage_<hash>"
	create string // CREATE TEMP TABLE IF NOT EXISTS …
	copy   string // COPY staging FROM STDIN
	// upsert applies the staged rows and returns how many it inserted (the
	// others updated rows the target held).
	upsert string
}

// planStage returns the staging plan of tm; tcols are the quoted target
// columns, key columns first.
func planStage(tm *TableMap, tcols []string) *stagePlan {
	var defs, sets []string
	for i, c := range tm.Columns {
		defs = append(defs, tcols[i]+" "+tm.tgtTypes[c.Name])
		if i >= len(tm.Key) {
			sets = append(sets, fmt.Sprintf("%s = EXCLUDED.%s", tcols[i], tcols[i]))
		}
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%s", tm.qTarget(), strings.Join(defs, "\x00"))
	name := fmt.Sprintf(`"shadowcube_stage_%016x"`, h.Sum64())
	p := &stagePlan{table: "pg_temp." + name}
	p.create = fmt.Sprintf("CREATE TEMP TABLE IF NOT EXISTS %s (%s) ON COMMIT DELETE ROWS", name, strings.Join(defs, ", "))
	cols := strings.Join(tcols, ", ")
	p.copy = fmt.Sprintf("COPY %s (%s) FROM STDIN", p.table, cols)
	action := "DO NOTHING"
	if len(sets) > 0 {
		action = "DO UPDATE SET " + strings.Join(sets, ", ")
	}
	// xmax is 0 on a row version the statement inserted, set on one it
	// updated (the row lock of ON CONFLICT). The count only steers the
	// next run's choice between optimistic COPY and staging: a wrong count
	// costs time, never rows.
	p.upsert = fmt.Sprintf("WITH u AS (INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s ON CONFLICT (%s) %s RETURNING xmax::text = '0' AS ins) "+
		"SELECT count(*) FILTER (WHERE ins) FROM u",
		tm.qTarget(), cols, cols, p.table, tm.keyList(), action)
	return p
}

// txState is what one target transaction has used of the set-based paths.
type txState struct {
	savepoints int             // savepoints of optimistic COPY runs (maxCopySavepoints)
	staged     map[string]bool // staging tables filled in this transaction
}

// noStage reports whether held rows skip the staging table: by
// configuration, or because the target refused one.
func (a *Applier) noStage() bool { return a.cfg.noStage || a.stageOff.Load() }

// fillStaging copies the rows of r into the staging table of its table.
// b's queued statements must have been sent. A failure other than a
// transient one (the target refuses temporary tables, a type the staging
// table cannot take) turns staging off for this applier: the batch is
// applied again without COPY (applyBatch), later ones with JSON upserts.
func (a *Applier) fillStaging(ctx context.Context, tx pgx.Tx, r *copyRun, st *txState) error {
	sp := r.plan.stage
	var buf bytes.Buffer
	for _, row := range r.rows {
		appendCopyRow(&buf, r.plan.cols, row)
	}
	// one round trip: create (first use in the session), empty (second
	// use in the transaction) and copy ride in one query string
	q := sp.create + "; "
	if st.staged[sp.table] {
		q += "TRUNCATE " + sp.table + "; "
	}
	if st.staged == nil {
		st.staged = map[string]bool{}
	}
	st.staged[sp.table] = true
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, &buf, q+sp.copy); err != nil {
		if ctx.Err() == nil && !Transient(err) && !a.stageOff.Swap(true) {
			a.log.Warn("the target refused a staging table; held rows go through upserts from now on", "table", r.tm.Target, "err", err)
		}
		return &copyError{table: r.tm.Target, err: fmt.Errorf("staging: %w", err)}
	}
	return nil
}

// stageUpsert applies run r through its staging table: copied now, the
// upsert queued on b (after the statements before the run, sent by send).
// With whole (r is the table's whole run, not probed) the count of rows the
// target held sets the table's next copy mode.
func (a *Applier) stageUpsert(ctx context.Context, tx pgx.Tx, r *copyRun, b *pgx.Batch, send func() error, st *txState, whole bool) error {
	if err := send(); err != nil {
		return err
	}
	if err := a.fillStaging(ctx, tx, r, st); err != nil {
		return err
	}
	tm, n := r.tm, len(r.rows)
	b.Queue(r.plan.stage.upsert).QueryRow(func(row pgx.Row) error {
		var inserted int64
		if err := row.Scan(&inserted); err != nil {
			return fmt.Errorf("upsert staged rows of %s: %w", tm.Target, err)
		}
		if whole {
			a.copies.set(tm, modeFor(n-int(inserted), n))
		}
		a.met.staged.WithLabelValues(a.target).Add(float64(n))
		return nil
	})
	return nil
}
