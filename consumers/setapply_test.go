package consumers

import (
	"bytes"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heal7/shadowcube/schemas"
)

// TestPlanCopy: only plainly mapped tables get COPY runs; a where filter,
// a computed column, the soft-delete policy, a conflict policy or a type
// change keep the upsert; a batch without copy upserts everything.
func TestPlanCopy(t *testing.T) {
	tg := batchTarget(t)
	for _, tm := range tg.Tables {
		want := tm.SourceTable == "t" || tm.SourceTable == "p" || tm.SourceTable == "g"
		if got := planCopy(tm) != nil; got != want {
			t.Errorf("table %s: copy plan %v, want %v", tm.Source, got, want)
		}
	}
	tm := tg.table("public", "t")
	p := planCopy(tm)
	if p.copy != `COPY "public"."t" ("id", "small", "big") FROM STDIN` || !slices.Equal(p.cols, []string{"id", "small", "big"}) {
		t.Errorf("plan of t: %q %q", p.copy, p.cols)
	}
	c := *tm
	c.Conflict = ConflictLegacyWins
	if planCopy(&c) != nil {
		t.Error("a table with a conflict policy got a copy plan")
	}
	c = *tm
	c.tgtTypes = map[string]string{"id": "integer", "small": "character varying", "big": "text"}
	if planCopy(&c) != nil {
		t.Error("a column whose type changes got a copy plan")
	}

	ins := change(schemas.OpInsert, "t", "id=1 small=a big=x", "")
	b := newStmtBatch(tg, nil)
	b.addUnit([]*schemas.ChangeEvent{ins})
	if st, _ := b.statements(); len(st) != 1 || st[0].copy == nil {
		t.Fatalf("insert of t: %+v, want one copy run", st)
	}
	b = newStmtBatch(tg, nil)
	b.minCopy = 2
	b.addUnit([]*schemas.ChangeEvent{ins})
	if st, _ := b.statements(); len(st) != 1 || st[0].copy != nil || describe(t, tg, st[0]) != "upsert t [1:big=x:small=a]" {
		t.Fatalf("one insert of t with runs of 2 rows copied: %+v, want one upsert", st)
	}
	b = newStmtBatch(tg, nil)
	b.noCopy = true
	b.addUnit([]*schemas.ChangeEvent{ins})
	if st, _ := b.statements(); len(st) != 1 || st[0].copy != nil || describe(t, tg, st[0]) != "upsert t [1:big=x:small=a]" {
		t.Fatalf("insert of t without copy: %+v, want one upsert", st)
	}
}

// TestAppendCopyRow: COPY text format escapes backslash, tab, newline and
// carriage return; NULL and a missing value are \N.
func TestAppendCopyRow(t *testing.T) {
	s := func(v string) *string { return &v }
	var buf bytes.Buffer
	appendCopyRow(&buf, []string{"a", "b", "c", "d", "e"}, schemas.Row{
		"a": s("x\ty\nz\r\\"), "b": nil, "c": s(`\N`), "e": s(""),
	})
	want := `x\ty\nz\r\\` + "\t" + `\N` + "\t" + `\\N` + "\t" + `\N` + "\t" + "\n"
	if buf.String() != want {
		t.Fatalf("got %q, want %q", buf.String(), want)
	}
}

// TestCopyRunsMatchUpserts: rows with values COPY text format must escape
// (tabs, newlines, backslashes, a literal \N, \., empty strings, NULLs,
// bytea, arrays, JSON, time stamps) reach a COPY target and an upsert target
// equal to the source; a later transaction re-sending held keys together
// with new ones goes through the probe (held keys upserted, new ones
// copied), and the result still equals the source.
func TestCopyRunsMatchUpserts(t *testing.T) {
	e := newEnv(t)
	ddl := `CREATE TABLE public.sv (id int PRIMARY KEY, t text, b bytea, j jsonb, a text[], ts timestamptz, n numeric)`
	e.exec(e.src, ddl)
	e.exec(e.dst, ddl)
	e.exec(e.dst, `CREATE SCHEMA r; CREATE TABLE r.sv (LIKE public.sv INCLUDING ALL)`)
	e.exec(e.src, `INSERT INTO sv VALUES
	 (1, E'tab\there\nnew line\r\\back', E'\\x00ff5c09', '{"k": "v\\n\\t", "q": "\\\\"}', ARRAY[E'a\tb', NULL, '\N', ''], '2024-02-29 23:59:59.123456+05:30', 'NaN'),
	 (2, '\N', '', '[]', '{}', 'infinity', '-0.000100'),
	 (3, E'\\.', NULL, NULL, NULL, NULL, NULL),
	 (4, '', E'\\x5c4e', 'null', ARRAY['\\.'], '1999-01-08 04:05:06', '123456789012345678901234567890.5'),
	 (5, 'ünïcødé ✓ 𝄞', E'\\x', '"s"', ARRAY['x'], 'epoch', '1e-5')`)
	m := e.loadMapping(`
source: {slot: s1}
targets:
  - name: cp
    database_url_env: X
    tables:
      - source: public.sv
        key: [id]
  - name: rw
    database_url_env: X
    tables:
      - source: public.sv
        target: r.sv
        key: [id]
        columns: {t: "(t)", b: b, j: j, a: a, ts: ts, n: n}
`)
	s, stop := e.startSync(m, 100)
	defer stop()
	f := e.cdc("s1")
	var first []schemas.ChangeEvent
	for id := 1; id <= 4; id++ {
		r, c := f.row("public.sv", "id = $1", id)
		first = append(first, f.ev(schemas.OpInsert, "public.sv", r, nil, c))
	}
	last := f.tx(first...)
	e.waitCheckpoint("cp", "s1", last, 60*time.Second)
	e.waitCheckpoint("rw", "s1", last, 60*time.Second)
	// held keys 1 and 2 changed and re-sent whole, with the new key 5
	e.exec(e.src, `UPDATE sv SET t = E'changed\t' || id WHERE id IN (1, 2)`)
	var second []schemas.ChangeEvent
	for _, id := range []int{1, 5, 2} {
		r, c := f.row("public.sv", "id = $1", id)
		op := schemas.OpUpdate
		if id == 5 {
			op = schemas.OpInsert
		}
		second = append(second, f.ev(op, "public.sv", r, nil, c))
	}
	last = f.tx(second...)
	e.waitCheckpoint("cp", "s1", last, 60*time.Second)
	e.waitCheckpoint("rw", "s1", last, 60*time.Second)
	want := tableText(t, e.src, "public.sv")
	if len(want) != 5 {
		t.Fatalf("source holds %d rows", len(want))
	}
	for _, table := range []string{"public.sv", "r.sv"} {
		if got := tableText(t, e.dst, table); !slices.Equal(got, want) {
			t.Errorf("%s:\n  got  %q\n  want %q", table, got, want)
		}
	}
	copied, staged := map[string]float64{}, map[string]float64{}
	for _, a := range s.Appliers() {
		copied[a.target] = testutil.ToFloat64(a.met.copied.WithLabelValues(a.target))
		staged[a.target] = testutil.ToFloat64(a.met.staged.WithLabelValues(a.target))
	}
	// 4 rows by the optimistic COPY, then key 5 after the probe; held keys
	// 1 and 2 through the staging table
	if copied["cp"] != 5 || copied["rw"] != 0 || staged["cp"] != 2 || staged["rw"] != 0 {
		t.Errorf("rows copied by target: %v, want cp 5, rw 0; staged: %v, want cp 2, rw 0", copied, staged)
	}
}

// TestCopyFailureFallsBackToUpserts: a COPY the target refuses (here a
// trigger refusing rows inserted by COPY, not by INSERT) rolls the batch
// back and applies it again with upserts: the rows arrive, nothing goes to
// the DLQ, and the later batches still apply.
func TestCopyFailureFallsBackToUpserts(t *testing.T) {
	e := newEnv(t)
	ddl := `CREATE TABLE public.nc (id int PRIMARY KEY, v text)`
	e.exec(e.src, ddl)
	e.exec(e.dst, ddl)
	// the refusals are counted by a sequence: nextval survives the rollback
	e.exec(e.dst, `CREATE SEQUENCE copy_refused`)
	e.exec(e.dst, `CREATE FUNCTION no_copy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_query() ILIKE '%COPY %' THEN
    PERFORM nextval('copy_refused');
    RAISE EXCEPTION 'rows of nc come through INSERT only';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER no_copy BEFORE INSERT ON public.nc FOR EACH ROW EXECUTE FUNCTION no_copy()`)
	m := e.loadMapping("source: {slot: s1}\ntargets:\n  - name: cube\n    database_url_env: X\n    on_poison: skip\n    tables:\n      - source: public.nc\n        key: [id]\n")
	s, stop := e.startSync(m, 100)
	defer stop()
	f := e.cdc("s1")
	var last schemas.LSN
	for id := 1; id <= 3; id++ {
		e.exec(e.src, `INSERT INTO nc VALUES ($1, $2)`, id, "v\t"+strconv.Itoa(id))
		r, c := f.row("public.nc", "id = $1", id)
		last = f.tx(f.ev(schemas.OpInsert, "public.nc", r, nil, c))
	}
	e.waitCheckpoint("cube", "s1", last, 60*time.Second)
	if got, want := tableText(t, e.dst, "public.nc"), tableText(t, e.src, "public.nc"); !slices.Equal(got, want) {
		t.Fatalf("target %q, want %q", got, want)
	}
	var refused bool
	if err := e.dst.QueryRow(e.ctx, `SELECT is_called FROM copy_refused`).Scan(&refused); err != nil || !refused {
		t.Fatalf("the target never refused a COPY (%v): the fault did not hit", err)
	}
	a := s.Appliers()[0]
	if n := testutil.ToFloat64(a.met.dlq.WithLabelValues(a.target)); n != 0 {
		t.Fatalf("%v transactions went to the DLQ", n)
	}
	if n := testutil.ToFloat64(a.met.copied.WithLabelValues(a.target)); n != 0 {
		t.Fatalf("%v rows counted as copied: the trigger let COPY through", n)
	}
}
