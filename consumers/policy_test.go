package consumers

import (
	"strings"
	"testing"
	"time"

	"github.com/heal7/shadowcube/schemas"
)

// TestWhereAndDeletePolicies: the where filter keeps non-matching rows out
// (and removes a row whose update leaves the filter); soft-delete marks rows
// instead of deleting them and a re-insert clears the mark; ignore keeps
// deleted rows; a truncate under soft-delete marks every row.
func TestWhereAndDeletePolicies(t *testing.T) {
	e := newEnv(t)
	e.exec(e.src, `CREATE TABLE docs (id bigint PRIMARY KEY, kind text, body text)`)
	e.exec(e.dst, `CREATE SCHEMA c;
CREATE TABLE c.soft (id bigint PRIMARY KEY, body text, deleted boolean NOT NULL DEFAULT false);
CREATE TABLE c.keep (id bigint PRIMARY KEY, kind text, body text, gone_at timestamptz)`)
	m := e.loadMapping(`
source: {slot: s1}
targets:
  - name: soft
    database_url_env: X
    tables:
      - source: docs
        target: c.soft
        key: [id]
        columns: {body: "upper(body)"}
        where: "kind = 'paper'"
        delete: soft-delete deleted
  - name: keep
    database_url_env: X
    tables:
      - source: docs
        target: c.keep
        key: [id]
        delete: ignore
`)
	f := e.cdc("s1")
	ins := func(id string) schemas.ChangeEvent {
		r, c := f.row("docs", "id = "+id)
		return f.ev(schemas.OpInsert, "public.docs", r, nil, c)
	}
	upd := func(id string) schemas.ChangeEvent {
		r, c := f.row("docs", "id = "+id)
		return f.ev(schemas.OpUpdate, "public.docs", r, nil, c)
	}
	del := func(id string) schemas.ChangeEvent {
		return f.ev(schemas.OpDelete, "public.docs", nil, schemas.Row{"id": ptr(id)}, nil)
	}
	e.exec(e.src, `INSERT INTO docs VALUES (1, 'paper', 'a'), (2, 'crawl', 'b'), (3, 'paper', 'c'), (4, 'paper', 'd')`)
	f.tx(ins("1"), ins("2"), ins("3"), ins("4"))
	e.exec(e.src, `UPDATE docs SET kind = 'crawl' WHERE id = 3`)
	f.tx(upd("3")) // leaves the filter
	e.exec(e.src, `DELETE FROM docs WHERE id = 4`)
	f.tx(del("4"))
	e.exec(e.src, `DELETE FROM docs WHERE id = 1`)
	f.tx(del("1"))
	e.exec(e.src, `INSERT INTO docs VALUES (10, 'paper', 'x')`)
	e.exec(e.src, `UPDATE docs SET body = 'z' WHERE id = 10`)
	last := f.tx(ins("10"))
	_, stop := e.startSync(m, 100)
	e.waitCheckpoint("soft", "s1", last, 30*time.Second)
	e.waitCheckpoint("keep", "s1", last, 30*time.Second)
	stop()
	if got := strings.Join(tableText(t, e.dst, "c.soft"), " "); got != "(1,A,t) (10,Z,f) (3,C,t) (4,D,t)" {
		t.Fatalf("c.soft = %s", got)
	}
	if got := strings.Join(tableText(t, e.dst, "c.keep"), " "); got != "(1,paper,a,) (10,paper,z,) (2,crawl,b,) (3,crawl,c,) (4,paper,d,)" {
		t.Fatalf("c.keep = %s", got)
	}
	if reps := reconcileAll(t, e, m, 100); totalDiffs(reps) != 0 {
		t.Fatalf("reconcile under where/soft-delete/ignore: %s", diffSummary(reps))
	}
	// re-insert of a soft-deleted key clears the mark; truncate marks all
	e.exec(e.src, `INSERT INTO docs VALUES (1, 'paper', 'again')`)
	last = f.tx(ins("1"))
	_, stop = e.startSync(m, 100)
	e.waitCheckpoint("soft", "s1", last, 30*time.Second)
	stop()
	if got := strings.Join(tableText(t, e.dst, "c.soft"), " "); got != "(1,AGAIN,f) (10,Z,f) (3,C,t) (4,D,t)" {
		t.Fatalf("after re-insert c.soft = %s", got)
	}
	last = f.tx(schemas.ChangeEvent{Op: schemas.OpTruncate, Schema: "public", Table: "docs", Truncate: &schemas.Truncate{Tables: []string{"public.docs"}}})
	_, stop = e.startSync(m, 100)
	e.waitCheckpoint("soft", "s1", last, 30*time.Second)
	e.waitCheckpoint("keep", "s1", last, 30*time.Second)
	stop()
	if got := strings.Join(tableText(t, e.dst, "c.soft"), " "); got != "(1,AGAIN,t) (10,Z,t) (3,C,t) (4,D,t)" {
		t.Fatalf("after truncate c.soft = %s", got)
	}
	if n := len(tableText(t, e.dst, "c.keep")); n != 5 {
		t.Fatalf("after truncate under ignore c.keep holds %d rows, want 5", n)
	}
}
