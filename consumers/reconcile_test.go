package consumers

import (
	"context"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/heal7/shadowcube/schemas"
)

// countingDB is a real connection that counts the statements sent through
// it, so a test can bound the work reconcile does independently of the
// reconciler's own Queries count.
type countingDB struct {
	DB
	n atomic.Int64
}

func (c *countingDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c.n.Add(1)
	return c.DB.Exec(ctx, sql, args...)
}

func (c *countingDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.n.Add(1)
	return c.DB.Query(ctx, sql, args...)
}

func (c *countingDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	c.n.Add(1)
	return c.DB.QueryRow(ctx, sql, args...)
}

func reconcileAll(t *testing.T, e *env, m *Mapping, leaf int64) []TableReport {
	t.Helper()
	var out []TableReport
	for _, tg := range m.Targets {
		if err := m.Validate(e.ctx, tg, e.src, e.dst); err != nil {
			t.Fatal(err)
		}
		reps, err := Reconcile(e.ctx, ReconcileConfig{Mapping: m, Target: tg, Source: e.src, Dest: e.dst, LeafRows: leaf, Fanout: 4})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, reps...)
	}
	return out
}

// TestReconcileFindsPlantedDrift: identical tables reconcile clean; a changed
// value, a missing row and an extra row are found exactly, through bisection.
func TestReconcileFindsPlantedDrift(t *testing.T) {
	e := newEnv(t)
	n := "20000"
	if testing.Short() {
		n = "3000"
	}
	ddl := `CREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric, at timestamptz)`
	fill := `INSERT INTO items SELECT g, 'n' || g, g / 7.0, '2024-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, ` + n + `) g`
	e.exec(e.src, ddl)
	e.exec(e.dst, ddl)
	e.exec(e.src, fill)
	e.exec(e.dst, fill)
	m := e.loadMapping(identityMapping)
	reps := reconcileAll(t, e, m, 100)
	if len(reps) != 1 || reps[0].Differences != 0 || reps[0].SourceRows != reps[0].TargetRows {
		t.Fatalf("clean tables: %+v", reps)
	}
	// equal tables: one checksum per side and the sequence catalog query
	if reps[0].Queries != 3 {
		t.Fatalf("clean tables took %d queries, want 3", reps[0].Queries)
	}
	e.exec(e.dst, `UPDATE items SET name = 'drift' WHERE id = 1234`)
	e.exec(e.dst, `DELETE FROM items WHERE id = 2345`)
	e.exec(e.dst, `INSERT INTO items VALUES (999999, 'extra', 1, now())`)
	src, dst := &countingDB{DB: e.src}, &countingDB{DB: e.dst}
	const leaf, fanout = 100, 4
	reps, err := Reconcile(e.ctx, ReconcileConfig{Mapping: m, Target: m.Targets[0], Source: src, Dest: dst, LeafRows: leaf, Fanout: fanout})
	if err != nil {
		t.Fatal(err)
	}
	r := reps[0]
	var got []string
	for _, d := range r.Diffs {
		s := d.Kind + ":" + d.Key["id"]
		for _, c := range d.Columns {
			s += ":" + c.Column + "=" + *c.Source + "/" + *c.Target
		}
		got = append(got, s)
	}
	sort.Strings(got)
	want := "changed:1234:name=n1234/drift extra:999999 missing:2345"
	if r.Differences != 3 || strings.Join(got, " ") != want {
		t.Fatalf("diffs = %q (%d), want %q", got, r.Differences, want)
	}
	// Upper bound: the two whole-table checksums; per differing range and
	// level one boundary query and a checksum per side of each of the fanout
	// sub-ranges; one row fetch per side per differing leaf; the sequence
	// catalog query. Levels: splits (at quantiles of the larger side) until a
	// range holds at most leaf rows, each side off by at most the 3 differences.
	levels := 0
	for size := r.SourceRows + 3; size > leaf; size = (size+fanout-1)/fanout + 3 {
		levels++
	}
	bound := 2 + 3*levels*(1+2*fanout) + 3*2 + 1
	counted := int(src.n.Load() + dst.n.Load())
	if counted != r.Queries {
		t.Fatalf("statements sent = %d, report says %d", counted, r.Queries)
	}
	if counted > bound || counted < 2+3*2 {
		t.Fatalf("%d queries for 3 differences in %d rows: want between %d and %d (bisection, not a scan of every leaf)",
			counted, r.SourceRows, 2+3*2, bound)
	}
	t.Logf("%d rows: %d queries to find 3 differences (bound %d)", r.SourceRows, counted, bound)
}

// TestReconcileSajuMapping reconciles through SQL expressions (jsonb
// documents) after a sync, then finds drift inside a document.
func TestReconcileSajuMapping(t *testing.T) {
	e := newEnv(t)
	e.exec(e.src, sajuLegacyDDL)
	e.exec(e.dst, sajuCubeDDL)
	data, _ := os.ReadFile("testdata/saju.yaml")
	m := e.loadMapping(string(data))
	f := e.cdc("shadowcube")
	e.exec(e.src, `INSERT INTO saju_records (user_id, birth_year, birth_month, birth_day, birth_hour, year_pillar)
	  SELECT 'u' || g, 1950 + g % 60, 1 + g % 12, 1 + g % 28, g % 24, '갑자' FROM generate_series(1, 300) g`)
	var evs []schemas.ChangeEvent
	for i := 1; i <= 300; i++ {
		r, c := f.row("public.saju_records", "id = $1", i)
		evs = append(evs, f.ev(schemas.OpInsert, "public.saju_records", r, nil, c))
	}
	last := f.tx(evs...)
	_, stop := e.startSync(m, 50)
	e.waitCheckpoint("saju-cube", "shadowcube", last, 30*time.Second)
	stop()
	if reps := reconcileAll(t, e, m, 20); reps[0].Differences != 0 || reps[0].TargetRows != 300 {
		t.Fatalf("after sync: %+v", reps[0])
	}
	e.exec(e.dst, `UPDATE cube.saju_charts SET birth_info = jsonb_set(birth_info, '{month}', '13') WHERE id = 77`)
	reps := reconcileAll(t, e, m, 20)
	if reps[0].Differences != 1 || reps[0].Diffs[0].Key["id"] != "77" || reps[0].Diffs[0].Columns[0].Column != "birth_info" {
		t.Fatalf("drift in document: %+v", reps[0])
	}
}

// TestReconcileInFlight: rows the target has not received yet when reconcile
// starts are reported as in flight (not differences) once sync catches up
// within --settle; real drift stays a difference. The settle window is long:
// reconcile re-checks as soon as the target's checkpoint passes the source
// WAL position it saw at the start (CaughtUp), not when the window ends, so
// the test waits on that event and a slow machine cannot fail it.
func TestReconcileInFlight(t *testing.T) {
	e := newEnv(t)
	e.exec(e.src, `CREATE TABLE items (id bigint PRIMARY KEY, v text)`)
	e.exec(e.dst, `CREATE TABLE items (id bigint PRIMARY KEY, v text)`)
	e.exec(e.src, `INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 50) g`)
	e.exec(e.dst, `INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 50) g`)
	e.exec(e.dst, `UPDATE items SET v = 'drift' WHERE id = 7`)
	m := e.loadMapping(identityMapping)
	if err := m.Validate(e.ctx, m.Targets[0], e.src, e.dst); err != nil {
		t.Fatal(err)
	}
	if err := EnsureCheckpoint(e.ctx, e.dst, "cube", "s1"); err != nil {
		t.Fatal(err)
	}
	f := e.cdc("s1")
	e.exec(e.src, `INSERT INTO items VALUES (51, 'new')`)
	r, c := f.row("items", "id = 51")
	// the fake transaction commits well after the WAL position reconcile
	// will read at its start, as a real one would
	var walLSN string
	if err := e.src.QueryRow(e.ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&walLSN); err != nil {
		t.Fatal(err)
	}
	cur, err := schemas.ParseLSN(walLSN)
	if err != nil {
		t.Fatal(err)
	}
	f.lsn = cur + 1<<30
	f.tx(f.ev(schemas.OpInsert, "public.items", r, nil, c))
	dst := connectPinned(t, e.dstURL)
	type result struct {
		reps []TableReport
		err  error
	}
	done := make(chan result, 1)
	settling := make(chan int, 1)
	go func() {
		reps, err := Reconcile(e.ctx, ReconcileConfig{Mapping: m, Target: m.Targets[0], Source: e.src, Dest: dst, Settle: 10 * time.Minute,
			OnSettle: func(_ string, n int) { settling <- n }})
		done <- result{reps, err}
	}()
	if n := <-settling; n != 2 {
		t.Fatalf("%d differences before settling, want 2 (row 51 not synced yet, row 7 drifted)", n)
	}
	e.startSync(m, 100)
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	reps := res.reps
	r0 := reps[0]
	if r0.Differences != 1 || r0.InFlight != 1 || len(r0.Diffs) != 2 || !r0.CaughtUp {
		t.Fatalf("report = %+v", r0)
	}
	for _, d := range r0.Diffs {
		if d.Key["id"] == "51" && (!d.InFlight || d.Kind != DiffMissing) || d.Key["id"] == "7" && (d.InFlight || d.Kind != DiffChanged) {
			t.Fatalf("diff %+v", d)
		}
	}
}

// TestReconcileConfigRejects: out-of-range settings and a table name the
// target does not map are errors naming the field and the known tables;
// nothing is queried (the connections here would fail any statement).
func TestReconcileConfigRejects(t *testing.T) {
	m, err := ParseMapping("m.yaml", []byte(identityMapping))
	if err != nil {
		t.Fatal(err)
	}
	none := &countingDB{} // a nil connection: any statement would panic
	for _, tc := range []struct {
		cfg  ReconcileConfig
		want string
	}{
		{ReconcileConfig{LeafRows: -1}, "LeafRows -1: must be at least 1"},
		{ReconcileConfig{Fanout: 1}, "Fanout 1: must be at least 2"},
		{ReconcileConfig{Settle: -time.Second}, "Settle -1s: must not be negative"},
		{ReconcileConfig{MaxDiffs: -3}, "MaxDiffs -3: must be at least 1"},
		{ReconcileConfig{Tables: []string{"public.nosuch"}}, `table "public.nosuch": target cube maps no such table (known: public.items)`},
	} {
		cfg := tc.cfg
		cfg.Mapping, cfg.Target, cfg.Source, cfg.Dest = m, m.Targets[0], none, none
		reps, err := Reconcile(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) || reps != nil {
			t.Errorf("%+v: %v, want an error containing %q", tc.cfg, err, tc.want)
		}
	}
}
