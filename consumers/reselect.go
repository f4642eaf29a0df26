package consumers

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heal7/shadowcube/internal/jsonenc"
	"github.com/heal7/shadowcube/schemas"
)

// permanentError is a failure that retrying cannot fix (see Transient).
type permanentError struct{ msg string }

func (e *permanentError) Error() string { return e.msg }

// complete runs s (a statement returning the ordinals of the rows of s.fill
// the target cannot complete; no statement: all of them), re-reads those
// rows from the source and queues their upsert, whole, on b. It runs inside
// the target transaction, so the unit stays atomic and in order.
func (a *Applier) complete(ctx context.Context, tx pgx.Tx, s stmt, b *pgx.Batch) error {
	tm, evs := s.fill.tm, s.fill.evs
	if s.sql != "" {
		rows, err := tx.Query(ctx, s.sql, s.args...)
		if err != nil {
			return err
		}
		ords, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return err
		}
		if len(ords) == 0 {
			return nil
		}
		picked := make([]*schemas.ChangeEvent, 0, len(ords))
		for _, o := range ords {
			if int(o) < 0 || int(o) >= len(evs) {
				return fmt.Errorf("update in place of %s returned ordinal %d of %d rows", tm.Target, o, len(evs))
			}
			picked = append(picked, evs[o])
		}
		evs = picked
	}
	rows, err := a.reselect(ctx, tm, evs)
	if err != nil {
		return err
	}
	var js [][]byte
	for i, r := range rows {
		if r != nil {
			js = append(js, rowJSON(tm, r, evs[i].CommitTime))
		}
	}
	a.met.reselected.WithLabelValues(a.target).Add(float64(len(evs)))
	if len(js) == 0 {
		return nil
	}
	param := jsonArray(js)
	b.Queue(tm.upsertSQL(nil), param)
	if f := tm.filteredOutSQL(); f != "" {
		b.Queue(f, param)
	}
	return nil
}

// reselect re-reads the new rows of evs (update events of tm's source table)
// from the source database by their key, as Debezium's reselect
// post-processor does, for values the event did not carry (unchanged TOAST)
// and the target cannot supply. rows[i] is nil when the source no longer
// has evs[i]'s key.
//
// The source row may be newer than the event: the stream is applied behind
// the source. That is safe because the row converges: every later change of
// a column reaches the target as a later event that carries the column (an
// insert, or an update that changes it: changed TOAST values are always
// sent), and is applied after this one; a column no later event carries has
// kept, at the time of the read, the value it had at the event. A row gone
// from the source was deleted (or re-keyed) later: that later event removes
// (or re-completes) it, so nothing is written for it now. The values are
// read in the same text form as cdc's (pinned session settings).
func (a *Applier) reselect(ctx context.Context, tm *TableMap, evs []*schemas.ChangeEvent) ([]schemas.Row, error) {
	key := evs[0].Key
	if len(key) == 0 {
		for _, c := range tm.srcCols {
			if c.Key {
				key = append(key, c.Name)
			}
		}
	}
	types := map[string]string{}
	for _, c := range tm.srcCols {
		types[c.Name] = c.Type
	}
	if len(key) == 0 {
		return nil, &permanentError{fmt.Sprintf("table %s: an update left TOAST values unchanged that the target cannot supply, and the source table has no key to re-read the row by: set REPLICA IDENTITY FULL on %s", tm.Source, tm.Source)}
	}
	var sel, def, on []string
	for _, c := range tm.srcCols {
		sel = append(sel, "s."+quoteIdent(c.Name)+"::text")
	}
	for _, k := range key {
		typ, ok := types[k]
		if !ok {
			return nil, &permanentError{fmt.Sprintf("table %s: key column %s is not a column of the source table", tm.Source, k)}
		}
		def = append(def, quoteIdent(k)+" text")
		on = append(on, fmt.Sprintf("s.%s = k.%s::%s", quoteIdent(k), quoteIdent(k), typ))
	}
	ord := quoteIdent(ordColumn)
	sql := fmt.Sprintf("SELECT %s, k.%s::int FROM %s AS s JOIN json_to_recordset($1::json) AS k(%s, %s text) ON %s",
		strings.Join(sel, ", "), ord, tm.qSource(), strings.Join(def, ", "), ord, strings.Join(on, " AND "))
	keys := make([][]byte, len(evs))
	for i, ev := range evs {
		b := []byte{'{'}
		for _, k := range key {
			v := ev.New[k]
			if v == nil {
				return nil, &permanentError{fmt.Sprintf("table %s: update event at %s lacks key column %s: cannot re-read the row; set REPLICA IDENTITY FULL on %s", tm.Source, ev.CommitLSN, k, tm.Source)}
			}
			b = jsonenc.AppendString(b, k)
			b = append(b, ':')
			b = jsonenc.AppendString(b, *v)
			b = append(b, ',')
		}
		b = jsonenc.AppendString(b, ordColumn)
		b = append(b, ':', '"')
		b = strconv.AppendInt(b, int64(i), 10)
		keys[i] = append(b, '"', '}')
	}
	src, done, err := a.source(ctx, tm)
	if err != nil {
		return nil, err
	}
	defer done()
	var xids []int64
	for _, ev := range evs {
		if ev.TxID != 0 && !slices.Contains(xids, int64(ev.TxID)) {
			xids = append(xids, int64(ev.TxID))
		}
	}
	out := make([]schemas.Row, len(evs))
	for {
		visible, err := a.readRows(ctx, src, tm, sql, jsonArray(keys), xids, out)
		if err != nil {
			return nil, fmt.Errorf("re-read rows of %s from the source: %w", tm.Source, err)
		}
		if visible {
			break
		}
		// the transaction's commit was decoded but is not visible to new
		// snapshots yet (the server marks it visible just after): wait
		sleepCtx(ctx, 5*time.Millisecond)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return out, nil
}

// visibleSQL reports whether one of the source transactions ($1, 32-bit
// xids as sent by cdc) is not visible in the current snapshot: in progress,
// or committed after the snapshot was taken. The full xid takes the epoch
// of the snapshot's xmax (the nearest one, modulo 2^32); an xid the server
// has not assigned yet (age <= 0: not a real source transaction) counts as
// visible.
const visibleSQL = `SELECT coalesce(bool_or(age(t::text::xid) > 0 AND f >= 0 AND NOT pg_visible_in_snapshot(f::text::xid8, s)), false)
FROM (SELECT s, pg_snapshot_xmax(s)::text::bigint AS xm FROM (SELECT pg_current_snapshot() AS s) q) m,
     LATERAL (SELECT t, CASE WHEN f0 > xm + 2147483648 THEN f0 - 4294967296 WHEN f0 < xm - 2147483648 THEN f0 + 4294967296 ELSE f0 END AS f
              FROM (SELECT t, ((xm >> 32) << 32) | t AS f0 FROM unnest($1::bigint[]) AS t) y) x`

// readRows runs the re-read in one repeatable-read snapshot of the source
// that sees every transaction in xids, filling out by ordinal; it reports
// false (nothing read) when one of them is not visible yet. Logical decoding
// may hand a commit over before the committing backend has left the
// server's list of running transactions: a read then would see the row as
// it was before the event.
func (a *Applier) readRows(ctx context.Context, src DB, tm *TableMap, sql, keys string, xids []int64, out []schemas.Row) (bool, error) {
	tx, err := src.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		return false, err
	}
	if len(xids) > 0 {
		var pending bool
		if err := tx.QueryRow(ctx, visibleSQL, xids).Scan(&pending); err != nil {
			return false, err
		}
		if pending {
			return false, nil
		}
	}
	rows, err := tx.Query(ctx, sql, keys)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	vals := make([]*string, len(tm.srcCols))
	ptrs := make([]any, len(tm.srcCols)+1)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var o int32
	ptrs[len(vals)] = &o
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return false, err
		}
		r := make(schemas.Row, len(vals))
		for i, c := range tm.srcCols {
			r[c.Name] = vals[i]
		}
		out[o] = r
	}
	if err := rows.Err(); err != nil {
		return false, err
	}
	return true, tx.Commit(ctx)
}

// source returns the source database: the configured one, or a connection
// opened for this call from the mapping's source URL variable (DLQ replay).
func (a *Applier) source(ctx context.Context, tm *TableMap) (DB, func(), error) {
	if a.cfg.Source != nil {
		return a.cfg.Source, func() {}, nil
	}
	env := a.cfg.Mapping.Source.DatabaseURLEnv
	url := os.Getenv(env)
	if url == "" {
		return nil, nil, &permanentError{fmt.Sprintf("table %s: an update left TOAST values unchanged that the target cannot supply; "+
			"re-reading the row needs the source database: set %s (or set REPLICA IDENTITY FULL on %s)", tm.Source, env, tm.Source)}
	}
	c, err := ConnectSource(ctx, url)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to source database (%s) to re-read rows: %w", env, err)
	}
	return c, func() { c.Close(context.Background()) }, nil
}
