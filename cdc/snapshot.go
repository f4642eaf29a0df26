package cdc

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heal7/shadowcube/schemas"
)

type snapTable struct {
	schema, table string
	oid           uint32
	attnames      []string // publication column list; nil = all
	rowFilter     *string
}

// snapshot copies every published table inside the exported snapshot name
// (taken when the slot was created at consistent point cp) and publishes the
// rows as op=snapshot events, waiting until JetStream stored all of them.
func (r *Reader) snapshot(ctx context.Context, conn *pgx.Conn, name string, cp schemas.LSN) error {
	var version int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		return fmt.Errorf("read server version: %w", err)
	}
	q := `SELECT pt.schemaname, pt.tablename, c.oid, NULL::text[], NULL::text`
	if version >= 150000 {
		q = `SELECT pt.schemaname, pt.tablename, c.oid, pt.attnames::text[], pt.rowfilter`
	}
	q += ` FROM pg_publication_tables pt
		JOIN pg_namespace n ON n.nspname = pt.schemaname
		JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
		WHERE pt.pubname = $1 ORDER BY 1, 2`
	rows, err := conn.Query(ctx, q, r.cfg.Publication)
	if err != nil {
		return fmt.Errorf("list published tables: %w", err)
	}
	var tables []snapTable
	var t snapTable
	if _, err := pgx.ForEachRow(rows, []any{&t.schema, &t.table, &t.oid, &t.attnames, &t.rowFilter}, func() error {
		tables = append(tables, t)
		return nil
	}); err != nil {
		return fmt.Errorf("list published tables: %w", err)
	}
	if tables, err = fkOrder(ctx, conn, tables); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		return fmt.Errorf("begin snapshot transaction: %w", err)
	}
	defer conn.Exec(context.Background(), "ROLLBACK")
	if _, err := conn.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+strings.ReplaceAll(name, "'", "''")+"'"); err != nil {
		return fmt.Errorf("import exported snapshot %s: %w", name, err)
	}
	var durable atomic.Uint64
	var last atomic.Int64
	f, err := r.readFence(ctx)
	if err != nil {
		return err
	}
	pub := newPublisher(r.pubJS, r.cfg.Window, r.cfg.PublishTimeout, &durable, &last, r.m, r.cfg.Slot, f)
	r.m.snapshotTotal.Set(float64(len(tables)))
	r.m.snapshotDone.Set(0)
	start := time.Now()
	index := 0
	var copyErr error
	for i, t := range tables {
		if copyErr = r.copyTable(ctx, conn, pub, t, cp, start.UTC(), &index); copyErr != nil {
			break
		}
		r.m.snapshotDone.Set(float64(i + 1))
	}
	_, pubErr := pub.close()
	if copyErr != nil {
		return copyErr
	}
	if pubErr != nil {
		return pubErr
	}
	if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("end snapshot transaction: %w", err)
	}
	r.log.Info("snapshot done", "tables", len(tables), "rows", index, "lsn", cp.String(), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func (r *Reader) copyTable(ctx context.Context, conn *pgx.Conn, pub *publisher, t snapTable, cp schemas.LSN, at time.Time, index *int) error {
	full := t.schema + "." + t.table
	rows, err := conn.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid::int8
		FROM pg_attribute a WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		ORDER BY a.attnum`, t.oid)
	if err != nil {
		return fmt.Errorf("read columns of %s: %w", full, err)
	}
	var cols []schemas.Column
	var c schemas.Column
	var oid int64
	if _, err := pgx.ForEachRow(rows, []any{&c.Name, &c.Type, &oid}, func() error {
		if t.attnames != nil && !contains(t.attnames, c.Name) {
			return nil
		}
		c.OID = uint32(oid)
		cols = append(cols, c)
		return nil
	}); err != nil {
		return fmt.Errorf("read columns of %s: %w", full, err)
	}
	key, err := tableKey(ctx, conn, t.oid)
	if err != nil {
		return fmt.Errorf("read key of %s: %w", full, err)
	}
	if len(key) == 0 { // REPLICA IDENTITY FULL without primary key
		for _, c := range cols {
			key = append(key, c.Name)
		}
	}
	idents := make([]string, len(cols))
	for i := range cols {
		cols[i].Key = contains(key, cols[i].Name)
		idents[i] = pgx.Identifier{cols[i].Name}.Sanitize()
	}
	sql := "SELECT " + strings.Join(idents, ", ") + " FROM ONLY " + pgx.Identifier{t.schema, t.table}.Sanitize()
	if len(cols) == 0 {
		sql = "SELECT FROM ONLY " + pgx.Identifier{t.schema, t.table}.Sanitize()
	}
	if t.rowFilter != nil {
		sql += " WHERE " + *t.rowFilter
	}
	subject := schemas.ChangeSubject(r.db, t.schema, t.table)
	prefix := r.cfg.Slot + ":snapshot:" + cp.String() + ":"
	counter := r.m.snapshotRows.WithLabelValues(full)
	r.log.Info("copying table", "table", full, "lsn", cp.String())
	started, n := time.Now(), 0
	rr := conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil)
	for rr.NextRow() {
		vals := rr.Values()
		row := make(schemas.Row, len(vals))
		for i, v := range vals {
			if v == nil {
				row[cols[i].Name] = nil
				continue
			}
			s := string(v)
			row[cols[i].Name] = &s
		}
		ev := &schemas.ChangeEvent{V: schemas.Version, Slot: r.cfg.Slot, DB: r.db, Schema: t.schema, Table: t.table,
			Op: schemas.OpSnapshot, CommitLSN: cp, Index: *index, CommitTime: at, Columns: cols, Key: key, New: row}
		data := marshalEvent(ev)
		if len(data) > schemas.MaxEventSize {
			rr.Close()
			return fatal(fmt.Errorf("snapshot row %d of %s is %d bytes, over the %d-byte event limit", n, full, len(data), schemas.MaxEventSize))
		}
		if err := pub.publish(ctx, subject, prefix+strconv.Itoa(*index), data, schemas.OpSnapshot, 0, at); err != nil {
			rr.Close()
			return err
		}
		*index++
		n++
		counter.Inc()
		if n%100000 == 0 {
			r.log.Info("copying table", "table", full, "rows", n, "rows_per_second", int(float64(n)/time.Since(started).Seconds()))
		}
	}
	if _, err := rr.Close(); err != nil {
		return fmt.Errorf("copy %s: %w", full, err)
	}
	r.log.Info("copied table", "table", full, "rows", n, "took", time.Since(started).Round(time.Millisecond))
	return nil
}

// tableKey returns the primary key columns, else the replica identity
// index columns, else nil.
func tableKey(ctx context.Context, conn *pgx.Conn, oid uint32) ([]string, error) {
	for _, cond := range []string{"i.indisprimary", "i.indisreplident"} {
		rows, err := conn.Query(ctx, `SELECT a.attname FROM pg_index i
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
			WHERE i.indrelid = $1::oid AND `+cond+`
			ORDER BY array_position(i.indkey::int2[], a.attnum)`, oid)
		if err != nil {
			return nil, err
		}
		key, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, err
		}
		if len(key) > 0 {
			return key, nil
		}
	}
	return nil, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
