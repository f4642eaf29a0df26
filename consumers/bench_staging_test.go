package consumers

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/schemas"
)

// benchShape is a table of the staging benchmark: id bigint and extra
// columns cycling through text, integer and timestamptz.
type benchShape struct {
	name  string // B4 line suffix
	table string
	extra int
}

func (s benchShape) columns() []schemas.Column {
	cols := []schemas.Column{{Name: "id", Type: "bigint", Key: true}}
	for i := 0; i < s.extra; i++ {
		cols = append(cols, schemas.Column{Name: "c" + strconv.Itoa(i), Type: []string{"text", "integer", "timestamp with time zone"}[i%3]})
	}
	return cols
}

func (s benchShape) ddl(schema string) string {
	var defs []string
	for _, c := range s.columns() {
		d := c.Name + " " + c.Type
		if c.Key {
			d += " PRIMARY KEY"
		}
		defs = append(defs, d)
	}
	return fmt.Sprintf("CREATE TABLE %s.%s (%s)", schema, s.table, strings.Join(defs, ", "))
}

// value is the text of column i (0: the key) of row id in generation gen.
func (s benchShape) value(i, id, gen int) string {
	if i == 0 {
		return strconv.Itoa(id)
	}
	switch (i - 1) % 3 {
	case 1:
		return strconv.Itoa(id%1000 + gen)
	case 2:
		return time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(id+gen) * time.Second).Format("2006-01-02 15:04:05+00")
	}
	return fmt.Sprintf("value %d of generation %d with some text", id, gen)
}

// typed is value as the Go value binary COPY takes (the limit's COPY).
func (s benchShape) typed(i, id, gen int) any {
	v := s.value(i, id, gen)
	switch {
	case i == 0:
		return int64(id)
	case (i-1)%3 == 1:
		n, _ := strconv.Atoi(v)
		return int32(n)
	case (i-1)%3 == 2:
		t, _ := time.Parse("2006-01-02 15:04:05+00", v)
		return t
	}
	return v
}

// publishChanges puts single-row transactions of op on s's table into the
// CDC stream after lsn, one per row from..to: updates re-send the rows
// whole (generation gen), deletes send their keys. It returns the last LSN.
func publishChanges(b testing.TB, e *env, s benchShape, slot string, lsn schemas.LSN, from, to, gen int, op schemas.Op) schemas.LSN {
	b.Helper()
	cols := s.columns()
	base := time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC)
	pending := make([]jetstream.PubAckFuture, 0, 4096)
	for id := from; id <= to; id++ {
		i := id - from
		lsn += 0x40
		ev := schemas.ChangeEvent{V: schemas.Version, Slot: slot, DB: "legacy", Schema: "public", Table: s.table, Op: op,
			CommitLSN: lsn, TxID: uint32(i), Index: 0, TxSize: 1, CommitTime: base.Add(time.Duration(i) * time.Millisecond), Columns: cols, Key: []string{"id"}}
		row := schemas.Row{}
		for c := range cols {
			if op == schemas.OpDelete && c > 0 {
				break
			}
			v := s.value(c, id, gen)
			row[cols[c].Name] = &v
		}
		if op == schemas.OpDelete {
			ev.Old = row
		} else {
			ev.New = row
		}
		data, _ := jsonMarshalEvent(&ev)
		msg := nats.NewMsg(schemas.ChangeSubject("legacy", "public", s.table))
		msg.Data = data
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s:%s:0", slot, lsn))
		f, err := e.js.PublishMsgAsync(msg)
		if err != nil {
			b.Fatal(err)
		}
		pending = append(pending, f)
		if len(pending) == cap(pending) {
			waitAcks(b, pending)
			pending = pending[:0]
		}
	}
	waitAcks(b, pending)
	return lsn
}

// BenchmarkB4uSyncStaged: backlogs of single-row source transactions that
// update rows the target holds (B4u), for a narrow table (4 columns, as B4)
// and a wide one (25 columns), applied by sync with the staging table
// (staging.go) and, in the same run on a second copy of the table, by the
// path before it (a key probe and a json_to_recordset upsert), next to COPY
// of the same rows into the same table (the B4 limit). Each path applies
// two backlogs, the second in the other order (the first reader of a
// backlog may find it colder); its rate is over both.
func BenchmarkB4uSyncStaged(b *testing.B) {
	n := 100_000
	if testing.Short() {
		n = 5_000
	}
	for i := 0; i < b.N; i++ {
		e := newEnv(b)
		e.minCopy = -1 // the production default
		e.exec(e.dst, `CREATE SCHEMA o`)
		for _, s := range []benchShape{{"", "bn", 3}, {" wide", "bw", 24}} {
			e.exec(e.src, s.ddl("public"))
			e.exec(e.dst, s.ddl("public"))
			e.exec(e.dst, s.ddl("o"))
			cols := s.columns()
			names := make([]string, len(cols))
			for c := range cols {
				names[c] = cols[c].Name
			}
			rows := make([][]any, n)
			for r := range rows {
				rows[r] = make([]any, len(cols))
				for c := range cols {
					rows[r][c] = s.typed(c, r+1, 0)
				}
			}
			// limit: COPY of the rows into the table (text values, as sync's COPY)
			start := time.Now()
			if _, err := e.dst.CopyFrom(e.ctx, pgx.Identifier{s.table}, names, pgx.CopyFromRows(rows)); err != nil {
				b.Fatal(err)
			}
			copyRate := float64(n) / time.Since(start).Seconds()
			e.exec(e.dst, `INSERT INTO o.`+s.table+` SELECT * FROM public.`+s.table)
			e.exec(e.dst, `VACUUM ANALYZE public.`+s.table)
			e.exec(e.dst, `VACUUM ANALYZE o.`+s.table)
			slot := "b4" + s.table
			m := func(target, table string) *Mapping {
				return e.loadMapping(fmt.Sprintf("source: {slot: %s}\ntargets:\n  - name: %s\n    database_url_env: X\n    tables:\n      - source: public.%s\n        target: %s\n        key: [id]\n",
					slot, target, s.table, table))
			}
			cube, old := m("cube", "public."+s.table), m("old", "o."+s.table)
			// run applies the backlog up to lsn and returns the seconds it took
			run := func(m *Mapping, target string, lsn schemas.LSN, noStage bool) float64 {
				e.tune = func(c *ApplierConfig) { c.noStage = noStage }
				start := time.Now()
				_, stop := e.startSync(m, 5000)
				e.waitCheckpoint(target, slot, lsn, 10*time.Minute)
				took := time.Since(start).Seconds()
				stop()
				return took
			}
			// two backlogs of updates of every row (generations 1 and 2),
			// each path applying the second in the other order
			var last schemas.LSN = 0x1000000
			var tOld, tNew float64 // seconds, summed over both backlogs
			for gen := 1; gen <= 2; gen++ {
				last = publishChanges(b, e, s, slot, last, 1, n, gen, schemas.OpUpdate)
				if gen == 1 {
					tOld += run(old, "old", last, true)
					tNew += run(cube, "cube", last, false)
				} else {
					tNew += run(cube, "cube", last, false)
					tOld += run(old, "old", last, true)
				}
			}
			before, after := 2*float64(n)/tOld, 2*float64(n)/tNew
			fmt.Printf("bench B4u%s sync-catch-up, updates of held rows, staged: %.0f changes/s | limit %.0f rows/s (COPY) | ratio %.2f | target 0.30 (path before staging, same run: %.0f changes/s, ratio %.2f; staged/before %.2f)\n",
				s.name, after, copyRate, after/copyRate, before, before/copyRate, after/before)
			for _, table := range []string{"public." + s.table, "o." + s.table} {
				var count int
				e.dst.QueryRow(e.ctx, `SELECT count(*) FROM `+table+` WHERE c0 LIKE '% of generation 2 %'`).Scan(&count)
				if count != n {
					b.Fatalf("%s holds %d rows of generation 2, want %d", table, count, n)
				}
			}
		}
	}
}
