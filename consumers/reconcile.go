package consumers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ReconcileConfig says what to compare: one validated target of a mapping,
// its source and target databases.
type ReconcileConfig struct {
	Mapping  *Mapping
	Target   *Target
	Source   DB
	Dest     DB
	Tables   []string                            // source or target table names to compare (default all); each must name a table of Target
	LeafRows int64                               // ranges at most this big are compared row by row (default 1000)
	Fanout   int                                 // sub-ranges per bisection step (default 8; at least 2)
	Settle   time.Duration                       // wait up to this for the target to catch up, then re-check differing rows (0: no re-check)
	MaxDiffs int                                 // most differences kept per table (default 1000; all are counted)
	OnSettle func(table string, differences int) // called before waiting for Settle (progress reports)

	// SkipSequences leaves out the check that each sequence feeding a mapped
	// target column (serial, identity, or a nextval default) is past the
	// column's largest value.
	SkipSequences bool
}

// validate rejects out-of-range settings (zero means default) and table
// names that match no table of the target.
func (c *ReconcileConfig) validate() error {
	var errs []error
	if c.Mapping == nil || c.Target == nil || c.Source == nil || c.Dest == nil {
		errs = append(errs, errors.New("Mapping, Target, Source and Dest are required"))
	}
	if c.LeafRows < 0 {
		errs = append(errs, fmt.Errorf("reconcile config: LeafRows %d: must be at least 1 (0: default 1000)", c.LeafRows))
	}
	if c.Fanout < 0 || c.Fanout == 1 {
		errs = append(errs, fmt.Errorf("reconcile config: Fanout %d: must be at least 2 (0: default 8)", c.Fanout))
	}
	if c.Settle < 0 {
		errs = append(errs, fmt.Errorf("reconcile config: Settle %s: must not be negative (0: no re-check)", c.Settle))
	}
	if c.MaxDiffs < 0 {
		errs = append(errs, fmt.Errorf("reconcile config: MaxDiffs %d: must be at least 1 (0: default 1000)", c.MaxDiffs))
	}
	if c.Target != nil {
		for _, name := range c.Tables {
			if !slices.ContainsFunc(c.Target.Tables, func(tm *TableMap) bool { return tm.Matches(name) }) {
				errs = append(errs, fmt.Errorf("table %q: target %s maps no such table (known: %s)", name, c.Target.Name, strings.Join(c.Target.TableNames(), ", ")))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reconcile config: %w", err)
	}
	return nil
}

// Matches reports whether name designates this table: its source or target
// name, qualified (schema.table) or bare.
func (tm *TableMap) Matches(name string) bool {
	return name == tm.Source || name == tm.Target || name == tm.SourceTable || name == tm.TargetTable
}

// TableNames lists the target's tables as "source -> target" (or one name
// when both are the same), for messages that list what a name could be.
func (t *Target) TableNames() []string {
	var out []string
	for _, tm := range t.Tables {
		if tm.Source == tm.Target {
			out = append(out, tm.Source)
		} else {
			out = append(out, tm.Source+" -> "+tm.Target)
		}
	}
	return out
}

// RowDiff kinds.
const (
	DiffMissing = "missing" // in the source (through the mapping), not in the target
	DiffExtra   = "extra"   // in the target, not in the source
	DiffChanged = "changed" // in both, some columns differ
)

// ColumnDiff is one differing column of a changed row (text forms; nil = NULL).
type ColumnDiff struct {
	Column string  `json:"column"`
	Source *string `json:"source"`
	Target *string `json:"target"`
}

// RowDiff is one differing row, identified by its target key.
type RowDiff struct {
	Kind     string            `json:"kind"`
	Key      map[string]string `json:"key"`
	Columns  []ColumnDiff      `json:"columns,omitempty"`
	InFlight bool              `json:"in_flight,omitempty"` // agreed after the target caught up
}

// TableReport is the outcome for one mapped table.
type TableReport struct {
	Target      string    `json:"target"`
	Source      string    `json:"source"`
	Table       string    `json:"table"`
	SourceRows  int64     `json:"source_rows"`
	TargetRows  int64     `json:"target_rows"`
	Differences int       `json:"differences"`
	InFlight    int       `json:"in_flight"`
	Diffs       []RowDiff `json:"diffs,omitempty"`
	Queries     int       `json:"queries"` // SQL statements the comparison ran (both sides)
	// CaughtUp is true when, under Settle, the target's checkpoint passed the
	// source position seen at the start before the re-check (false: Settle
	// expired first, or there was nothing to re-check).
	CaughtUp bool `json:"caught_up,omitempty"`
	// Sequences are the sequences feeding mapped target columns; each one
	// Behind its column's largest value counts as a difference.
	Sequences []SequenceCheck `json:"sequences,omitempty"`
}

type side struct {
	db   DB
	proj string // subquery with _k<i> typed keys and _t<i> text columns
}

type reconciler struct {
	cfg       ReconcileConfig
	tm        *TableMap
	src, dst  side
	nk, ncols int
	keyTypes  []string
	rep       *TableReport
}

// Reconcile compares every selected table of the target, source through the
// mapping against target, by counts, then checksums over key ranges bisected
// down to rows; it never holds more than LeafRows rows of a side in memory.
//
// It returns an error for an invalid configuration (a name in Tables that
// matches no table of the target included), so a typo never passes as "no
// differences": every returned report is a table that was compared.
func Reconcile(ctx context.Context, cfg ReconcileConfig) ([]TableReport, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.LeafRows == 0 {
		cfg.LeafRows = 1000
	}
	if cfg.Fanout == 0 {
		cfg.Fanout = 8
	}
	if cfg.MaxDiffs == 0 {
		cfg.MaxDiffs = 1000
	}
	var out []TableReport
	for _, tm := range cfg.Target.Tables {
		if len(cfg.Tables) > 0 && !slices.ContainsFunc(cfg.Tables, tm.Matches) {
			continue
		}
		if tm.srcCols == nil {
			return nil, fmt.Errorf("reconcile %s: mapping not validated", tm.Source)
		}
		r := &reconciler{cfg: cfg, tm: tm, rep: &TableReport{Target: cfg.Target.Name, Source: tm.Source, Table: tm.Target}}
		if err := r.run(ctx); err != nil {
			return nil, fmt.Errorf("reconcile %s -> %s: %w", tm.Source, tm.Target, err)
		}
		out = append(out, *r.rep)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("reconcile target %s: no table compared", cfg.Target.Name)
	}
	return out, nil
}

func textLike(typ string) bool {
	return typ == "text" || strings.HasPrefix(typ, "character") || typ == "citext" || typ == "name"
}

func (r *reconciler) run(ctx context.Context) error {
	tm := r.tm
	r.nk, r.ncols = len(tm.Key), len(tm.Columns)
	var sp, tp []string
	for i, c := range tm.Columns {
		typ := tm.tgtTypes[c.Name]
		if i < r.nk {
			coll := ""
			if textLike(typ) {
				coll = ` COLLATE "C"`
			}
			r.keyTypes = append(r.keyTypes, typ)
			sp = append(sp, fmt.Sprintf("((%s)::%s)%s AS _k%d", c.Expr, typ, coll, i))
			tp = append(tp, fmt.Sprintf("t.%s%s AS _k%d", quoteIdent(c.Name), coll, i))
		}
		sp = append(sp, fmt.Sprintf("((%s)::%s)::text AS _t%d", c.Expr, typ, i))
		tp = append(tp, fmt.Sprintf("t.%s::text AS _t%d", quoteIdent(c.Name), i))
	}
	srcWhere := ""
	if tm.Where != "" {
		srcWhere = " WHERE (" + tm.Where + ")"
	}
	r.src = side{db: r.cfg.Source, proj: fmt.Sprintf("(SELECT %s FROM %s AS r%s) AS s", strings.Join(sp, ", "), tm.qSource(), srcWhere)}
	tgtWhere := ""
	if tm.Delete == DeleteSoft {
		if tm.softValue == "true" {
			tgtWhere = fmt.Sprintf(" WHERE t.%s IS NOT TRUE", quoteIdent(tm.SoftColumn))
		} else {
			tgtWhere = fmt.Sprintf(" WHERE t.%s IS NULL", quoteIdent(tm.SoftColumn))
		}
	}
	r.dst = side{db: r.cfg.Dest, proj: fmt.Sprintf("(SELECT %s FROM %s AS t%s) AS s", strings.Join(tp, ", "), tm.qTarget(), tgtWhere)}
	var startLSN string
	if r.cfg.Settle > 0 {
		if err := r.cfg.Source.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&startLSN); err != nil {
			return err
		}
	}
	sc, ss, err := r.sum(ctx, r.src, nil, nil)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	tc, ts, err := r.sum(ctx, r.dst, nil, nil)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	r.rep.SourceRows, r.rep.TargetRows = sc, tc
	if sc != tc || ss != ts {
		if err := r.compare(ctx, nil, nil, sc, tc); err != nil {
			return err
		}
	}
	if r.rep.Differences > 0 && r.cfg.Settle > 0 {
		if err := r.recheck(ctx, startLSN); err != nil {
			return err
		}
	}
	if !r.cfg.SkipSequences {
		return r.sequences(ctx)
	}
	return nil
}

// rangeCond returns the predicate lo <= key < hi and its arguments.
func (r *reconciler) rangeCond(lo, hi []string, argBase int) (string, []any) {
	var conds []string
	var args []any
	tuple := func(vals []string) string {
		var ps []string
		for i, v := range vals {
			args = append(args, v)
			ps = append(ps, fmt.Sprintf("$%d::%s", argBase+len(args), r.keyTypes[i]))
		}
		return "(" + strings.Join(ps, ", ") + ")"
	}
	var ks []string
	for i := 0; i < r.nk; i++ {
		ks = append(ks, fmt.Sprintf("_k%d", i))
	}
	kt := "(" + strings.Join(ks, ", ") + ")"
	if r.nk == 1 {
		kt = ks[0]
	}
	one := func(vals []string) string {
		if r.nk == 1 {
			args = append(args, vals[0])
			return fmt.Sprintf("$%d::%s", argBase+len(args), r.keyTypes[0])
		}
		return tuple(vals)
	}
	if lo != nil {
		conds = append(conds, kt+" >= "+one(lo))
	}
	if hi != nil {
		conds = append(conds, kt+" < "+one(hi))
	}
	if len(conds) == 0 {
		return "true", nil
	}
	return strings.Join(conds, " AND "), args
}

func (r *reconciler) rowText() string {
	var ts []string
	for i := 0; i < r.ncols; i++ {
		ts = append(ts, fmt.Sprintf("_t%d", i))
	}
	return "ROW(" + strings.Join(ts, ", ") + ")::text"
}

func (r *reconciler) keyOrder() string {
	var ks []string
	for i := 0; i < r.nk; i++ {
		ks = append(ks, fmt.Sprintf("_k%d", i))
	}
	return strings.Join(ks, ", ")
}

func (r *reconciler) sum(ctx context.Context, s side, lo, hi []string) (int64, string, error) {
	cond, args := r.rangeCond(lo, hi, 0)
	q := fmt.Sprintf("SELECT count(*), coalesce(sum(('x' || substr(md5(%s), 1, 15))::bit(60)::bigint::numeric), 0)::text FROM %s WHERE %s",
		r.rowText(), s.proj, cond)
	r.rep.Queries++
	var n int64
	var sum string
	err := s.db.QueryRow(ctx, q, args...).Scan(&n, &sum)
	return n, sum, err
}

func (r *reconciler) compare(ctx context.Context, lo, hi []string, sc, tc int64) error {
	if max(sc, tc) <= r.cfg.LeafRows {
		return r.leaf(ctx, lo, hi)
	}
	s := r.src
	n := sc
	if tc > sc {
		s, n = r.dst, tc
	}
	step := (n + int64(r.cfg.Fanout) - 1) / int64(r.cfg.Fanout)
	cond, args := r.rangeCond(lo, hi, 0)
	var ks []string
	for i := 0; i < r.nk; i++ {
		ks = append(ks, fmt.Sprintf("_t%d", i))
	}
	q := fmt.Sprintf("SELECT %s FROM (SELECT %s, row_number() OVER (ORDER BY %s) AS rn FROM %s WHERE %s) b WHERE rn > 1 AND rn %% %d = 1 ORDER BY rn",
		strings.Join(ks, ", "), strings.Join(ks, ", "), r.keyOrder(), s.proj, cond, step)
	r.rep.Queries++
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	bounds, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) ([]string, error) {
		vals := make([]*string, r.nk)
		ptrs := make([]any, r.nk)
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := row.Scan(ptrs...); err != nil {
			return nil, err
		}
		out := make([]string, r.nk)
		for i, v := range vals {
			if v != nil {
				out[i] = *v
			}
		}
		return out, nil
	})
	if err != nil {
		return err
	}
	edges := append(append([][]string{lo}, bounds...), hi)
	for i := 0; i+1 < len(edges); i++ {
		a, b := edges[i], edges[i+1]
		sc, ss, err := r.sum(ctx, r.src, a, b)
		if err != nil {
			return err
		}
		tc, ts, err := r.sum(ctx, r.dst, a, b)
		if err != nil {
			return err
		}
		if sc == tc && ss == ts {
			continue
		}
		if len(edges) == 2 && max(sc, tc) > r.cfg.LeafRows {
			// could not split (duplicate keys): compare rows anyway
			if err := r.leaf(ctx, a, b); err != nil {
				return err
			}
			continue
		}
		if err := r.compare(ctx, a, b, sc, tc); err != nil {
			return err
		}
	}
	return nil
}

type leafRow struct {
	key  []string
	vals []*string
}

func (r *reconciler) fetch(ctx context.Context, s side, cond string, args []any) (map[string]leafRow, []string, error) {
	var ts []string
	for i := 0; i < r.ncols; i++ {
		ts = append(ts, fmt.Sprintf("_t%d", i))
	}
	q := fmt.Sprintf("SELECT %s FROM %s WHERE %s ORDER BY %s", strings.Join(ts, ", "), s.proj, cond, r.keyOrder())
	r.rep.Queries++
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	out := map[string]leafRow{}
	var order []string
	for rows.Next() {
		vals := make([]*string, r.ncols)
		ptrs := make([]any, r.ncols)
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, err
		}
		lr := leafRow{vals: vals}
		for i := 0; i < r.nk; i++ {
			v := "NULL"
			if vals[i] != nil {
				v = *vals[i]
			}
			lr.key = append(lr.key, v)
		}
		k := strings.Join(lr.key, "\x00")
		if _, dup := out[k]; !dup {
			order = append(order, k)
		}
		out[k] = lr
	}
	return out, order, rows.Err()
}

func (r *reconciler) leaf(ctx context.Context, lo, hi []string) error {
	cond, args := r.rangeCond(lo, hi, 0)
	srcRows, srcOrder, err := r.fetch(ctx, r.src, cond, args)
	if err != nil {
		return fmt.Errorf("source rows: %w", err)
	}
	dstRows, dstOrder, err := r.fetch(ctx, r.dst, cond, args)
	if err != nil {
		return fmt.Errorf("target rows: %w", err)
	}
	for _, k := range srcOrder {
		s := srcRows[k]
		d, ok := dstRows[k]
		if !ok {
			r.add(RowDiff{Kind: DiffMissing, Key: r.keyMap(s.key)})
			continue
		}
		if cols := r.colDiffs(s.vals, d.vals); len(cols) > 0 {
			r.add(RowDiff{Kind: DiffChanged, Key: r.keyMap(s.key), Columns: cols})
		}
	}
	if r.tm.Delete != DeleteIgnore {
		for _, k := range dstOrder {
			if _, ok := srcRows[k]; !ok {
				r.add(RowDiff{Kind: DiffExtra, Key: r.keyMap(dstRows[k].key)})
			}
		}
	}
	return nil
}

func (r *reconciler) colDiffs(a, b []*string) []ColumnDiff {
	var out []ColumnDiff
	for i := range a {
		if (a[i] == nil) != (b[i] == nil) || a[i] != nil && *a[i] != *b[i] {
			out = append(out, ColumnDiff{Column: r.tm.Columns[i].Name, Source: a[i], Target: b[i]})
		}
	}
	return out
}

func (r *reconciler) keyMap(key []string) map[string]string {
	m := map[string]string{}
	for i, k := range r.tm.Key {
		m[k] = key[i]
	}
	return m
}

func (r *reconciler) add(d RowDiff) {
	r.rep.Differences++
	if len(r.rep.Diffs) < r.cfg.MaxDiffs {
		r.rep.Diffs = append(r.rep.Diffs, d)
	}
}

// recheck waits until the target's checkpoint passes the source WAL position
// seen at the start (or Settle expires), then re-reads each differing row:
// those that now agree were in flight, not drift.
func (r *reconciler) recheck(ctx context.Context, startLSN string) error {
	if r.cfg.OnSettle != nil {
		r.cfg.OnSettle(r.tm.Source, r.rep.Differences)
	}
	deadline := time.Now().Add(r.cfg.Settle)
	for time.Now().Before(deadline) {
		var caught bool
		err := r.cfg.Dest.QueryRow(ctx, `SELECT coalesce(bool_or(lsn >= $2::pg_lsn), false) FROM shadowcube.applied WHERE target = $1`,
			r.cfg.Target.Name, startLSN).Scan(&caught)
		if err != nil {
			break
		}
		if caught {
			r.rep.CaughtUp = true
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	var kept []RowDiff
	r.rep.Differences -= len(r.rep.Diffs)
	for _, d := range r.rep.Diffs {
		key := make([]string, r.nk)
		for i, k := range r.tm.Key {
			key[i] = d.Key[k]
		}
		cond, args := r.rangeCond(key, nil, 0)
		cond = strings.Replace(cond, ">=", "=", 1)
		s, _, err := r.fetch(ctx, r.src, cond, args)
		if err != nil {
			return err
		}
		t, _, err := r.fetch(ctx, r.dst, cond, args)
		if err != nil {
			return err
		}
		k := strings.Join(key, "\x00")
		sr, sok := s[k]
		tr, tok := t[k]
		agree := sok == tok && (!sok || len(r.colDiffs(sr.vals, tr.vals)) == 0)
		if agree {
			d.InFlight = true
			r.rep.InFlight++
		} else {
			r.rep.Differences++
		}
		kept = append(kept, d)
	}
	r.rep.Diffs = kept
	return nil
}
