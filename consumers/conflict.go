package consumers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heal7/shadowcube/schemas"
)

// Conflicts of two-way sync.
//
// During a rollout the same row can be written on both sides within the sync
// lag. A table with a conflict policy (mapping field conflict: legacy-wins,
// cube-wins or newest) has each change checked, inside the apply
// transaction, against the target's current row (locked FOR UPDATE):
//
//   - insert: a conflict when the target already holds the key with other
//     values;
//   - update: a conflict when the target row differs both from the change's
//     old values (mapped through the table's expressions) and from its new
//     values, or is gone (unless the table has a where filter);
//   - delete: a conflict when the target row differs from the old values.
//
// The old values need REPLICA IDENTITY FULL on the source table: Validate
// fails at start-up without it, and, for newest, without
// track_commit_timestamp = on in the target database (the target row's
// commit time is pg_xact_commit_timestamp(xmin)). Key-changing updates,
// snapshot rows and changes with unchanged TOAST values in their mapped
// columns are applied without the check (their old row cannot be compared
// exactly).
//
// The winner is the side the policy names; under newest the later commit
// time, legacy on a tie or when the target row's commit time is unknown, and
// the delete when a delete races an update (the deleted row's time is gone,
// so only "the delete wins" lets both directions agree).
// When the source side wins the change is applied as usual; otherwise it is
// dropped and the target keeps its row. Later changes of the same row in the
// same batch follow the first decision. Every conflict is written, in the
// same target transaction, to shadowcube.sync_conflicts of the target
// database (table, key, both versions, winner, both commit times) and counted
// in shadowcube_sync_conflicts_total{table,winner}: none is silent. Each
// direction records the conflicts it sees, so a conflict written on both
// sides at once is usually recorded twice, once by each direction, with the
// same winner.

// ConflictTable is where conflicts are recorded, in each target database.
const ConflictTable = "shadowcube.sync_conflicts"

const conflictDDL = `CREATE SCHEMA IF NOT EXISTS shadowcube;
CREATE TABLE IF NOT EXISTS shadowcube.sync_conflicts (
  id bigserial PRIMARY KEY,
  target text NOT NULL,
  source_table text NOT NULL,
  target_table text NOT NULL,
  op text NOT NULL,
  key jsonb NOT NULL,
  source_version jsonb,
  target_version jsonb,
  policy text NOT NULL,
  winner text NOT NULL,
  source_commit_time timestamptz,
  target_commit_time timestamptz,
  source_lsn pg_lsn,
  detected_at timestamptz NOT NULL DEFAULT now())`

// EnsureConflictTable creates shadowcube.sync_conflicts in a target database.
func EnsureConflictTable(ctx context.Context, db DB) error {
	if _, err := db.Exec(ctx, conflictDDL); err != nil {
		return fmt.Errorf("create %s: %w", ConflictTable, err)
	}
	return nil
}

// Conflict is one recorded conflict.
type Conflict struct {
	Target, SourceTable, TargetTable, Op string
	Key                                  string // JSON object of the target key
	SourceVersion, TargetVersion         string // JSON of the mapped rows ("" when absent: deleted)
	Policy, Winner                       string
	SourceCommit, TargetCommit           time.Time
	DetectedAt                           time.Time
}

// ReadConflicts returns the conflicts recorded in a target database, oldest first.
func ReadConflicts(ctx context.Context, db DB) ([]Conflict, error) {
	rows, err := db.Query(ctx, `SELECT target, source_table, target_table, op, key::text, coalesce(source_version::text, ''),
  coalesce(target_version::text, ''), policy, winner, coalesce(source_commit_time, 'epoch'), coalesce(target_commit_time, 'epoch'), detected_at
FROM shadowcube.sync_conflicts ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ConflictTable, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Conflict, error) {
		var c Conflict
		err := r.Scan(&c.Target, &c.SourceTable, &c.TargetTable, &c.Op, &c.Key, &c.SourceVersion, &c.TargetVersion,
			&c.Policy, &c.Winner, &c.SourceCommit, &c.TargetCommit, &c.DetectedAt)
		return c, err
	})
}

// checkConflictSetup is the start-up check of a table with a conflict
// policy: whole old rows from the source, commit times in the target for
// newest, and the detection statement type-checked on zero rows.
func (m *Mapping) checkConflictSetup(ctx context.Context, t *Target, tm *TableMap, src, dst DB) error {
	if tm.Conflict == "" {
		return nil
	}
	merr := func(format string, args ...any) error {
		return mappingError(m.File, tm.ConflictLine, t.Name, tm.Source, "", fmt.Sprintf(format, args...))
	}
	var ident string
	if err := src.QueryRow(ctx, `SELECT relreplident::text FROM pg_class WHERE oid = to_regclass($1)`, tm.qSource()).Scan(&ident); err != nil {
		return fmt.Errorf("read replica identity of %s: %w", tm.Source, err)
	}
	if ident != "f" {
		return merr("conflict %s needs the old row of every change: run ALTER TABLE %s REPLICA IDENTITY FULL in the source database", tm.Conflict, tm.Source)
	}
	if tm.Conflict == ConflictNewest {
		var on string
		if err := dst.QueryRow(ctx, `SHOW track_commit_timestamp`).Scan(&on); err != nil {
			return fmt.Errorf("read track_commit_timestamp of target %s: %w", t.Name, err)
		}
		if on != "on" {
			return merr("conflict newest compares commit times: set track_commit_timestamp = on in the database of target %s (needs a restart)", t.Name)
		}
	}
	tx, err := dst.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, tm.conflictSQL(false), "[]", "[]"); err != nil {
		return merr("conflict check statement: %s", pgMessage(err))
	}
	return nil
}

// mappedObject is a jsonb object of the target's mapped columns computed
// from the rows of recordset param, or from alias's columns when from is "".
func (tm *TableMap) mappedObject(alias string, fromExprs bool) string {
	var parts []string
	for _, c := range tm.Columns {
		v := alias + "." + quoteIdent(c.Name)
		if fromExprs {
			v = fmt.Sprintf("((%s))::%s", c.Expr, tm.tgtTypes[c.Name])
		}
		parts = append(parts, quoteLiteral(c.Name), v)
	}
	return "jsonb_build_object(" + strings.Join(parts, ", ") + ")"
}

// conflictSQL reads the target row a change addresses ($1: old source row,
// $2: new source row, JSON arrays of one row or empty) and compares it with
// both: current version, its commit time (newest), equal to old, equal to
// new. byOld finds the row by the old key (deletes).
func (tm *TableMap) conflictSQL(byOld bool) string {
	var keys, match []string
	for i, k := range tm.Key {
		keys = append(keys, fmt.Sprintf("((%s))::%s AS %s", tm.Columns[i].Expr, tm.tgtTypes[k], quoteIdent(k)))
		match = append(match, "t."+quoteIdent(k))
	}
	keySrc := "$2"
	if byOld {
		keySrc = "$1"
	}
	ts := "NULL::timestamptz"
	if tm.Conflict == ConflictNewest {
		ts = "pg_xact_commit_timestamp(t.xmin)"
	}
	cur := tm.mappedObject("t", false)
	return fmt.Sprintf(`WITH o AS (SELECT %[1]s AS j FROM %[2]s), n AS (SELECT %[1]s AS j FROM %[3]s)
SELECT %[4]s::text, %[5]s, coalesce((SELECT j FROM o) = %[4]s, false), coalesce((SELECT j FROM n) = %[4]s, false)
FROM %[6]s AS t WHERE (%[7]s) = (SELECT %[8]s FROM %[9]s) FOR UPDATE OF t`,
		tm.mappedObject("", true), recordsetOf(tm, "$1", false), recordsetOf(tm, "$2", false),
		cur, ts, tm.qTarget(), strings.Join(match, ", "), strings.Join(keys, ", "), recordsetOf(tm, keySrc, false))
}

// keyObjectSQL computes the target key of a source row ($1) as a JSON object.
func (tm *TableMap) keyObjectSQL() string {
	var parts []string
	for i, k := range tm.Key {
		parts = append(parts, quoteLiteral(k), fmt.Sprintf("((%s))::%s", tm.Columns[i].Expr, tm.tgtTypes[k]))
	}
	return fmt.Sprintf("SELECT jsonb_build_object(%s)::text, (SELECT %s FROM %s)::text FROM %s",
		strings.Join(parts, ", "), tm.mappedObject("", true), recordsetOf(tm, "$1", false), recordsetOf(tm, "$1", false))
}

// hasConflictPolicy reports whether a table of t checks conflicts.
func (t *Target) hasConflictPolicy() bool {
	for _, tm := range t.Tables {
		if tm.Conflict != "" {
			return true
		}
	}
	return false
}

// winner decides a conflict: the side whose version stays.
func (m *Mapping) winner(tm *TableMap, sourceCommit time.Time, targetCommit *time.Time) string {
	switch tm.Conflict {
	case ConflictLegacyWins:
		return SideLegacy
	case ConflictCubeWins:
		return SideCube
	}
	if targetCommit == nil || sourceCommit.Equal(*targetCommit) {
		return SideLegacy
	}
	if targetCommit.After(sourceCommit) {
		return m.TargetSide()
	}
	return m.Source.Side
}

// resolveConflicts checks the events of batch whose table has a conflict
// policy against the target (in tx), records every conflict in tx and
// returns, per unit, the events to apply and the conflicts found (counted by
// the caller once tx committed).
func (a *Applier) resolveConflicts(ctx context.Context, tx pgx.Tx, batch []*txn) ([][]*schemas.ChangeEvent, []Conflict, error) {
	t := a.cfg.Target
	out := make([][]*schemas.ChangeEvent, len(batch))
	if !t.hasConflictPolicy() {
		for i, u := range batch {
			out[i] = u.events
		}
		return out, nil, nil
	}
	var found []Conflict
	decided := map[string]bool{} // table + row key -> the source's changes are applied
	for i, u := range batch {
		keep := make([]*schemas.ChangeEvent, 0, len(u.events))
		for _, ev := range u.events {
			tm := t.table(ev.Schema, ev.Table)
			if tm == nil || tm.Conflict == "" || ev.Op == schemas.OpSnapshot || ev.Op == schemas.OpTruncate || ev.Op == schemas.OpSchema {
				keep = append(keep, ev)
				continue
			}
			row := ev.New
			if ev.Op == schemas.OpDelete {
				row = ev.Old
			}
			rk := rowKey(tm, ev, row)
			if ev.Op == schemas.OpUpdate && (ev.Old == nil || keyChanged(tm, ev)) || rk == "" {
				keep = append(keep, ev)
				continue
			}
			if applyIt, ok := decided[tm.Target+"\x00"+rk]; ok {
				if applyIt {
					keep = append(keep, ev)
				}
				continue
			}
			c, applyIt, err := a.checkConflict(ctx, tx, tm, ev)
			if err != nil {
				return nil, nil, err
			}
			decided[tm.Target+"\x00"+rk] = applyIt
			if c != nil {
				found = append(found, *c)
			}
			if applyIt {
				keep = append(keep, ev)
			}
		}
		out[i] = keep
	}
	return out, found, nil
}

// checkConflict compares one change with the target row; it returns the
// conflict (nil when none) and whether the change is applied.
func (a *Applier) checkConflict(ctx context.Context, tx pgx.Tx, tm *TableMap, ev *schemas.ChangeEvent) (*Conflict, bool, error) {
	oldJSON, newJSON := "[]", "[]"
	if ev.Old != nil && ev.Op != schemas.OpInsert {
		oldJSON = jsonArray([][]byte{rowJSON(tm, ev.Old, ev.CommitTime)})
	}
	if ev.Op != schemas.OpDelete {
		if len(excludedFor(tm, ev.Unchanged)) > 0 {
			return nil, true, nil // the new row is incomplete: applied unchecked (see above)
		}
		newJSON = jsonArray([][]byte{rowJSON(tm, ev.New, ev.CommitTime)})
	}
	if ev.Op == schemas.OpDelete && (ev.Old == nil || tm.Delete == DeleteIgnore) {
		return nil, true, nil // nothing to compare, or the delete changes nothing in the target
	}
	var cur *string
	var ts *time.Time
	var sameOld, sameNew bool
	err := tx.QueryRow(ctx, tm.conflictSQL(ev.Op == schemas.OpDelete), oldJSON, newJSON).Scan(&cur, &ts, &sameOld, &sameNew)
	found := err == nil
	if errors.Is(err, pgx.ErrNoRows) {
		err = nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("conflict check of %s: %w", tm.Target, err)
	}
	conflict := false
	switch ev.Op {
	case schemas.OpInsert:
		conflict = found && !sameNew
	case schemas.OpUpdate:
		// a missing row is a conflict unless a where filter keeps rows out
		conflict = !found && tm.Where == "" || found && !sameOld && !sameNew
	case schemas.OpDelete:
		conflict = found && !sameOld
	}
	if !conflict {
		return nil, true, nil
	}
	m := a.cfg.Mapping
	win := m.winner(tm, ev.CommitTime, ts)
	if tm.Conflict == ConflictNewest {
		// a delete racing an update: the delete's time is gone with the row
		// on one side, so no comparison of times can agree both ways; the
		// delete wins in both directions
		switch {
		case ev.Op == schemas.OpDelete:
			win = m.Source.Side
		case ev.Op == schemas.OpUpdate && !found:
			win = m.TargetSide()
		}
	}
	keyRow := newJSON
	if ev.Op == schemas.OpDelete {
		keyRow = oldJSON
	}
	var key string
	var srcVersion *string
	if err := tx.QueryRow(ctx, tm.keyObjectSQL(), keyRow).Scan(&key, &srcVersion); err != nil {
		return nil, false, fmt.Errorf("conflict key of %s: %w", tm.Target, err)
	}
	if ev.Op == schemas.OpDelete {
		srcVersion = nil
	}
	c := &Conflict{Target: a.target, SourceTable: tm.Source, TargetTable: tm.Target, Op: string(ev.Op), Key: key,
		Policy: tm.Conflict, Winner: win, SourceCommit: ev.CommitTime}
	if srcVersion != nil {
		c.SourceVersion = *srcVersion
	}
	if cur != nil {
		c.TargetVersion = *cur
	}
	if ts != nil {
		c.TargetCommit = *ts
	}
	_, err = tx.Exec(ctx, `INSERT INTO shadowcube.sync_conflicts (target, source_table, target_table, op, key, source_version, target_version,
  policy, winner, source_commit_time, target_commit_time, source_lsn) VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb, $8, $9, $10, $11, $12::pg_lsn)`,
		c.Target, c.SourceTable, c.TargetTable, c.Op, c.Key, srcVersion, cur, c.Policy, c.Winner, ev.CommitTime, ts, ev.CommitLSN.String())
	if err != nil {
		return nil, false, fmt.Errorf("record conflict on %s: %w", tm.Target, err)
	}
	a.log.Warn("sync conflict", "table", tm.Target, "key", key, "op", string(ev.Op), "policy", tm.Conflict, "winner", win)
	return c, win == m.Source.Side, nil
}
