package consumers

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heal7/shadowcube/schemas"
)

// incompressible is SQL for n random hex characters: pglz finds no repeats,
// so a value of more than ~2 KB is stored out of line (TOASTed) and an
// update that does not change it sends "unchanged" for it.
func incompressible(n int) string {
	return fmt.Sprintf("(SELECT left(string_agg(md5(random()::text || g::text), ''), %d) FROM generate_series(1, %d) g)", n, n/32+1)
}

// toastMapping maps the given tables as identity copies under slot.
func toastMapping(slot string, tables ...string) string {
	s := fmt.Sprintf("source: {slot: %s}\ntargets:\n  - name: cube\n    database_url_env: CUBE_URL\n    tables:\n", slot)
	for _, t := range tables {
		s += fmt.Sprintf("      - source: %s\n        key: [id]\n", t)
	}
	return s
}

// unchangedSeen reports whether the CDC stream holds an update of table
// whose new row left column unchanged (proves the test hit the TOAST case).
func unchangedSeen(t *testing.T, e *env, table, column string) bool {
	seen := false
	scanStream(t, e, func(_ jetstream.Msg, ev schemas.ChangeEvent) {
		if ev.Op == schemas.OpUpdate && ev.Table == table && slices.Contains(ev.Unchanged, column) {
			seen = true
		}
	})
	return seen
}

// TestUnchangedToastKeyChange (issue 11.1, repro A): a primary-key change of
// a row with a TOASTed value the update did not touch. The applier used to
// delete the old key row and insert the new one without the value: the cube
// row got big = NULL, silently. Now the key is updated in place.
func TestUnchangedToastKeyChange(t *testing.T) {
	e := newEnv(t)
	ddl := `CREATE TABLE public.t (id int PRIMARY KEY, small text, big text)`
	e.exec(e.src, ddl)
	e.exec(e.dst, ddl)
	e.startCDC("toasta", "public.t")
	m := e.loadMapping(toastMapping("toasta", "public.t"))
	s, stop := e.startSync(m, 100)
	e.exec(e.src, `INSERT INTO t VALUES (1, 'a', `+incompressible(12800)+`)`)
	// the update must be streamed, not folded into the snapshot
	waitCaughtUp(t, e.ctx, e.src, e.dst, "cube", "toasta", 60*time.Second)
	e.exec(e.src, `UPDATE t SET id = 2 WHERE id = 1`)
	waitCaughtUp(t, e.ctx, e.src, e.dst, "cube", "toasta", 60*time.Second)
	stop()
	if !unchangedSeen(t, e, "t", "big") {
		t.Fatal("the key change did not carry big as unchanged TOAST: the test missed its case")
	}
	var id int
	var n int
	if err := e.dst.QueryRow(e.ctx, `SELECT id, coalesce(length(big), -1) FROM t`).Scan(&id, &n); err != nil {
		t.Fatal(err)
	}
	if id != 2 || n != 12800 {
		t.Fatalf("cube row id %d, length(big) %d; want id 2 with 12800 characters", id, n)
	}
	if reps := reconcileAll(t, e, m, 100); totalDiffs(reps) != 0 {
		t.Fatalf("reconcile: %s", diffSummary(reps))
	}
	if n := testutil.ToFloat64(s.appliers[0].met.reselected.WithLabelValues("cube")); n != 0 {
		t.Errorf("%v rows re-read from the source; the target held the row, want 0", n)
	}
}

// TestUnchangedToastNotNull (issue 17.1, repro B): an ordinary update of
// another column of a row whose NOT NULL body is TOASTed. The applier used
// to apply it as INSERT ... ON CONFLICT without body: PostgreSQL checks NOT
// NULL on the proposed row first (SQLSTATE 23502) and sync stopped at a
// poison transaction. Now it is an UPDATE of the carried columns.
func TestUnchangedToastNotNull(t *testing.T) {
	e := newEnv(t)
	ddl := `CREATE TABLE public.p (id int PRIMARY KEY, title text, body text NOT NULL CHECK (length(body) > 100))`
	e.exec(e.src, ddl)
	e.exec(e.dst, ddl)
	e.startCDC("toastb", "public.p")
	m := e.loadMapping(toastMapping("toastb", "public.p"))
	s, stop := e.startSync(m, 100)
	e.exec(e.src, `INSERT INTO p VALUES (1, 'first', `+incompressible(12000)+`)`)
	waitCaughtUp(t, e.ctx, e.src, e.dst, "cube", "toastb", 60*time.Second)
	e.exec(e.src, `UPDATE p SET title = 'x'`)
	waitCaughtUp(t, e.ctx, e.src, e.dst, "cube", "toastb", 60*time.Second)
	stop()
	if !unchangedSeen(t, e, "p", "body") {
		t.Fatal("the update did not carry body as unchanged TOAST: the test missed its case")
	}
	want := tableText(t, e.src, "p")
	if got := tableText(t, e.dst, "p"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("cube differs from source:\n got %.80q\nwant %.80q", got, want)
	}
	if n := testutil.ToFloat64(s.appliers[0].met.dlq.WithLabelValues("cube")); n != 0 {
		t.Fatalf("%v poison transactions", n)
	}
}

// TestUnchangedToastFromSource: the cases where the target cannot supply an
// unchanged TOAST value, each completed by re-reading the row from the
// source: a row entering the where filter through an update, an update of a
// row the target lacks, a computed column reading the unchanged value
// together with a sent one, a key change whose old target row is missing.
func TestUnchangedToastFromSource(t *testing.T) {
	e := newEnv(t)
	e.exec(e.src, `CREATE TABLE public.d (id int PRIMARY KEY, kind text, title text, body text NOT NULL)`)
	e.exec(e.dst, `CREATE TABLE public.d (id int PRIMARY KEY, kind text, title text, body text NOT NULL);
CREATE TABLE public.dc (id int PRIMARY KEY, summary text NOT NULL, n int)`)
	e.startCDC("toastc", "public.d")
	m := e.loadMapping(`
source: {slot: toastc}
targets:
  - name: cube
    database_url_env: CUBE_URL
    tables:
      - source: public.d
        key: [id]
        where: "kind = 'paper'"
  - name: comp
    database_url_env: CUBE_URL
    tables:
      - source: public.d
        target: public.dc
        key: [id]
        columns: {summary: "title || ':' || md5(body)", n: "length(body)"}
`)
	big := incompressible(9000)
	e.exec(e.src, `INSERT INTO d VALUES (1, 'crawl', 'a', `+big+`), (2, 'paper', 'b', `+big+`), (3, 'paper', 'c', `+big+`)`)
	s, stop := e.startSync(m, 100)
	waitCaughtUp(t, e.ctx, e.src, e.dst, "cube", "toastc", 60*time.Second)
	waitCaughtUp(t, e.ctx, e.src, e.dst, "comp", "toastc", 60*time.Second)
	e.exec(e.dst, `DELETE FROM d WHERE id = 3; DELETE FROM dc WHERE id = 3`) // the target lacks row 3
	e.exec(e.src, `UPDATE d SET kind = 'paper' WHERE id = 1`)                // enters the filter
	e.exec(e.src, `UPDATE d SET title = 'b2' WHERE id = 2`)                  // summary reads title and body
	e.exec(e.src, `UPDATE d SET title = 'c2' WHERE id = 3`)                  // the target lacks the row
	e.exec(e.dst, `DELETE FROM d WHERE id = 2`)                              // old key row missing...
	e.exec(e.src, `UPDATE d SET id = 20 WHERE id = 2`)                       // ...at the key change
	waitCaughtUp(t, e.ctx, e.src, e.dst, "cube", "toastc", 60*time.Second)
	waitCaughtUp(t, e.ctx, e.src, e.dst, "comp", "toastc", 60*time.Second)
	stop()
	if reps := reconcileAll(t, e, m, 100); totalDiffs(reps) != 0 {
		t.Fatalf("reconcile: %s", diffSummary(reps))
	}
	var rows int
	e.dst.QueryRow(e.ctx, `SELECT count(*) FROM d WHERE length(body) = 9000`).Scan(&rows)
	if rows != 3 {
		t.Fatalf("cube d holds %d full rows, want 3 (1, 3, 20)", rows)
	}
	// cube: row 1 entering, row 3 missing, row 20 old key missing;
	// comp: row 1 and 2 (summary mixes title and body), row 3 missing, 20 (key change with mixed read)
	if n := testutil.ToFloat64(s.appliers[0].met.reselected.WithLabelValues("cube")) + testutil.ToFloat64(s.appliers[1].met.reselected.WithLabelValues("comp")); n < 6 {
		t.Errorf("%v rows re-read from the source, want at least 6", n)
	}
}
