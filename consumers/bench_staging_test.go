package consumers

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/schemas"
)

// publishChanges puts n single-row transactions of op on public.bench into
// the CDC stream after lsn: updates re-send row i+1 whole with a new value,
// deletes send its key. It returns the last LSN.
func publishChanges(b testing.TB, e *env, slot string, lsn schemas.LSN, n int, op schemas.Op) schemas.LSN {
	b.Helper()
	cols := []schemas.Column{{Name: "id", Type: "bigint", Key: true}, {Name: "v", Type: "text"}, {Name: "n", Type: "integer"}, {Name: "at", Type: "timestamp with time zone"}}
	base := time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC)
	pending := make([]jetstream.PubAckFuture, 0, 4096)
	for i := 0; i < n; i++ {
		id := int64(i + 1)
		at := base.Add(time.Duration(i) * time.Second)
		idS := strconv.FormatInt(id, 10)
		lsn += 0x40
		ev := schemas.ChangeEvent{V: schemas.Version, Slot: slot, DB: "legacy", Schema: "public", Table: "bench", Op: op,
			CommitLSN: lsn, TxID: uint32(i), Index: 0, TxSize: 1, CommitTime: at, Columns: cols, Key: []string{"id"}}
		if op == schemas.OpDelete {
			ev.Old = schemas.Row{"id": &idS}
		} else {
			v := fmt.Sprintf("updated value %d with some text to look like a row", i)
			nS, atS := strconv.Itoa(i%1000+1), at.Format("2006-01-02 15:04:05+00")
			ev.New = schemas.Row{"id": &idS, "v": &v, "n": &nS, "at": &atS}
		}
		data, _ := jsonMarshalEvent(&ev)
		msg := nats.NewMsg(schemas.ChangeSubject("legacy", "public", "bench"))
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

// BenchmarkB4uSyncStaged: backlogs of single-row transactions that update
// (B4u) and then delete (B4d) rows the target holds, applied by sync with
// the staging table (staging.go) and, in the same run on a second copy of
// the table, by the path before it (a probe and a json_to_recordset upsert;
// a json_to_recordset delete), next to COPY of the same rows into the same
// table (the B4 limit).
func BenchmarkB4uSyncStaged(b *testing.B) {
	n := 100_000
	if testing.Short() {
		n = 5_000
	}
	for i := 0; i < b.N; i++ {
		e := newEnv(b)
		e.minCopy = -1 // the production default
		e.exec(e.src, benchDDL)
		e.exec(e.dst, benchDDL)
		e.exec(e.dst, `CREATE SCHEMA o; CREATE TABLE o.bench (LIKE public.bench INCLUDING ALL)`)
		last, rows := publishBacklog(b, e, "b4", n)

		// limit: COPY of the same rows into the same table
		start := time.Now()
		if _, err := e.dst.CopyFrom(e.ctx, pgx.Identifier{"bench"}, []string{"id", "v", "n", "at"}, pgx.CopyFromRows(rows)); err != nil {
			b.Fatal(err)
		}
		copyRate := float64(n) / time.Since(start).Seconds()
		e.exec(e.dst, `INSERT INTO o.bench SELECT * FROM public.bench`)
		e.exec(e.dst, `VACUUM ANALYZE public.bench`)
		e.exec(e.dst, `VACUUM ANALYZE o.bench`)
		// the insert backlog is in the targets already: skip it
		for _, t := range []string{"cube", "old"} {
			if err := EnsureCheckpoint(e.ctx, e.dst, t, "b4"); err != nil {
				b.Fatal(err)
			}
			e.exec(e.dst, `UPDATE shadowcube.applied SET lsn = $1::pg_lsn, idx = $2 WHERE target = $3`, last.String(), int64(wholeTx), t)
		}
		cube := e.loadMapping("source: {slot: b4}\ntargets:\n  - name: cube\n    database_url_env: X\n    tables:\n      - source: public.bench\n        key: [id]\n")
		old := e.loadMapping("source: {slot: b4}\ntargets:\n  - name: old\n    database_url_env: X\n    tables:\n      - source: public.bench\n        target: o.bench\n        key: [id]\n")
		run := func(m *Mapping, target string, lsn schemas.LSN, noStage bool) float64 {
			e.tune = func(c *ApplierConfig) { c.noStage = noStage }
			start := time.Now()
			_, stop := e.startSync(m, 5000)
			e.waitCheckpoint(target, "b4", lsn, 10*time.Minute)
			rate := float64(n) / time.Since(start).Seconds()
			stop()
			return rate
		}
		b.ResetTimer()
		for _, phase := range []struct {
			name, what string
			op         schemas.Op
		}{{"B4u", "updates of held rows", schemas.OpUpdate}, {"B4d", "deletes of held rows", schemas.OpDelete}} {
			last = publishChanges(b, e, "b4", last, n, phase.op)
			before := run(old, "old", last, true)
			after := run(cube, "cube", last, false)
			if phase.op == schemas.OpUpdate {
				for _, table := range []string{"public.bench", "o.bench"} {
					var count int
					e.dst.QueryRow(e.ctx, `SELECT count(*) FROM `+table+` WHERE v LIKE 'updated value %'`).Scan(&count)
					if count != n {
						b.Fatalf("%s holds %d updated rows, want %d", table, count, n)
					}
				}
			}
			fmt.Printf("bench %s sync-catch-up, %s, staged: %.0f changes/s | limit %.0f rows/s (COPY) | ratio %.2f | target 0.30 (path before staging, same run: %.0f changes/s, ratio %.2f; staged/before %.2f)\n",
				phase.name, phase.what, after, copyRate, after/copyRate, before, before/copyRate, after/before)
		}
		b.StopTimer()
		for _, table := range []string{"public.bench", "o.bench"} {
			var count int
			e.dst.QueryRow(e.ctx, `SELECT count(*) FROM `+table).Scan(&count)
			if count != 0 {
				b.Fatalf("%s holds %d rows after the deletes", table, count)
			}
		}
	}
}
