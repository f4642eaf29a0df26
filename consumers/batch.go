package consumers

import (
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
