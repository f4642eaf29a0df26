package consumers

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"pgregory.net/rapid"

	"github.com/heal7/shadowcube/schemas"
)

const stagedSrcDDL = `CREATE TABLE public.sp (id int PRIMARY KEY, v text, n int, big text)`

const stagedDstDDL = stagedSrcDDL + `;
CREATE SCHEMA r;
CREATE TABLE r.sp (LIKE public.sp INCLUDING ALL)`

// Two targets of one table: an identity copy (runs go through COPY and the
// staging table) and the same copy on the row path (an expression that is
// not a plain column: JSON upserts and deletes).
const stagedMapping = `
source: {slot: staged}
targets:
  - name: plain
    database_url_env: CUBE_URL
    tables:
      - source: public.sp
        key: [id]
  - name: rows
    database_url_env: CUBE_URL
    tables:
      - source: public.sp
        target: r.sp
        key: [id]
        columns: {v: "(v)", n: n, big: big}
`

// stagedEnv starts the source, cdc and sync of stagedMapping with runs of
// minCopy rows and more going through COPY and staging.
func stagedEnv(t *testing.T, minCopy int) (*env, *Sync, func()) {
	e := newEnv(t)
	e.minCopy = minCopy
	e.exec(e.src, stagedSrcDDL)
	e.exec(e.dst, stagedDstDDL)
	e.startCDC("staged", "public.sp")
	s, stop := e.startSync(e.loadMapping(stagedMapping), 500)
	return e, s, stop
}

// stagedSame reports how the targets differ from the source ("" when
// both hold exactly the source's rows).
func stagedSame(t testing.TB, e *env) string {
	want := tableText(t, e.src, "public.sp")
	for _, table := range []string{"public.sp", "r.sp"} {
		if got := tableText(t, e.dst, table); !slices.Equal(got, want) {
			short := func(rs []string) []string {
				var out []string
				for _, r := range rs {
					out = append(out, r[:min(len(r), 50)])
				}
				return out
			}
			return fmt.Sprintf("%s:\n  got  %q\n  want %q", table, short(got), short(want))
		}
	}
	return ""
}

func stagedRows(s *Sync) map[string]float64 {
	n := map[string]float64{}
	for _, a := range s.Appliers() {
		n[a.target] = testutil.ToFloat64(a.met.staged.WithLabelValues(a.target))
	}
	return n
}

// TestStagedRuns: runs of updates of rows the target holds, mixed with new
// rows, go through the staging table of the identity target; runs of
// deletes between them stay barriers; updates leaving a TOASTed value unchanged stay in place (the
// value is kept, never NULL); key changes and a truncate between runs keep
// source order. After each source transaction both targets equal the
// source. Then the whole stream is delivered again from its start (the
// checkpoint and the consumer reset, as after a loss of the target's
// commit): the targets still equal the source.
func TestStagedRuns(t *testing.T) {
	e, s, stop := stagedEnv(t, 4)
	steps := []struct{ name, sql string }{
		{"insert 1..100", `INSERT INTO sp SELECT g, 'v' || g, g, CASE WHEN g % 10 = 0 THEN ` + incompressible(9000) + ` END FROM generate_series(1, 100) g`},
		{"update held rows and insert new ones in one run", `UPDATE sp SET v = E'upd\t' || id, n = NULL, big = CASE WHEN id % 10 = 0 THEN big ELSE 'small ' || id END WHERE id % 3 <> 0 AND id % 10 <> 0;
			INSERT INTO sp SELECT g, 'new ' || g, -g FROM generate_series(101, 120) g`},
		{"delete a run", `DELETE FROM sp WHERE id <= 50`},
		{"update leaving TOASTed values unchanged", `UPDATE sp SET v = 'toast kept ' || id WHERE id % 10 = 0`},
		{"key changes between runs", `UPDATE sp SET n = 7 WHERE id BETWEEN 51 AND 69; UPDATE sp SET id = id + 1000 WHERE id BETWEEN 60 AND 65; UPDATE sp SET n = 8 WHERE id BETWEEN 51 AND 80`},
		{"truncate between runs", `UPDATE sp SET v = 'gone' WHERE id > 80; TRUNCATE sp; INSERT INTO sp SELECT g, 'again ' || g, g FROM generate_series(1, 30) g; UPDATE sp SET v = 'again updated' WHERE id <= 20`},
		{"a NULL-able run of held rows", `UPDATE sp SET v = NULL, big = ` + incompressible(9000) + ` WHERE id <= 30`},
	}
	for _, st := range steps {
		tx, err := e.src.Begin(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range strings.Split(st.sql, ";") {
			if _, err := tx.Exec(e.ctx, q); err != nil {
				t.Fatalf("%s: %s: %v", st.name, q, err)
			}
		}
		if err := tx.Commit(e.ctx); err != nil {
			t.Fatal(err)
		}
		if err := caughtUp(e.ctx, e.src, e.dst, []string{"plain", "rows"}, "staged"); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if d := stagedSame(t, e); d != "" {
			t.Fatalf("after %s: %s", st.name, d)
		}
	}
	staged := stagedRows(s)
	if staged["plain"] < 100 || staged["rows"] != 0 {
		t.Fatalf("rows through staging by target: %v, want 100 or more for plain, none for rows", staged)
	}

	// redelivery of everything: the targets apply the stream again from
	// its start over their end state
	stop()
	e.exec(e.dst, `UPDATE shadowcube.applied SET lsn = '0/0', idx = 0`)
	for _, name := range []string{"sync-plain", "sync-rows"} {
		if err := e.js.DeleteConsumer(e.ctx, schemas.StreamCDC, name); err != nil {
			t.Fatal(err)
		}
	}
	s, _ = e.startSync(e.loadMapping(stagedMapping), 500)
	if err := caughtUp(e.ctx, e.src, e.dst, []string{"plain", "rows"}, "staged"); err != nil {
		t.Fatal(err)
	}
	if d := stagedSame(t, e); d != "" {
		t.Fatalf("after the stream was applied again: %s", d)
	}
	if staged := stagedRows(s); staged["plain"] == 0 {
		t.Fatalf("the second delivery staged no rows: %v", staged)
	}
}

// TestStagedNoStageMatches: the same runs with staging off (the probe and
// JSON upsert path) give the same rows: the A/B the benchmark measures is
// between two correct paths.
func TestStagedNoStageMatches(t *testing.T) {
	e := newEnv(t)
	e.minCopy = 4
	e.exec(e.src, stagedSrcDDL)
	e.exec(e.dst, stagedDstDDL)
	e.startCDC("staged", "public.sp")
	e.tune = func(c *ApplierConfig) { c.noStage = true }
	s, _ := e.startSync(e.loadMapping(stagedMapping), 500)
	e.exec(e.src, `INSERT INTO sp SELECT g, 'v' || g, g FROM generate_series(1, 60) g`)
	e.exec(e.src, `UPDATE sp SET v = 'u' || id WHERE id > 10`)
	e.exec(e.src, `DELETE FROM sp WHERE id > 40`)
	if err := caughtUp(e.ctx, e.src, e.dst, []string{"plain", "rows"}, "staged"); err != nil {
		t.Fatal(err)
	}
	if d := stagedSame(t, e); d != "" {
		t.Fatal(d)
	}
	if staged := stagedRows(s); staged["plain"] != 0 {
		t.Fatalf("rows staged with staging off: %v", staged)
	}
}

// TestModeFor: a run whose keys the target held none of is copied
// optimistically next time, some (at most half) probed, most staged.
func TestModeFor(t *testing.T) {
	for _, tc := range []struct {
		held, n int
		want    copyMode
	}{{0, 1, copyOptimistic}, {0, 100, copyOptimistic}, {1, 100, copyProbe}, {50, 100, copyProbe}, {51, 100, copyStage}, {1, 1, copyStage}} {
		if got := modeFor(tc.held, tc.n); got != tc.want {
			t.Errorf("modeFor(%d, %d) = %d, want %d", tc.held, tc.n, got, tc.want)
		}
	}
}

// stagedOp is one source statement of the property test.
type stagedOp struct {
	sql  string
	args []any
}

func (o stagedOp) String() string {
	s := o.sql
	if i := strings.Index(s, "(SELECT left("); i >= 0 {
		s = s[:i] + "<big>" + s[strings.Index(s[i:], "g)")+i+2:]
	}
	return fmt.Sprintf("%s %v", s, o.args)
}

// drawStagedOps draws source statements over ranges of keys 1..60, so runs
// of many rows form: inserts, updates of every column, updates leaving the
// TOASTed column unchanged, deletes, key changes and truncates.
func drawStagedOps(t *rapid.T) [][]stagedOp {
	big := func() string { return incompressible(rapid.IntRange(8200, 9000).Draw(t, "size")) }
	bigOr := func() string {
		return rapid.SampledFrom([]string{"NULL", "'small'", "big"}).Draw(t, "bigv")
	}
	var txs [][]stagedOp
	for range rapid.IntRange(1, 5).Draw(t, "txs") {
		var tx []stagedOp
		for range rapid.IntRange(1, 5).Draw(t, "stmts") {
			lo := rapid.IntRange(1, 60).Draw(t, "lo")
			hi := lo + rapid.IntRange(0, 25).Draw(t, "width")
			tag := fmt.Sprintf("t%d", len(tx))
			bv := bigOr()
			if bv == "big" {
				bv = big()
			}
			var o stagedOp
			switch rapid.SampledFrom([]string{"insert", "insert", "update", "update", "update-kept", "delete", "rekey", "truncate"}).Draw(t, "kind") {
			case "insert":
				o = stagedOp{"INSERT INTO sp SELECT g, $3 || g, g, " + bv + " FROM generate_series($1::int, $2::int) g ON CONFLICT DO NOTHING", []any{lo, hi, tag}}
			case "update":
				o = stagedOp{"UPDATE sp SET v = $3 || id, n = coalesce(n, 0) + 1, big = " + bv + " WHERE id BETWEEN $1 AND $2", []any{lo, hi, tag}}
			case "update-kept":
				o = stagedOp{"UPDATE sp SET v = $3 || id WHERE id BETWEEN $1 AND $2", []any{lo, hi, tag}}
			case "delete":
				o = stagedOp{"DELETE FROM sp WHERE id BETWEEN $1 AND $2", []any{lo, hi}}
			case "rekey":
				o = stagedOp{"UPDATE sp SET id = $2 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM sp WHERE id = $2)", []any{lo, hi + 40}}
			default:
				o = stagedOp{"TRUNCATE sp", nil}
			}
			tx = append(tx, o)
		}
		txs = append(txs, tx)
	}
	return txs
}

// TestStagedApplyProperty: random sequences of source transactions of
// multi-row inserts, updates (every value, or leaving the TOASTed column
// unchanged), deletes, key changes and truncates, through the real cdc
// reader and sync with runs of 3 rows and more going through COPY and the
// staging table, and the same table on the row path: both targets equal
// the source after every sequence. The source is emptied by a TRUNCATE
// between sequences (through cdc and sync too).
func TestStagedApplyProperty(t *testing.T) {
	e, s, _ := stagedEnv(t, 3)
	targets := []string{"plain", "rows"}
	checks := 0
	rapid.Check(t, func(rt *rapid.T) {
		txs := drawStagedOps(rt)
		// rapid runs 100 checks: the ones past the limit do nothing (a
		// limit on passes, so shrinking a failure still runs)
		if checks >= 30 || testing.Short() && checks >= 8 {
			return
		}
		if _, err := e.src.Exec(e.ctx, "TRUNCATE sp"); err != nil {
			rt.Fatal(err)
		}
		for _, ops := range txs {
			tx, err := e.src.Begin(e.ctx)
			if err != nil {
				rt.Fatal(err)
			}
			for _, o := range ops {
				if _, err := tx.Exec(e.ctx, o.sql, o.args...); err != nil {
					tx.Rollback(e.ctx)
					rt.Fatalf("%s: %v", o, err)
				}
			}
			if err := tx.Commit(e.ctx); err != nil {
				rt.Fatal(err)
			}
		}
		if err := caughtUp(e.ctx, e.src, e.dst, targets, "staged"); err != nil {
			rt.Fatalf("txs %v: %v", txs, err)
		}
		if d := stagedSame(t, e); d != "" {
			rt.Fatalf("txs %v: %s", txs, d)
		}
		checks++
	})
	staged := stagedRows(s)
	t.Logf("%d sequences; rows through staging: %v", checks, staged)
	if staged["plain"] == 0 || staged["rows"] != 0 {
		t.Fatalf("rows through staging by target: %v: the property did not exercise staging", staged)
	}
}

// TestStagingRefusedFallsBack: a target that refuses to create the staging
// table (here an event trigger refusing CREATE TEMP TABLE) gets the batch again
// without COPY, then JSON upserts for held rows: every row arrives, nothing
// goes to the DLQ, staging is off and counts nothing.
func TestStagingRefusedFallsBack(t *testing.T) {
	e := newEnv(t)
	e.minCopy = 4
	e.exec(e.src, stagedSrcDDL)
	e.exec(e.dst, stagedDstDDL)
	e.exec(e.dst, `CREATE FUNCTION no_tables() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_query() ILIKE '%CREATE TEMP TABLE%' THEN
    RAISE EXCEPTION 'no temporary tables here';
  END IF;
END $$;
CREATE EVENT TRIGGER no_tables ON ddl_command_start WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION no_tables()`)
	e.startCDC("staged", "public.sp")
	s, _ := e.startSync(e.loadMapping(stagedMapping), 500)
	for _, q := range []string{
		`INSERT INTO sp SELECT g, 'v' || g, g FROM generate_series(1, 40) g`,
		`UPDATE sp SET v = 'first ' || id WHERE id <= 30`,
		`UPDATE sp SET v = 'second ' || id WHERE id > 10`,
	} {
		e.exec(e.src, q)
		if err := caughtUp(e.ctx, e.src, e.dst, []string{"plain", "rows"}, "staged"); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if d := stagedSame(t, e); d != "" {
			t.Fatalf("after %s: %s", q, d)
		}
	}
	for _, a := range s.Appliers() {
		if n := testutil.ToFloat64(a.met.dlq.WithLabelValues(a.target)); n != 0 {
			t.Fatalf("target %s: %v transactions went to the DLQ", a.target, n)
		}
		if a.target == "plain" && !a.stageOff.Load() {
			t.Fatal("the refused staging table did not turn staging off")
		}
	}
	if staged := stagedRows(s); staged["plain"] != 0 || staged["rows"] != 0 {
		t.Fatalf("rows counted as staged: %v", staged)
	}
}

// TestStagedBatchKilledMidway: the target session applying a staged run is
// terminated while its upsert waits on a row lock (the batch's transaction
// dies with its staging table mid-way, as in a crash of the target
// connection): nothing of the batch is visible, the checkpoint has not
// moved, and the retry on a new session (a new staging table) applies the
// batch once, equal to the source.
func TestStagedBatchKilledMidway(t *testing.T) {
	e, s, _ := stagedEnv(t, 4)
	e.exec(e.src, `INSERT INTO sp SELECT g, 'v' || g, g FROM generate_series(1, 40) g`)
	if err := caughtUp(e.ctx, e.src, e.dst, []string{"plain", "rows"}, "staged"); err != nil {
		t.Fatal(err)
	}
	blocker, err := connectPinned(t, e.dstURL).Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blocker.Exec(e.ctx, `SELECT 1 FROM public.sp WHERE id = 35 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	// held rows (and two new ones): through the staging table
	e.exec(e.src, `UPDATE sp SET v = 'killed ' || id WHERE id > 20; INSERT INTO sp VALUES (41, 'new', 41), (42, 'new', 42)`)
	var pid int
	waitCond(t, 30*time.Second, "the staged upsert to wait on the locked row", func() bool {
		err := e.src.QueryRow(e.ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' AND query LIKE '%shadowcube_stage_%'`,
			dbName(t, e.dstURL)).Scan(&pid)
		return err == nil
	})
	// the checkpoint of the last committed batch (cdc heartbeats move it
	// until the blocked batch holds it)
	before, err := ReadCheckpoint(e.ctx, e.dst, "plain", "staged")
	if err != nil {
		t.Fatal(err)
	}
	var stagedNow bool
	if err := e.dst.QueryRow(e.ctx, `SELECT count(*) = 0 FROM public.sp WHERE v LIKE 'killed %'`).Scan(&stagedNow); err != nil || !stagedNow {
		t.Fatalf("rows of the blocked batch are visible (%v)", err)
	}
	var ok bool
	if err := e.dst.QueryRow(e.ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("terminate backend %d: %v %v", pid, ok, err)
	}
	if mid, err := ReadCheckpoint(e.ctx, e.dst, "plain", "staged"); err != nil || mid != before {
		t.Fatalf("checkpoint moved with the killed batch: %+v, was %+v (%v)", mid, before, err)
	}
	if err := blocker.Rollback(e.ctx); err != nil {
		t.Fatal(err)
	}
	if err := caughtUp(e.ctx, e.src, e.dst, []string{"plain", "rows"}, "staged"); err != nil {
		t.Fatal(err)
	}
	if d := stagedSame(t, e); d != "" {
		t.Fatal(d)
	}
	a := s.Appliers()[0]
	for _, x := range s.Appliers() {
		if x.target == "plain" {
			a = x
		}
	}
	if n := testutil.ToFloat64(a.met.retries.WithLabelValues(a.target)); n == 0 {
		t.Fatal("the killed batch was not retried: the fault did not hit")
	}
	if n := testutil.ToFloat64(a.met.dlq.WithLabelValues(a.target)); n != 0 {
		t.Fatalf("%v transactions went to the DLQ", n)
	}
}
