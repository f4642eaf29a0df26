package schemas

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestAppendChangeEventMatchesJSON checks AppendChangeEvent against
// encoding/json on random events: the same document after normalising key
// order (the cdc reader writes row values in column order).
func TestAppendChangeEventMatchesJSON(t *testing.T) {
	// AppendChangeEvent lists the fields by hand.
	for typ, want := range map[reflect.Type]int{
		reflect.TypeFor[ChangeEvent](): 18, reflect.TypeFor[Column](): 4, reflect.TypeFor[Truncate](): 3,
	} {
		if n := typ.NumField(); n != want {
			t.Fatalf("%s has %d fields, AppendChangeEvent knows %d: update it", typ, n, want)
		}
	}
	rapid.Check(t, func(rt *rapid.T) {
		str := rapid.String()
		cols := rapid.SliceOfNDistinct(rapid.Custom(func(rt *rapid.T) Column {
			return Column{Name: str.Draw(rt, "name"), Type: str.Draw(rt, "type"), OID: rapid.Uint32().Draw(rt, "oid"), Key: rapid.Bool().Draw(rt, "key")}
		}), 0, 6, func(c Column) string { return c.Name }).Draw(rt, "cols")
		row := func(label string) Row {
			if rapid.Bool().Draw(rt, label+"nil") {
				return nil
			}
			r := Row{}
			for _, c := range cols {
				if rapid.Bool().Draw(rt, label+"has") {
					r[c.Name] = rapid.Ptr(str, true).Draw(rt, label+"v")
				}
			}
			if rapid.Bool().Draw(rt, label+"extra") {
				r[str.Draw(rt, "extra")] = rapid.Ptr(str, true).Draw(rt, label+"xv")
			}
			return r
		}
		ev := &ChangeEvent{V: Version, Slot: str.Draw(rt, "slot"), DB: str.Draw(rt, "db"), Schema: str.Draw(rt, "schema"),
			Table: str.Draw(rt, "table"), Op: Op(rapid.SampledFrom([]string{"insert", "update", "delete", "truncate", "snapshot", "schema"}).Draw(rt, "op")),
			CommitLSN: LSN(rapid.Uint64().Draw(rt, "lsn")), TxID: rapid.Uint32().Draw(rt, "xid"), Index: rapid.IntRange(0, 1<<30).Draw(rt, "i"),
			TxSize: rapid.IntRange(0, 1<<30).Draw(rt, "n"), CommitTime: time.Unix(0, rapid.Int64Range(-1<<60, 1<<60).Draw(rt, "t")).UTC(),
			PrevLSN: LSN(rapid.SampledFrom([]uint64{0, rapid.Uint64().Draw(rt, "prev")}).Draw(rt, "prevlsn")),
			Columns: cols, Key: rapid.SliceOf(str).Draw(rt, "key"), New: row("new"), Old: row("old"), Unchanged: rapid.SliceOf(str).Draw(rt, "unch")}
		if rapid.Bool().Draw(rt, "trunc") {
			ev.Truncate = &Truncate{Tables: rapid.SliceOf(str).Draw(rt, "tables"), Cascade: rapid.Bool().Draw(rt, "c"), RestartIdentity: rapid.Bool().Draw(rt, "r")}
		}
		want, err := json.Marshal(ev)
		if err != nil {
			rt.Fatal(err)
		}
		got := AppendChangeEvent(nil, ev)
		if !json.Valid(got) {
			rt.Fatalf("invalid JSON: %s", got)
		}
		if a, b := normaliseJSON(rt, got), normaliseJSON(rt, want); !bytes.Equal(a, b) {
			rt.Fatalf("AppendChangeEvent differs from encoding/json:\n got %s\nwant %s", a, b)
		}
	})
}

func normaliseJSON(rt *rapid.T, data []byte) []byte {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		rt.Fatalf("unmarshal %s: %v", data, err)
	}
	out, _ := json.Marshal(v)
	return out
}

func BenchmarkEncodeChangeEvent(b *testing.B) {
	s := func(v string) *string { return &v }
	ev := &ChangeEvent{V: "1.0", Slot: "shadowcube", DB: "legacy", Schema: "public", Table: "bench", Op: OpInsert,
		CommitLSN: 0x16B374D848, TxID: 1234, Index: 0, TxSize: 1, CommitTime: time.Now().UTC(),
		Columns: []Column{{Name: "id", Type: "integer", OID: 23, Key: true}, {Name: "v", Type: "text", OID: 25}, {Name: "n", Type: "numeric", OID: 1700}, {Name: "at", Type: "timestamp with time zone", OID: 1184}},
		Key:     []string{"id"}, New: Row{"id": s("42"), "v": s("value 42"), "n": s("52.50"), "at": s("2026-11-25 22:31:35.123456+00")}}
	b.Run("AppendChangeEvent", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			buf = AppendChangeEvent(buf[:0], ev)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			json.Marshal(ev)
		}
	})
}
