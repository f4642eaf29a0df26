package consumers

import (
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/heal7/shadowcube/internal/jsonenc"
	"github.com/heal7/shadowcube/schemas"
)

type stmt struct {
	sql  string
	args []any
	// fill, when set, makes the statement run on its own: it returns the
	// ordinals (into fill.evs) of source rows the target cannot complete
	// (an empty sql: all of them); those are re-read from the source and
	// upserted whole before the next statement runs.
	fill *fill
	// copy, when set, is a run of full-row upserts the applier applies with
	// COPY (setapply.go); sql is empty.
	copy *copyRun
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
	src      []schemas.Row          // gUpsert: the source row of each row
	cts      []time.Time            // copy runs: the commit time of each row (rows hold nil)
	copy     *copyPlan              // gUpsert of a plainly mapped table: applied with COPY (setapply.go, staging.go)
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

// stmtBatch turns the change events of consecutive units into the SQL of one
// target transaction, keeping order: consecutive changes of the same kind to
// the same table share one statement; a row changed twice in such a run keeps
// only its newest version. It does no I/O: the applier runs its statements
// (and completes the fill ones from the source, see Applier.complete).
//
// Updates whose new version carries every mapped value are upserts. An
// update with unchanged TOAST values (not sent by the source) never goes
// through an insert: it updates the target row in place, setting only what
// the event carries (a key change moves the row to its new key in place).
// Where the target cannot supply the missing values (it lacks the row, the
// row enters the where filter, the filter or a mapped expression reads an
// unchanged value together with sent ones) the row is re-read from the
// source by key (see Applier.reselect).
type stmtBatch struct {
	target  *Target
	log     *slog.Logger // warns of source tables that changed shape
	out     []stmt
	g       *group // the run being grouped into one statement
	count   int    // changes the statements apply
	noCopy  bool   // apply upsert runs with INSERT … ON CONFLICT only (no COPY)
	minCopy int    // shortest run sent with COPY (setapply.go; 0: 1)
	plans   map[*TableMap]*copyPlan
}

// newStmtBatch returns an empty batch for target (validated by
// Mapping.Validate); log may be nil.
func newStmtBatch(target *Target, log *slog.Logger) *stmtBatch {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &stmtBatch{target: target, log: log}
}

// statements returns the statements of the units added so far, in order,
// and the number of changes they apply.
func (b *stmtBatch) statements() ([]stmt, int) {
	b.flush()
	return b.out, b.count
}

// flush closes the current group, turning it into its statements.
func (b *stmtBatch) flush() {
	g := b.g
	b.g = nil
	if g == nil || len(g.rows) == 0 {
		return
	}
	if g.copy != nil {
		if len(g.src) >= max(b.minCopy, 1) {
			b.out = append(b.out, stmt{copy: &copyRun{tm: g.tm, plan: g.copy, rows: g.src, cts: g.cts}})
			return
		}
		// a short run: one more statement of the pipelined batch
		for i, r := range g.src {
			g.rows[i] = rowJSON(g.tm, r, g.cts[i])
		}
	}
	param := jsonArray(g.rows)
	switch g.kind {
	case gUpsert:
		b.out = append(b.out, stmt{sql: g.tm.upsertSQL(g.excluded), args: []any{param}})
		if s := g.tm.filteredOutSQL(); s != "" {
			b.out = append(b.out, stmt{sql: s, args: []any{param}})
		}
	case gInPlace:
		b.out = append(b.out, stmt{sql: g.tm.updateInPlaceSQL(g.excluded), args: []any{param}, fill: &fill{tm: g.tm, evs: g.evs}})
		if s := g.tm.filteredOutSQL(); s != "" {
			b.out = append(b.out, stmt{sql: s, args: []any{param}})
		}
	default:
		if s := g.tm.deleteSQL(); s != "" {
			b.out = append(b.out, stmt{sql: s, args: []any{param}})
		}
	}
}

// add adds row (of ev) to the current group, starting a new group when the
// table, kind or excluded columns differ.
func (b *stmtBatch) add(tm *TableMap, kind groupKind, excluded map[string]bool, ev *schemas.ChangeEvent, row schemas.Row, key string) {
	sig := ""
	if kind != gRemove {
		sig = excludedSig(excluded)
	}
	if g := b.g; g == nil || g.tm != tm || g.kind != kind || g.sig != sig || (key == "" && len(g.rows) > 0) {
		b.flush()
		b.g = &group{tm: tm, kind: kind, excluded: excluded, sig: sig, keys: map[string]int{}}
		if kind == gUpsert && len(excluded) == 0 {
			b.g.copy = b.copyPlanOf(tm)
		}
	}
	g := b.g
	var js []byte
	if g.copy != nil {
		// COPY reads the source row; the JSON is built for short runs only
	} else if kind == gInPlace {
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
					g.rows[i], g.src[i] = js, row
					if g.copy != nil {
						g.cts[i] = ev.CommitTime
					}
				}
				return
			}
			// with a filter the older version may matter (it may have been
			// in the subset, then left it): keep both, in order
			b.flush()
			b.g = &group{tm: tm, kind: kind, excluded: excluded, sig: sig, keys: map[string]int{}}
			g = b.g
			if kind == gInPlace {
				js = rowJSONOrd(tm, row, ev.CommitTime, 0)
			}
		}
		g.keys[key] = len(g.rows)
	}
	g.rows = append(g.rows, js)
	if kind == gUpsert {
		g.src = append(g.src, row)
		if g.copy != nil {
			g.cts = append(g.cts, ev.CommitTime)
		}
	}
	if kind == gInPlace {
		g.evs = append(g.evs, ev)
	}
}

// single appends a statement of its own (after the current group).
func (b *stmtBatch) single(st stmt) {
	b.flush()
	b.out = append(b.out, st)
}

// addUnit adds the events of one unit (a source transaction or a snapshot
// row), in order.
func (b *stmtBatch) addUnit(events []*schemas.ChangeEvent) {
	// target tables truncated by the current source TRUNCATE statement
	// (cdc publishes one event per table, consecutive): a change in between
	// ends it, so a later TRUNCATE of the same table in the unit applies
	truncated := map[string]bool{}
	for _, ev := range events {
		if ev.Op != schemas.OpTruncate && ev.Op != schemas.OpSchema && len(truncated) > 0 {
			truncated = map[string]bool{}
		}
		switch ev.Op {
		case schemas.OpInsert, schemas.OpUpdate, schemas.OpSnapshot:
			tm := b.target.table(ev.Schema, ev.Table)
			if tm == nil {
				continue
			}
			b.count++
			rekey := ev.Op == schemas.OpUpdate && ev.Old != nil && keyChanged(tm, ev)
			excluded := excludedFor(tm, ev.Unchanged)
			whereReads := len(ev.Unchanged) > 0 && slices.ContainsFunc(tm.whereDeps, func(c string) bool { return slices.Contains(ev.Unchanged, c) })
			if ev.Op != schemas.OpUpdate || len(excluded) == 0 && !whereReads {
				// the event carries every value the mapping reads
				if rekey {
					// the old key row goes whatever the delete policy: the row was re-keyed, not deleted
					b.add(hardDeleteView(tm), gRemove, nil, ev, ev.Old, rowKey(tm, ev, ev.Old))
				}
				b.add(tm, gUpsert, nil, ev, ev.New, rowKey(tm, ev, ev.New))
				continue
			}
			if whereReads || mixedRead(tm, ev, excluded, rekey) || rekey && tm.alwaysKey {
				// the target cannot compute the row: complete it from the source
				if rekey {
					b.add(hardDeleteView(tm), gRemove, nil, ev, ev.Old, rowKey(tm, ev, ev.Old))
				}
				b.single(stmt{fill: &fill{tm: tm, evs: []*schemas.ChangeEvent{ev}}})
				continue
			}
			if rekey {
				nw := jsonArray([][]byte{rowJSONOrd(tm, ev.New, ev.CommitTime, 0)})
				old := jsonArray([][]byte{rowJSON(tm, ev.Old, ev.CommitTime)})
				b.single(stmt{sql: tm.staleNewKeySQL(), args: []any{nw, old}})
				b.out = append(b.out, stmt{sql: tm.rekeySQL(excluded), args: []any{nw, old}, fill: &fill{tm: tm, evs: []*schemas.ChangeEvent{ev}}})
				if s := tm.rekeyedOutSQL(); s != "" {
					b.out = append(b.out, stmt{sql: s, args: []any{nw, old}})
				}
				continue
			}
			b.add(tm, gInPlace, excluded, ev, ev.New, rowKey(tm, ev, ev.New))
		case schemas.OpDelete:
			tm := b.target.table(ev.Schema, ev.Table)
			if tm == nil || tm.Delete == DeleteIgnore {
				continue
			}
			b.count++
			row := ev.Old
			if row == nil {
				row = ev.New
			}
			b.add(tm, gRemove, nil, ev, row, rowKey(tm, ev, row))
		case schemas.OpTruncate:
			b.truncate(ev, truncated)
		case schemas.OpSchema:
			if tm := b.target.table(ev.Schema, ev.Table); tm != nil {
				b.log.Warn("source table changed shape; restart sync to re-validate the mapping if mapped columns changed",
					"table", ev.Schema+"."+ev.Table, "lsn", ev.CommitLSN.String())
			}
		}
	}
}

// truncate adds the statements of a truncate event; truncated holds the
// target tables its source statement has truncated already.
func (b *stmtBatch) truncate(ev *schemas.ChangeEvent, truncated map[string]bool) {
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
		tm := b.target.table(s, tb)
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
					if om := b.target.table(s, tb); om != nil && om.Delete == DeleteHard && !truncated[om.qTarget()] {
						truncated[om.qTarget()] = true
						hard = append(hard, om.qTarget())
					}
				}
			}
			continue
		}
		if sql := tm.truncateSQL(restart); sql != "" {
			b.count++
			b.single(stmt{sql: sql})
		}
	}
	if len(hard) > 0 {
		sql := "TRUNCATE " + strings.Join(hard, ", ")
		if restart {
			sql += " RESTART IDENTITY"
		}
		b.count++
		b.single(stmt{sql: sql})
	}
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
