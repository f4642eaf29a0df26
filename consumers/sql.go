package consumers

import (
	"fmt"
	"strings"
)

// ctColumn carries each row's source commit time into the statements (soft deletes).
const ctColumn = "shadowcube$ct"

func (tm *TableMap) qTarget() string {
	return quoteIdent(tm.TargetSchema) + "." + quoteIdent(tm.TargetTable)
}

func (tm *TableMap) qSource() string {
	return quoteIdent(tm.SourceSchema) + "." + quoteIdent(tm.SourceTable)
}

// recordset is the FROM item exposing the source row's columns, typed, to
// the mapping's expressions: values travel as exact PostgreSQL text in a
// JSON array ($1) and are cast with the source type's input function.
// json_to_recordset rather than jsonb_to_recordset: same result (every value
// is a JSON string read as text), but it skips building a jsonb value and
// measured twice as fast on 5,000-row batches.
func recordset(tm *TableMap) string { return recordsetOf(tm, "$1", false) }

// ordColumn carries each row's position in its statement's JSON array, for
// statements that report which rows they could not apply.
const ordColumn = "shadowcube$ord"

// recordsetOf is recordset over parameter param; with ord it also exposes
// r."shadowcube$ord" (int).
func recordsetOf(tm *TableMap, param string, ord bool) string {
	var sel, def strings.Builder
	for _, c := range tm.srcCols {
		q := quoteIdent(c.Name)
		fmt.Fprintf(&sel, "r.%s::%s AS %s, ", q, c.Type, q)
		fmt.Fprintf(&def, "%s text, ", q)
	}
	if ord {
		q := quoteIdent(ordColumn)
		fmt.Fprintf(&sel, "r.%s::int AS %s, ", q, q)
		fmt.Fprintf(&def, "%s text, ", q)
	}
	q := quoteIdent(ctColumn)
	fmt.Fprintf(&sel, "r.%s AS %s", q, q)
	fmt.Fprintf(&def, "%s text", q)
	return fmt.Sprintf("(SELECT %s FROM json_to_recordset(%s::json) AS r(%s)) AS r", sel.String(), param, def.String())
}

func (tm *TableMap) keyList() string {
	q := make([]string, len(tm.Key))
	for i, k := range tm.Key {
		q[i] = quoteIdent(k)
	}
	return strings.Join(q, ", ")
}

// upsertSQL inserts or updates the mapped rows; target columns in excluded
// (their source TOAST value was not sent) are left as they are.
func (tm *TableMap) upsertSQL(excluded map[string]bool) string {
	var cols, exprs, sets []string
	for i, c := range tm.Columns {
		if i >= len(tm.Key) && excluded[c.Name] {
			continue
		}
		cols = append(cols, quoteIdent(c.Name))
		exprs = append(exprs, "("+c.Expr+")")
		if i >= len(tm.Key) {
			sets = append(sets, fmt.Sprintf("%s = EXCLUDED.%s", quoteIdent(c.Name), quoteIdent(c.Name)))
		}
	}
	if tm.Delete == DeleteSoft {
		cols = append(cols, quoteIdent(tm.SoftColumn))
		exprs = append(exprs, tm.softClear)
		sets = append(sets, fmt.Sprintf("%s = EXCLUDED.%s", quoteIdent(tm.SoftColumn), quoteIdent(tm.SoftColumn)))
	}
	where := ""
	if tm.Where != "" {
		where = " WHERE (" + tm.Where + ")"
	}
	action := "DO NOTHING"
	if len(sets) > 0 {
		action = "DO UPDATE SET " + strings.Join(sets, ", ")
	}
	// OVERRIDING SYSTEM VALUE: the source's value wins over a GENERATED
	// ALWAYS identity column of the cube (ignored for other columns)
	return fmt.Sprintf("INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s%s ON CONFLICT (%s) %s",
		tm.qTarget(), strings.Join(cols, ", "), strings.Join(exprs, ", "), recordset(tm), where, tm.keyList(), action)
}

// removeSQL removes (by the delete policy) the target rows whose key the
// source rows in $1 compute, limited to rows matching cond when not empty.
// It returns "" under the ignore policy.
func (tm *TableMap) removeSQL(cond string) string {
	var keys, match []string
	for i, k := range tm.Key {
		keys = append(keys, fmt.Sprintf("(%s) AS %s", tm.Columns[i].Expr, quoteIdent(k)))
		match = append(match, fmt.Sprintf("t.%s = d.%s", quoteIdent(k), quoteIdent(k)))
	}
	where := ""
	if cond != "" {
		where = " WHERE " + cond
	}
	switch tm.Delete {
	case DeleteHard:
		return fmt.Sprintf("DELETE FROM %s AS t USING (SELECT %s FROM %s%s) AS d WHERE %s",
			tm.qTarget(), strings.Join(keys, ", "), recordset(tm), where, strings.Join(match, " AND "))
	case DeleteSoft:
		return fmt.Sprintf("UPDATE %s AS t SET %s = d.\"shadowcube$mark\" FROM (SELECT %s, %s AS \"shadowcube$mark\" FROM %s%s) AS d WHERE %s",
			tm.qTarget(), quoteIdent(tm.SoftColumn), strings.Join(keys, ", "), tm.softValue, recordset(tm), where, strings.Join(match, " AND "))
	}
	return ""
}

func (tm *TableMap) deleteSQL() string { return tm.removeSQL("") }

// filteredOutSQL removes target rows whose new source version fails the
// where filter (the row left the synced subset).
func (tm *TableMap) filteredOutSQL() string {
	if tm.Where == "" {
		return ""
	}
	return tm.removeSQL("NOT coalesce((" + tm.Where + "), false)")
}

// truncateSQL empties the mapped target table by the delete policy.
func (tm *TableMap) truncateSQL(restartIdentity bool) string {
	switch tm.Delete {
	case DeleteHard:
		s := "TRUNCATE " + tm.qTarget()
		if restartIdentity {
			s += " RESTART IDENTITY"
		}
		return s
	case DeleteSoft:
		v := "true"
		if tm.softValue != "true" {
			v = "now()"
		}
		return fmt.Sprintf("UPDATE %s SET %s = %s WHERE %s IS DISTINCT FROM %s", tm.qTarget(), quoteIdent(tm.SoftColumn), v, quoteIdent(tm.SoftColumn), v)
	}
	return ""
}

// updateInPlaceSQL updates, in place, the target rows of the source rows in
// $1 (each with its ordinal) whose new version passes the where filter. It
// sets the columns the source sent; target columns in excluded
// (computed from unchanged TOAST values) keep the value the target holds, as
// PostgreSQL's own subscriber does. Nothing goes through an insert, so NOT
// NULL and CHECK constraints of the left-alone columns see the stored value.
// The statement returns the ordinals of rows that passed the filter but have
// no target row: the caller completes those from the source.
func (tm *TableMap) updateInPlaceSQL(excluded map[string]bool) string {
	return tm.inPlaceSQL(excluded, false)
}

// rekeySQL is updateInPlaceSQL for one source row whose key changed: the
// target row is found by the old key ($2, the old key columns) and moved to
// the new key ($1) in place. It returns ordinal 0 when the new version passes
// the filter but the target has no row under the old key.
func (tm *TableMap) rekeySQL(excluded map[string]bool) string {
	return tm.inPlaceSQL(excluded, true)
}

func (tm *TableMap) inPlaceSQL(excluded map[string]bool, rekey bool) string {
	var sel, sets, match, old []string
	for i, c := range tm.Columns {
		q := quoteIdent(c.Name)
		key := i < len(tm.Key)
		if !key && excluded[c.Name] {
			continue
		}
		sel = append(sel, fmt.Sprintf("(%s) AS %s", c.Expr, q))
		switch {
		case key && rekey:
			sets = append(sets, fmt.Sprintf("%s = d.%s", q, q))
			old = append(old, fmt.Sprintf("(%s) AS %s", c.Expr, q))
			match = append(match, fmt.Sprintf("t.%s = o.%s", q, q))
		case key:
			match = append(match, fmt.Sprintf("t.%s = d.%s", q, q))
		default:
			sets = append(sets, fmt.Sprintf("%s = d.%s", q, q))
		}
	}
	if tm.Delete == DeleteSoft {
		sets = append(sets, fmt.Sprintf("%s = %s", quoteIdent(tm.SoftColumn), tm.softClear))
	}
	where := ""
	if tm.Where != "" {
		where = " WHERE (" + tm.Where + ")"
	}
	ord := quoteIdent(ordColumn)
	from := "d"
	with := ""
	if rekey {
		from = "d, o"
		with = fmt.Sprintf("o AS (SELECT %s FROM %s), ", strings.Join(old, ", "), recordsetOf(tm, "$2", false))
	}
	u := fmt.Sprintf("UPDATE %s AS t SET %s FROM %s WHERE %s RETURNING d.%s", tm.qTarget(), strings.Join(sets, ", "), from, strings.Join(match, " AND "), ord)
	if len(sets) == 0 {
		// nothing to set: only find the rows the target lacks
		u = fmt.Sprintf("SELECT d.%s FROM %s AS t, %s WHERE %s", ord, tm.qTarget(), from, strings.Join(match, " AND "))
	}
	return fmt.Sprintf("WITH %sd AS (SELECT %s, r.%s AS %s FROM %s%s), "+
		"u AS (%s) "+
		"SELECT d.%s FROM d WHERE d.%s NOT IN (SELECT %s FROM u)",
		with, strings.Join(sel, ", "), ord, ord, recordsetOf(tm, "$1", true), where, u,
		ord, ord, ord)
}

// keyMatch is the key expressions of the source rows in param as d.<key>
// columns, and the condition matching target rows t to them.
func (tm *TableMap) keyMatch(param string) (sub, cond string) {
	var keys, match []string
	for i, k := range tm.Key {
		keys = append(keys, fmt.Sprintf("(%s) AS %s", tm.Columns[i].Expr, quoteIdent(k)))
		match = append(match, fmt.Sprintf("t.%s = d.%s", quoteIdent(k), quoteIdent(k)))
	}
	return fmt.Sprintf("(SELECT %s FROM %s) AS d", strings.Join(keys, ", "), recordsetOf(tm, param, false)), strings.Join(match, " AND ")
}

// staleNewKeySQL deletes a target row already holding the new key ($1) of a
// re-keyed source row (old key $2): the source enforces the key, so such a
// row is left over (kept by the ignore or soft-delete policy, or re-keyed
// away later in the same source transaction and completed from the source
// then).
func (tm *TableMap) staleNewKeySQL() string {
	sub, cond := tm.keyMatch("$1")
	osub, ocond := tm.keyMatch("$2")
	return fmt.Sprintf("DELETE FROM %s AS t USING %s WHERE %s AND NOT EXISTS (SELECT 1 FROM %s WHERE %s)",
		tm.qTarget(), sub, cond, osub, ocond)
}

// rekeyedOutSQL deletes the target row under the old key ($2) of a re-keyed
// source row whose new version ($1) fails the where filter.
func (tm *TableMap) rekeyedOutSQL() string {
	if tm.Where == "" {
		return ""
	}
	sub, cond := tm.keyMatch("$2")
	return fmt.Sprintf("DELETE FROM %s AS t USING %s WHERE %s AND NOT coalesce((SELECT (%s) FROM %s), false)",
		tm.qTarget(), sub, cond, tm.Where, recordsetOf(tm, "$1", false))
}
