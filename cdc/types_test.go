package cdc

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"pgregory.net/rapid"

	"github.com/heal7/shadowcube/internal/pgsession"
	"github.com/heal7/shadowcube/schemas"
)

const typesDDL = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TABLE typed (
	id int PRIMARY KEY,
	num numeric, num_s numeric(12,4), f8 float8, f4 real,
	tstz timestamptz, ts timestamp, d date, tm time, tmtz timetz, iv interval,
	b bytea, ia int[], ta text[], j json, jb jsonb, m mood, p posint, u uuid,
	bo boolean, ip inet, txt text, vc varchar(10), ch char(5), bits varbit, pt point, mon money
)`

// typedRows are the values of the table test, by column, as SQL literals.
var typedRows = []map[string]string{
	{"num": "'1.10'", "num_s": "'3.14159'", "f8": "'0.1'", "f4": "'1.5'", "tstz": "'2024-02-29 12:34:56.789012+09'",
		"ts": "'2024-02-29 23:59:59.999999'", "d": "'2024-02-29'", "tm": "'23:59:59.5'", "tmtz": "'10:00:00+05:30'",
		"iv": "'1 year 2 mons 3 days 04:05:06.789'", "b": `'\x00ff10'`, "ia": "'{{1,NULL},{3,4}}'", "ta": `'{"a,b",NULL,"c\"d","NULL"}'`,
		"j": `'{"b":1,  "a":[1, 2] }'`, "jb": `'{"b":1,  "a":[1, 2] }'`, "m": "'happy'", "p": "7", "u": "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
		"bo": "true", "ip": "'192.168.0.1/24'", "txt": `E'tab\there\nnewline \\ back ''quote'' 한글 🎉'`, "vc": "'short'", "ch": "'ab'",
		"bits": "B'10101'", "pt": "'(1.5,-2)'", "mon": "12.34"},
	{"num": "'NaN'", "num_s": "'-0.0001'", "f8": "'NaN'", "f4": "'-Infinity'", "tstz": "'infinity'", "ts": "'-infinity'",
		"d": "'infinity'", "iv": "'-1 days +02:00:00'", "b": `''`, "ia": "'{}'", "ta": "'{}'", "j": "'null'", "jb": "'null'",
		"txt": "''", "f8x": ""},
	{"num": "'Infinity'", "f8": "'Infinity'", "f4": "'3.4028235e38'", "tstz": "'-infinity'", "num_s": "'99999999.9999'"},
	{"num": "'-Infinity'", "f8": "'1e308'", "tstz": "'1970-01-01 00:00:00+00'", "ia": "'{{{1}},{{NULL}}}'"},
	{"num": "'123456789012345678901234567890.123456789012345678901234567890'", "f8": "'-0'", "f4": "'1.17549435e-38'",
		"tstz": "'0001-01-01 00:00:00+00 BC'", "d": "'4713-01-01 BC'"},
	{}, // every column NULL
}

func insertTyped(t testing.TB, e *env, id int, row map[string]string) {
	t.Helper()
	cols, vals := []string{"id"}, []string{fmt.Sprint(id)}
	for c, v := range row {
		if v == "" {
			continue
		}
		cols = append(cols, c)
		vals = append(vals, v)
	}
	e.exec(t, fmt.Sprintf("INSERT INTO typed (%s) VALUES (%s)", strings.Join(cols, ", "), strings.Join(vals, ", ")))
}

// sourceText reads a row as the server prints it, with the pinned settings,
// through a path independent of pgoutput.
func sourceText(t testing.TB, url, table string, id int) schemas.Row {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	pgsession.Apply(cfg.RuntimeParams)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rr := conn.PgConn().ExecParams(ctx, fmt.Sprintf("SELECT * FROM %s WHERE id = %d", table, id), nil, nil, nil, nil)
	fields := rr.FieldDescriptions()
	row := schemas.Row{}
	if !rr.NextRow() {
		t.Fatalf("row %d of %s not found", id, table)
	}
	for i, v := range rr.Values() {
		if v == nil {
			row[fields[i].Name] = nil
		} else {
			row[fields[i].Name] = str(string(v))
		}
	}
	if _, err := rr.Close(); err != nil {
		t.Fatal(err)
	}
	return row
}

func TestExactValues(t *testing.T) {
	e := newEnv(t)
	e.exec(t, typesDDL)
	for i, row := range typedRows {
		insertTyped(t, e, i+1, row) // copied by the snapshot
	}
	run := e.start(t, e.config("types"))
	waitEvents(t, e.js, "cdc.*.public.typed", len(typedRows), 30*time.Second)
	for i, row := range typedRows {
		insertTyped(t, e, 100+i+1, row) // streamed
	}
	gs := waitEvents(t, e.js, "cdc.*.public.typed", 2*len(typedRows), 30*time.Second)
	run.stop(t)
	for _, g := range gs {
		id := 0
		fmt.Sscan(*g.ev.New["id"], &id)
		want := sourceText(t, e.url, "typed", id)
		if a, b := rowString(g.ev.New), rowString(want); a != b {
			t.Errorf("%s row %d:\n got %s\nwant %s", g.ev.Op, id, a, b)
		}
	}
	// A few exact forms spelled out, so the test does not only compare the
	// server with itself.
	byID := map[string]*schemas.ChangeEvent{}
	for _, g := range gs {
		byID[*g.ev.New["id"]] = g.ev
	}
	for _, c := range []struct{ id, col, want string }{
		{"101", "num", "1.10"}, {"101", "b", `\x00ff10`}, {"101", "ia", "{{1,NULL},{3,4}}"},
		{"101", "j", `{"b":1,  "a":[1, 2] }`}, {"101", "jb", `{"a": [1, 2], "b": 1}`},
		{"101", "tstz", "2024-02-29 03:34:56.789012+00"}, {"101", "ch", "ab   "}, {"101", "p", "7"}, {"101", "m", "happy"},
		{"102", "num", "NaN"}, {"102", "tstz", "infinity"}, {"102", "ts", "-infinity"}, {"102", "f4", "-Infinity"},
		{"103", "num", "Infinity"}, {"104", "num", "-Infinity"}, {"104", "ia", "{{{1}},{{NULL}}}"}, {"104", "f8", "1e+308"},
		{"105", "num", "123456789012345678901234567890.123456789012345678901234567890"},
		{"1", "num", "1.10"}, {"2", "tstz", "infinity"},
	} {
		ev := byID[c.id]
		if ev == nil || ev.New[c.col] == nil || *ev.New[c.col] != c.want {
			t.Errorf("row %s column %s: got %v, want %q", c.id, c.col, ev.New[c.col], c.want)
		}
	}
	ev := byID["106"]
	if v, ok := ev.New["num"]; !ok || v != nil {
		t.Errorf("NULL column: present %v value %v, want present and nil", ok, v)
	}
	types := map[string]string{}
	for _, c := range ev.Columns {
		types[c.Name] = c.Type
	}
	for col, typ := range map[string]string{"num_s": "numeric(12,4)", "ia": "integer[]", "m": "mood", "p": "posint",
		"vc": "character varying(10)", "ch": "character(5)", "tstz": "timestamp with time zone", "jb": "jsonb", "j": "json"} {
		if types[col] != typ {
			t.Errorf("column %s type %q, want %q", col, types[col], typ)
		}
	}
}

// TestExactValuesProperty inserts random rows (through text parameters, so
// any text the type accepts) and checks each streamed event byte for byte
// against the server's own text output.
func TestExactValuesProperty(t *testing.T) {
	e := newEnv(t)
	e.exec(t, `CREATE TABLE prop (id int PRIMARY KEY, t text, n numeric, f float8, a int[], ta text[], b bytea, jb jsonb, ts timestamptz)`)
	run := e.start(t, e.config("prop"))
	defer run.stop(t)
	ctx := context.Background()
	// Wait for the slot: a heartbeat on the stream proves streaming started.
	waitHeartbeat(t, e.js)
	cons, err := e.js.OrderedConsumer(ctx, schemas.StreamCDC, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"cdc.*.public.prop"}})
	if err != nil {
		t.Fatal(err)
	}
	id := 0
	text := rapid.StringOf(rapid.RuneFrom(nil, runeRanges...).Filter(func(r rune) bool { return r != 0 }))
	rapid.Check(t, func(rt *rapid.T) {
		id++
		num := rapid.OneOf(rapid.Just("NaN"), rapid.Just("Infinity"), rapid.Just("-Infinity"),
			rapid.Map(rapid.Int64(), func(i int64) string { return fmt.Sprint(i) }),
			rapid.Custom(func(rt *rapid.T) string {
				return fmt.Sprintf("%d.%s", rapid.Int64().Draw(rt, "int"), rapid.StringMatching(`[0-9]{1,30}`).Draw(rt, "frac"))
			})).Draw(rt, "numeric")
		f := rapid.Float64().Draw(rt, "float")
		ints := rapid.SliceOfN(rapid.Ptr(rapid.Int32(), true), 0, 6).Draw(rt, "ints")
		texts := rapid.SliceOfN(rapid.Ptr(text, true), 0, 4).Draw(rt, "texts")
		bytes := rapid.SliceOfN(rapid.Byte(), 0, 64).Draw(rt, "bytes")
		ts := rapid.Int64Range(-200000000000, 200000000000).Draw(rt, "ts")
		tv := text.Draw(rt, "text")
		jb := map[string]any{"s": tv, "n": rapid.Int64().Draw(rt, "jn"), "nested": []any{nil, true, 1.5}}
		if _, err := e.db.Exec(ctx, `INSERT INTO prop VALUES ($1, $2, $3::numeric, $4, $5, $6, $7, $8, to_timestamp($9::float8 / 1000))`,
			id, tv, num, f, ints, texts, bytes, jb, ts); err != nil {
			rt.Fatalf("insert: %v", err)
		}
		msgs, err := cons.Fetch(1, jetstream.FetchMaxWait(20*time.Second))
		if err != nil {
			rt.Fatalf("fetch: %v", err)
		}
		var ev schemas.ChangeEvent
		n := 0
		for m := range msgs.Messages() {
			n++
			if ev, err = schemas.DecodeChangeEvent(m.Data()); err != nil {
				rt.Fatalf("decode: %v", err)
			}
		}
		if n != 1 {
			rt.Fatalf("no event for row %d: %v", id, msgs.Error())
		}
		want := sourceText(t, e.url, "prop", id)
		if a, b := rowString(ev.New), rowString(want); a != b {
			rt.Fatalf("row %d:\n got %s\nwant %s", id, a, b)
		}
	})
}

var runeRanges = []*unicode.RangeTable{unicode.L, unicode.N, unicode.P, unicode.S, unicode.Zs, unicode.Cc}

func waitHeartbeat(t testing.TB, js jetstream.JetStream) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, g := range readAll(t, js, heartbeatSubject) {
			if g.ev.Op != schemas.OpSnapshot {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no heartbeat event within 30s")
}
