package consumers

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/schemas"
)

const benchDDL = `CREATE TABLE public.bench (id bigint PRIMARY KEY, v text, n int, at timestamptz)`

// publishBacklog puts n single-row insert transactions into the CDC stream.
func publishBacklog(b testing.TB, e *env, slot string, n int) (schemas.LSN, [][]any) {
	b.Helper()
	cols := []schemas.Column{{Name: "id", Type: "bigint", Key: true}, {Name: "v", Type: "text"}, {Name: "n", Type: "integer"}, {Name: "at", Type: "timestamp with time zone"}}
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	rows := make([][]any, n)
	var lsn schemas.LSN = 0x1000000
	pending := make([]jetstream.PubAckFuture, 0, 4096)
	for i := 0; i < n; i++ {
		id := int64(i + 1)
		v := fmt.Sprintf("value %d with some text to look like a row", i)
		at := base.Add(time.Duration(i) * time.Second)
		rows[i] = []any{id, v, int32(i % 1000), at}
		idS, nS, atS := strconv.FormatInt(id, 10), strconv.Itoa(i%1000), at.Format("2006-01-02 15:04:05+00")
		lsn += 0x40
		ev := schemas.ChangeEvent{V: schemas.Version, Slot: slot, DB: "legacy", Schema: "public", Table: "bench", Op: schemas.OpInsert,
			CommitLSN: lsn, TxID: uint32(i), Index: 0, TxSize: 1, CommitTime: at, Columns: cols, Key: []string{"id"},
			New: schemas.Row{"id": &idS, "v": &v, "n": &nS, "at": &atS}}
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
	return lsn, rows
}

func waitAcks(b testing.TB, fs []jetstream.PubAckFuture) {
	for _, f := range fs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.Fatal(err)
		case <-time.After(30 * time.Second):
			b.Fatal("publish ack timeout")
		}
	}
}

// BenchmarkB4SyncCatchUp: a backlog of single-row source transactions in
// the CDC stream applied to the target (identity mapping), next to COPY of
// the same rows into the same table (B4), next to sync consuming the same
// backlog with nothing to apply (B4c: the ceiling the apply runs under), and
// next to PostgreSQL's native
// logical replication applying the same number of single-row transactions (B4p).
func BenchmarkB4SyncCatchUp(b *testing.B) {
	n := 200_000
	if testing.Short() {
		n = 5_000
	}
	for i := 0; i < b.N; i++ {
		e := newEnv(b)
		e.minCopy = -1 // the production default
		e.exec(e.src, benchDDL)
		e.exec(e.dst, benchDDL)
		last, rows := publishBacklog(b, e, "b4", n)

		// limit: COPY of the same rows into the same table
		start := time.Now()
		if _, err := e.dst.CopyFrom(e.ctx, pgx.Identifier{"bench"}, []string{"id", "v", "n", "at"}, pgx.CopyFromRows(rows)); err != nil {
			b.Fatal(err)
		}
		copyRate := float64(n) / time.Since(start).Seconds()
		e.exec(e.dst, `TRUNCATE bench`)
		e.exec(e.dst, `VACUUM ANALYZE bench`)

		m := e.loadMapping("source: {slot: b4}\ntargets:\n  - name: cube\n    database_url_env: X\n    tables:\n      - source: public.bench\n        key: [id]\n")
		b.ResetTimer()
		start = time.Now()
		_, stop := e.startSync(m, 5000)
		e.waitCheckpoint("cube", "b4", last, 10*time.Minute)
		rate := float64(n) / time.Since(start).Seconds()
		stop()
		b.StopTimer()
		var count int
		e.dst.QueryRow(e.ctx, `SELECT count(*) FROM bench`).Scan(&count)
		if count != n {
			b.Fatalf("target holds %d rows, want %d", count, n)
		}
		fmt.Printf("bench B4 sync-catch-up: %.0f changes/s | limit %.0f rows/s (COPY) | ratio %.2f | target 0.30\n", rate, copyRate, rate/copyRate)

		// the consume ceiling: the same backlog read, decoded, assembled
		// and checkpointed by a target that maps none of it
		e.exec(e.src, `CREATE TABLE public.idle (id int PRIMARY KEY)`)
		e.exec(e.dst, `CREATE TABLE public.idle (id int PRIMARY KEY)`)
		idle := e.loadMapping("source: {slot: b4}\ntargets:\n  - name: idle\n    database_url_env: X\n    tables:\n      - source: public.idle\n        key: [id]\n")
		start = time.Now()
		_, stopIdle := e.startSync(idle, 5000)
		e.waitCheckpoint("idle", "b4", last, 10*time.Minute)
		consume := float64(n) / time.Since(start).Seconds()
		stopIdle()
		fmt.Printf("bench B4c sync-vs-consume: %.0f changes/s | limit %.0f changes/s (the same backlog consumed and checkpointed, nothing to apply) | ratio %.2f | target 1.0\n", rate, consume, rate/consume)

		native := nativeApplyRate(b, e, n)
		fmt.Printf("bench B4p sync-vs-native: %.0f changes/s | limit %.0f changes/s (native subscription) | ratio %.2f | target 1.0\n", rate, native, rate/native)
	}
}

// nativeApplyRate makes n single-row transactions in the source and measures
// how fast a native subscription (copy_data = false) applies them.
func nativeApplyRate(b testing.TB, e *env, n int) float64 {
	b.Helper()
	e.exec(e.src, `CREATE TABLE public.nat (id bigint PRIMARY KEY, v text, n int, at timestamptz)`)
	e.exec(e.dst, `CREATE TABLE public.nat (id bigint PRIMARY KEY, v text, n int, at timestamptz)`)
	e.exec(e.src, `CREATE PUBLICATION b4p FOR TABLE public.nat`)
	e.exec(e.src, `SELECT pg_create_logical_replication_slot('b4p', 'pgoutput')`)
	b.Cleanup(func() {
		c := connectPinned(b, e.dstURL)
		c.Exec(context.Background(), `ALTER SUBSCRIPTION b4p DISABLE`)
		c.Exec(context.Background(), `ALTER SUBSCRIPTION b4p SET (slot_name = NONE)`)
		c.Exec(context.Background(), `DROP SUBSCRIPTION IF EXISTS b4p`)
	})
	e.exec(e.dst, fmt.Sprintf(`CREATE SUBSCRIPTION b4p CONNECTION %s PUBLICATION b4p WITH (copy_data = false, create_slot = false, slot_name = 'b4p', enabled = false)`,
		quoteLiteral(e.srcURL)))
	e.exec(e.src, `CREATE PROCEDURE fill(n int) LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..n LOOP
    INSERT INTO nat VALUES (i, 'value ' || i || ' with some text to look like a row', i % 1000, now());
    COMMIT;
  END LOOP;
END $$`)
	e.exec(e.src, `SET synchronous_commit = off`)
	e.exec(e.src, fmt.Sprintf(`CALL fill(%d)`, n))
	start := time.Now()
	e.exec(e.dst, `ALTER SUBSCRIPTION b4p ENABLE`)
	for {
		var c int
		if err := e.dst.QueryRow(e.ctx, `SELECT count(*) FROM nat`).Scan(&c); err != nil {
			b.Fatal(err)
		}
		if c == n {
			break
		}
		if time.Since(start) > 10*time.Minute {
			b.Fatalf("native subscription applied %d of %d", c, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkB5SteadyLag: the source at a steady rate of single-row
// transactions through the real cdc reader and sync; the lag from the source
// insert to the row being visible in the cube (the target's clock_timestamp()
// at insert), p99.
func BenchmarkB5SteadyLag(b *testing.B) {
	rate, dur := 5000, 30*time.Second
	if testing.Short() {
		rate, dur = 500, 3*time.Second
	}
	for i := 0; i < b.N; i++ {
		e := newEnv(b)
		e.minCopy = -1 // the production default
		e.exec(e.src, `CREATE TABLE public.lag (id bigserial PRIMARY KEY, at timestamptz NOT NULL)`)
		e.exec(e.dst, `CREATE TABLE public.lag (id bigint PRIMARY KEY, at timestamptz NOT NULL, seen timestamptz NOT NULL DEFAULT clock_timestamp())`)
		e.startCDC("b5", "public.lag")
		m := e.loadMapping("source: {slot: b5}\ntargets:\n  - name: cube\n    database_url_env: X\n    tables:\n      - source: public.lag\n        key: [id]\n        columns:\n          at: at\n")
		_, stop := e.startSync(m, 5000)
		time.Sleep(2 * time.Second) // snapshot (empty) and consumer set-up
		b.ResetTimer()
		workers := 8
		var wg sync.WaitGroup
		var mu sync.Mutex
		sent := 0
		deadline := time.Now().Add(dur)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := ConnectSource(e.ctx, e.srcURL)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close(context.Background())
				c.Exec(e.ctx, `SET synchronous_commit = off`)
				interval := time.Duration(float64(time.Second) * float64(workers) / float64(rate))
				next := time.Now()
				for time.Now().Before(deadline) {
					if _, err := c.Exec(e.ctx, `INSERT INTO lag (at) VALUES (clock_timestamp())`); err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					sent++
					mu.Unlock()
					next = next.Add(interval)
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
				}
			}()
		}
		wg.Wait()
		waitCaughtUp(b, e.ctx, e.src, e.dst, "cube", "b5", 2*time.Minute)
		stop()
		b.StopTimer()
		rows, err := e.dst.Query(e.ctx, `SELECT extract(epoch FROM seen - at)::float8 FROM lag`)
		if err != nil {
			b.Fatal(err)
		}
		lags, err := pgx.CollectRows(rows, pgx.RowTo[float64])
		if err != nil || len(lags) != sent {
			b.Fatalf("target holds %d rows, %d sent (%v)", len(lags), sent, err)
		}
		sort.Float64s(lags)
		p99 := lags[len(lags)*99/100] * 1000
		achieved := float64(sent) / dur.Seconds()
		cdcP99, cdcP50 := cdcPublishLag(b, e, "lag")
		fmt.Printf("bench B5 steady-lag-p99: %.1f ms | limit 500 ms | ratio %.2f | target <= 1.0 (source at %.0f tx/s of %d asked, p50 %.1f ms, max %.1f ms; of which source commit -> stored in JetStream by cdc: p99 %.1f ms, p50 %.1f ms)\n",
			p99, p99/500, achieved, rate, lags[len(lags)/2]*1000, lags[len(lags)-1]*1000, cdcP99, cdcP50)
	}
}

// cdcPublishLag returns p99 and p50 (ms) of JetStream store time minus source
// commit time for the events of table: the part of the lag spent before sync.
func cdcPublishLag(b testing.TB, e *env, table string) (float64, float64) {
	st, err := e.js.Stream(e.ctx, schemas.StreamCDC)
	if err != nil {
		b.Fatal(err)
	}
	info, err := st.Info(e.ctx)
	if err != nil {
		b.Fatal(err)
	}
	end := info.State.LastSeq // cdc keeps publishing heartbeats: stop at the end seen now
	c, err := e.js.OrderedConsumer(e.ctx, schemas.StreamCDC, jetstream.OrderedConsumerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	var lags []float64
	for done := false; !done; {
		batch, err := c.Fetch(5000, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			break
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if md, err := m.Metadata(); err == nil && md.Sequence.Stream >= end {
				done = true
			}
			ev, err := schemas.DecodeChangeEvent(m.Data())
			if err != nil || ev.Table != table {
				continue
			}
			md, _ := m.Metadata()
			lags = append(lags, md.Timestamp.Sub(ev.CommitTime).Seconds()*1000)
		}
		if n == 0 {
			break
		}
	}
	if len(lags) == 0 {
		return 0, 0
	}
	sort.Float64s(lags)
	return lags[len(lags)*99/100], lags[len(lags)/2]
}
