package consumers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/heal7/shadowcube/cdc"
	"github.com/heal7/shadowcube/schemas"
)

// e2eDDL covers the types of the CDC issue: numeric specials, float
// extremes, json vs jsonb, arrays with NULLs and dimensions, bytea,
// timestamps with infinity, interval, uuid, a TOASTed text.
const e2eDDL = `
CREATE TABLE public.e2e (
  id bigint PRIMARY KEY, i int, n numeric, f double precision, t text, big text,
  ts timestamptz, d date, b bytea, j jsonb, js json, arr int[], tarr text[], u uuid, flag boolean, iv interval);
CREATE TABLE public.e2e_other (id int PRIMARY KEY, v text);`

const e2eMapping = `
source: {slot: %s}
targets:
  - name: cube
    database_url_env: CUBE_URL
    tables:
      - source: public.e2e
        key: [id]
      - source: public.e2e_other
        key: [id]
`

// workload runs random source transactions (inserts, updates that leave the
// TOASTed column unchanged, updates of it, primary-key updates, deletes,
// truncates) until stop is closed or n transactions ran (n <= 0: unbounded).
func workload(ctx context.Context, t testing.TB, url string, seed uint64, n int, stop <-chan struct{}) int {
	conn, err := ConnectSource(ctx, url)
	if err != nil {
		t.Errorf("workload connect: %v", err)
		return 0
	}
	defer conn.Close(context.Background())
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	nextID := int64(seed%1000) * 10_000_000
	var live []int64
	done := 0
	vals := []string{
		`(%d, 1, 'NaN', 'Infinity', 'a''b', repeat(md5(random()::text), 200), 'infinity', '2024-02-29', '\x00ff', '{"a": [1, 2.50]}', '{ "keep" :1 }', '{1,NULL,3}', '{{"a,b",NULL},{"c","d"}}', gen_random_uuid(), true, '1 day 02:03:04.5')`,
		`(%d, -2147483648, -0.000001, -1e-300, E'tab\there\nnewline "q" \\ back', repeat('x', 3000) || md5(random()::text), '2001-01-01 00:00:00.000001+00', '0001-01-01 BC', '', 'null', '[]', '{}', '{}', NULL, false, '-1 mons')`,
		`(%d, NULL, 123456789012345678901234567890.123456789, 0.1, '한글 사주', NULL, '-infinity', 'infinity', NULL, '"s"', '"s"', NULL, '{NULL}', '00000000-0000-0000-0000-000000000000', NULL, NULL)`,
	}
txLoop:
	for (n <= 0 || done < n) && ctx.Err() == nil {
		select {
		case <-stop:
			return done
		default:
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			if ctx.Err() == nil {
				t.Errorf("workload begin: %v", err)
			}
			return done
		}
		ops := 1 + rng.IntN(4)
		var newLive []int64
		removed := map[int64]bool{}
		for k := 0; k < ops; k++ {
			var q string
			pick := func() (int64, bool) {
				for tries := 0; tries < 5 && len(live) > 0; tries++ {
					id := live[rng.IntN(len(live))]
					if !removed[id] {
						return id, true
					}
				}
				return 0, false
			}
			switch r := rng.IntN(100); {
			case r < 40 || len(live) < 5:
				nextID++
				q = fmt.Sprintf(`INSERT INTO e2e VALUES `+vals[rng.IntN(len(vals))], nextID)
				newLive = append(newLive, nextID)
				if rng.IntN(4) == 0 {
					q += fmt.Sprintf(`; INSERT INTO e2e_other VALUES (%d, 'v') ON CONFLICT (id) DO UPDATE SET v = 'w'`, rng.IntN(50))
				}
			case r < 65:
				id, ok := pick()
				if !ok {
					continue
				}
				q = fmt.Sprintf(`UPDATE e2e SET i = coalesce(i, 0) + 1, n = n * 2, arr = array_append(arr, 7), j = j || '{"u": 1}' WHERE id = %d`, id)
			case r < 75:
				id, ok := pick()
				if !ok {
					continue
				}
				q = fmt.Sprintf(`UPDATE e2e SET big = md5(random()::text) || repeat('y', 4000) WHERE id = %d`, id)
			case r < 85:
				id, ok := pick()
				if !ok {
					continue
				}
				nextID++
				q = fmt.Sprintf(`UPDATE e2e SET id = %d WHERE id = %d`, nextID, id)
				removed[id] = true
				newLive = append(newLive, nextID)
			case r < 98:
				id, ok := pick()
				if !ok {
					continue
				}
				q = fmt.Sprintf(`DELETE FROM e2e WHERE id = %d`, id)
				removed[id] = true
			default:
				q = `TRUNCATE e2e_other`
			}
			if _, err := tx.Exec(ctx, q); err != nil {
				tx.Rollback(context.Background())
				if Transient(err) && ctx.Err() == nil {
					continue txLoop // a deadlock between workers: run another transaction
				}
				if ctx.Err() == nil {
					t.Errorf("workload %s: %v", q, err)
				}
				return done
			}
		}
		if err := tx.Commit(ctx); err != nil {
			if ctx.Err() == nil {
				t.Errorf("workload commit: %v", err)
			}
			return done
		}
		kept := live[:0]
		for _, id := range live {
			if !removed[id] {
				kept = append(kept, id)
			}
		}
		live = append(kept, newLive...)
		done++
	}
	return done
}

// startCDC runs the real cdc reader on the source until the test ends.
func (e *env) startCDC(slot string, tables ...string) func() {
	e.t.Helper()
	r, err := cdc.New(cdc.Config{DatabaseURL: e.srcURL, Slot: slot, Publication: slot, Tables: tables, Heartbeat: 200 * time.Millisecond,
		StatusInterval: 200 * time.Millisecond, RetryMax: time.Second}, cdc.Deps{JetStream: e.js})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("cdc: %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

// waitCaughtUp waits until the target checkpoint passes the source's current
// WAL position (heartbeats make it move even when the workload is done).
func waitCaughtUp(t testing.TB, ctx context.Context, src, dst *pgx.Conn, target, slot string, within time.Duration) {
	t.Helper()
	var walText string
	if err := src.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&walText); err != nil {
		t.Fatal(err)
	}
	wal, _ := schemas.ParseLSN(walText)
	deadline := time.Now().Add(within)
	for {
		cp, err := ReadCheckpoint(ctx, dst, target, slot)
		// a stream transaction committed after wal (a heartbeat at least);
		// snapshot rows carry the slot's consistent point, which may lie after it
		if err == nil && cp.LSN >= wal && cp.Index == wholeTx {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("target %s checkpoint %s did not pass source WAL %s within %s (err %v)", target, cp.LSN, wal, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func diffSummary(reps []TableReport) string {
	var s []string
	for _, r := range reps {
		for _, d := range r.Diffs {
			var cols []string
			for _, c := range d.Columns {
				cols = append(cols, c.Column)
			}
			s = append(s, fmt.Sprintf("%s:%s:%s:%s", r.Table, d.Kind, d.Key["id"], strings.Join(cols, ",")))
		}
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

func totalDiffs(reps []TableReport) int {
	n := 0
	for _, r := range reps {
		n += r.Differences
	}
	return n
}

// TestEndToEndThroughCDC runs a random workload through the real cdc reader
// and sync; reconcile then reports zero differences, and planted drift
// (changed value, missing row, extra row) is found exactly.
func TestEndToEndThroughCDC(t *testing.T) {
	e := newEnv(t)
	e.exec(e.src, e2eDDL)
	e.exec(e.dst, e2eDDL)
	// rows present before the slot exists arrive as snapshot events
	workload(e.ctx, t, e.srcURL, 1, 30, nil)
	e.startCDC("e2e", "public.e2e", "public.e2e_other")
	m := e.loadMapping(fmt.Sprintf(e2eMapping, "e2e"))
	_, stop := e.startSync(m, 500)
	n := 400
	if testing.Short() {
		n = 100
	}
	var wg sync.WaitGroup
	for w := uint64(2); w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			workload(e.ctx, t, e.srcURL, w, n, nil)
		}()
	}
	wg.Wait()
	waitCaughtUp(t, e.ctx, e.src, e.dst, "cube", "e2e", 60*time.Second)
	stop()
	reps := reconcileAll(t, e, m, 50)
	if totalDiffs(reps) != 0 {
		t.Fatalf("differences after sync: %s", diffSummary(reps))
	}
	var rows int64
	for _, r := range reps {
		rows += r.SourceRows
	}
	if rows < 100 {
		t.Fatalf("only %d rows compared: the workload did not run", rows)
	}
	var a, b int64
	e.src.QueryRow(e.ctx, `SELECT min(id), max(id) FROM e2e`).Scan(&a, &b)
	e.exec(e.dst, `UPDATE e2e SET tarr = '{drift}' WHERE id = $1`, a)
	e.exec(e.dst, `DELETE FROM e2e WHERE id = $1`, b)
	e.exec(e.dst, `INSERT INTO e2e (id) VALUES (1)`)
	want := fmt.Sprintf("public.e2e:changed:%d:tarr public.e2e:extra:1: public.e2e:missing:%d:", a, b)
	if got := diffSummary(reconcileAll(t, e, m, 50)); got != want {
		t.Fatalf("planted drift: got %q, want %q", got, want)
	}
}
