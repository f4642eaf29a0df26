package consumers

import (
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/heal7/shadowcube/schemas"
)

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
	e.exec(e.dst, `UPDATE items SET name = 'drift' WHERE id = 1234`)
	e.exec(e.dst, `DELETE FROM items WHERE id = 2345`)
	e.exec(e.dst, `INSERT INTO items VALUES (999999, 'extra', 1, now())`)
	reps = reconcileAll(t, e, m, 100)
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
	if full := 2 * 3; r.Queries < full {
		t.Fatalf("queries = %d: bisection did not run", r.Queries)
	}
	t.Logf("%d rows: %d queries to find 3 differences", r.SourceRows, r.Queries)
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
// within --settle; real drift stays a difference.
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
	f.tx(f.ev(schemas.OpInsert, "public.items", r, nil, c))
	dst := connectPinned(t, e.dstURL)
	type result struct {
		reps []TableReport
		err  error
	}
	done := make(chan result, 1)
	settling := make(chan int, 1)
	go func() {
		reps, err := Reconcile(e.ctx, ReconcileConfig{Mapping: m, Target: m.Targets[0], Source: e.src, Dest: dst, Settle: 3 * time.Second,
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
	if r0.Differences != 1 || r0.InFlight != 1 || len(r0.Diffs) != 2 {
		t.Fatalf("report = %+v", r0)
	}
	for _, d := range r0.Diffs {
		if d.Key["id"] == "51" && (!d.InFlight || d.Kind != DiffMissing) || d.Key["id"] == "7" && (d.InFlight || d.Kind != DiffChanged) {
			t.Fatalf("diff %+v", d)
		}
	}
}
