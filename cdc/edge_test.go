package cdc

import (
	"crypto/rand"
	"encoding/base64"
	"slices"
	"testing"
	"time"

	"github.com/heal7/shadowcube/schemas"
)

func streamed(gs []got) []*schemas.ChangeEvent {
	var out []*schemas.ChangeEvent
	for _, g := range gs {
		if g.ev.Op != schemas.OpSnapshot {
			out = append(out, g.ev)
		}
	}
	return out
}

func TestTOAST(t *testing.T) {
	e := newEnv(t)
	e.exec(t, "CREATE TABLE toast_d (id int PRIMARY KEY, big text, other int)")
	e.exec(t, "CREATE TABLE toast_f (id int PRIMARY KEY, big text, other int)")
	e.exec(t, "ALTER TABLE toast_f REPLICA IDENTITY FULL")
	run := e.start(t, e.config("toast"))
	waitHeartbeat(t, e.js)
	raw := make([]byte, 60000)
	rand.Read(raw)
	big := base64.StdEncoding.EncodeToString(raw) // incompressible, > 8 KB: stored out of line
	for _, tbl := range []string{"toast_d", "toast_f"} {
		e.exec(t, "INSERT INTO "+tbl+" VALUES (1, $1, 0)", big)
		e.exec(t, "UPDATE "+tbl+" SET other = 1 WHERE id = 1")
	}
	d := streamed(waitEvents(t, e.js, "cdc.*.public.toast_d", 2, 30*time.Second))
	f := streamed(waitEvents(t, e.js, "cdc.*.public.toast_f", 2, 30*time.Second))
	run.stop(t)
	if *d[0].New["big"] != big || *f[0].New["big"] != big {
		t.Fatal("insert lost the big value")
	}
	// DEFAULT: the value is not sent; it is marked unchanged, never NULL.
	u := d[1]
	if _, ok := u.New["big"]; ok || !slices.Equal(u.Unchanged, []string{"big"}) || *u.New["other"] != "1" || u.Old != nil {
		t.Fatalf("DEFAULT update: new %s unchanged %v old %v", rowString(u.New), u.Unchanged, u.Old)
	}
	// FULL: the old tuple carries the value; it fills the new row.
	u = f[1]
	if u.New["big"] == nil || *u.New["big"] != big || len(u.Unchanged) != 0 || u.Old["big"] == nil || *u.Old["other"] != "0" {
		t.Fatalf("FULL update: unchanged %v, new big present %v, old %v", u.Unchanged, u.New["big"] != nil, len(u.Old))
	}
	if !slices.Equal(u.Key, []string{"id"}) {
		t.Fatalf("FULL table key %v, want the primary key", u.Key)
	}
}

func TestKeysTruncateSchemaOrigins(t *testing.T) {
	e := newEnv(t)
	e.exec(t, "CREATE TABLE k (id int PRIMARY KEY, v text)")
	e.exec(t, "INSERT INTO k VALUES (1, 'a'), (2, 'b'), (5, 'e')")
	e.exec(t, "CREATE TABLE ta (id serial PRIMARY KEY)")
	e.exec(t, "CREATE TABLE tb (id int PRIMARY KEY)")
	e.exec(t, "CREATE TABLE tc (id int PRIMARY KEY, a int REFERENCES ta)")
	e.exec(t, "CREATE TABLE s (id int PRIMARY KEY, v int)")
	cfg := e.config("edge")
	cfg.IgnoreOrigins = []string{"cube-a"}
	run := e.start(t, cfg)
	waitEvents(t, e.js, "cdc.*.public.k", 3, 30*time.Second)

	// Primary key swap in one transaction.
	e.exec(t, "BEGIN; UPDATE k SET id = -1 WHERE id = 1; UPDATE k SET id = 1 WHERE id = 2; UPDATE k SET id = 2 WHERE id = -1; COMMIT")
	// Delete then re-insert the same key.
	e.exec(t, "BEGIN; DELETE FROM k WHERE id = 5; INSERT INTO k VALUES (5, 'E'); COMMIT")
	// Multi-table truncate with CASCADE and RESTART IDENTITY.
	e.exec(t, "INSERT INTO ta DEFAULT VALUES; INSERT INTO tb VALUES (1); INSERT INTO tc VALUES (1, 1)")
	e.exec(t, "TRUNCATE ta, tb RESTART IDENTITY CASCADE")
	// Schema changes mid-stream.
	e.exec(t, "INSERT INTO s VALUES (1, 1)")
	e.exec(t, "BEGIN; ALTER TABLE s ADD COLUMN extra text DEFAULT 'x'; INSERT INTO s VALUES (2, 2, 'y'); COMMIT")
	e.exec(t, "ALTER TABLE s ALTER COLUMN v TYPE bigint")
	e.exec(t, "INSERT INTO s VALUES (3, 3, 'z')")
	e.exec(t, "ALTER TABLE s DROP COLUMN extra")
	e.exec(t, "INSERT INTO s VALUES (4, 4)")
	// Origins: a transaction written by sync for cube-a is dropped, others kept.
	e.exec(t, "BEGIN; SELECT pg_logical_emit_message(true, 'shadowcube.origin', 'cube-a'); INSERT INTO k VALUES (10, 'loop'); COMMIT")
	e.exec(t, "BEGIN; SELECT pg_logical_emit_message(true, 'shadowcube.origin', 'cube-b'); INSERT INTO k VALUES (11, 'keep'); COMMIT")

	ks := streamed(waitEvents(t, e.js, "cdc.*.public.k", 3+5+1, 30*time.Second))
	ss := streamed(waitEvents(t, e.js, "cdc.*.public.s", 4+3, 30*time.Second))
	all := readAll(t, e.js, "cdc.>")
	run.stop(t)

	if len(ks) != 6 {
		t.Fatalf("k: %d streamed events, want 6", len(ks))
	}
	swap := ks[:3]
	for i, want := range [][2]string{{"1", "-1"}, {"2", "1"}, {"-1", "2"}} {
		ev := swap[i]
		if ev.Op != schemas.OpUpdate || ev.Old == nil || *ev.Old["id"] != want[0] || *ev.New["id"] != want[1] || ev.Index != i || ev.TxSize != 3 {
			t.Fatalf("swap step %d: %s old %s new %s index %d/%d", i, ev.Op, rowString(ev.Old), rowString(ev.New), ev.Index, ev.TxSize)
		}
		if _, ok := ev.Old["v"]; ok {
			t.Fatalf("old key of a DEFAULT table carries non-key column v: %s", rowString(ev.Old))
		}
	}
	if ks[3].Op != schemas.OpDelete || *ks[3].Old["id"] != "5" || ks[4].Op != schemas.OpInsert || *ks[4].New["v"] != "E" ||
		ks[3].CommitLSN != ks[4].CommitLSN || ks[3].Index != 0 || ks[4].Index != 1 {
		t.Fatalf("delete + re-insert: %+v %+v", ks[3], ks[4])
	}
	if *ks[5].New["id"] != "11" {
		t.Fatalf("origin filter: last k event %s, want id 11 (id 10 carries an ignored origin)", rowString(ks[5].New))
	}

	var truncs []*schemas.ChangeEvent
	for _, g := range all {
		if g.ev.Op == schemas.OpTruncate {
			truncs = append(truncs, g.ev)
		}
	}
	if len(truncs) != 3 {
		t.Fatalf("%d truncate events, want 3 (ta, tb and tc by cascade)", len(truncs))
	}
	for i, ev := range truncs {
		tr := ev.Truncate
		if tr == nil || !tr.Cascade || !tr.RestartIdentity || len(tr.Tables) != 3 || ev.Index != i || ev.TxSize != 3 {
			t.Fatalf("truncate event %d: %+v %+v", i, ev, tr)
		}
		if !slices.Contains(tr.Tables, "public."+ev.Table) {
			t.Fatalf("truncate event of %s lists %v", ev.Table, tr.Tables)
		}
	}

	// s: insert 1; [schema, insert 2]; [schema, insert 3]; [schema, insert 4].
	ops := []schemas.Op{}
	for _, ev := range ss {
		ops = append(ops, ev.Op)
	}
	want := []schemas.Op{schemas.OpInsert, schemas.OpSchema, schemas.OpInsert, schemas.OpSchema, schemas.OpInsert, schemas.OpSchema, schemas.OpInsert}
	if !slices.Equal(ops, want) {
		t.Fatalf("s ops %v, want %v", ops, want)
	}
	if ss[1].TxSize != 2 || ss[1].Index != 0 || ss[2].Index != 1 || len(ss[1].Columns) != 3 || *ss[2].New["extra"] != "y" {
		t.Fatalf("schema event after ADD COLUMN: %+v / %s", ss[1], rowString(ss[2].New))
	}
	if ss[3].Columns[1].Type != "bigint" || *ss[4].New["v"] != "3" {
		t.Fatalf("type change: columns %+v", ss[3].Columns)
	}
	if len(ss[5].Columns) != 2 || len(ss[6].New) != 2 {
		t.Fatalf("drop column: columns %+v new %s", ss[5].Columns, rowString(ss[6].New))
	}
}
