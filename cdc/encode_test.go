package cdc

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/heal7/shadowcube/schemas"
)

// TestAppendEventMatchesJSON checks the hand-written encoder against
// encoding/json on random events: same document after normalising key order.
func TestAppendEventMatchesJSON(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		str := rapid.String()
		cols := rapid.SliceOfNDistinct(rapid.Custom(func(rt *rapid.T) schemas.Column {
			return schemas.Column{Name: str.Draw(rt, "name"), Type: str.Draw(rt, "type"), OID: rapid.Uint32().Draw(rt, "oid"), Key: rapid.Bool().Draw(rt, "key")}
		}), 0, 6, func(c schemas.Column) string { return c.Name }).Draw(rt, "cols")
		row := func(label string) schemas.Row {
			if rapid.Bool().Draw(rt, label+"nil") {
				return nil
			}
			r := schemas.Row{}
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
		ev := &schemas.ChangeEvent{V: schemas.Version, Slot: str.Draw(rt, "slot"), DB: str.Draw(rt, "db"), Schema: str.Draw(rt, "schema"),
			Table: str.Draw(rt, "table"), Op: schemas.Op(rapid.SampledFrom([]string{"insert", "update", "delete", "truncate", "snapshot", "schema"}).Draw(rt, "op")),
			CommitLSN: schemas.LSN(rapid.Uint64().Draw(rt, "lsn")), TxID: rapid.Uint32().Draw(rt, "xid"), Index: rapid.IntRange(0, 1<<30).Draw(rt, "i"),
			TxSize: rapid.IntRange(0, 1<<30).Draw(rt, "n"), CommitTime: time.Unix(0, rapid.Int64Range(-1<<60, 1<<60).Draw(rt, "t")).UTC(),
			Columns: cols, Key: rapid.SliceOf(str).Draw(rt, "key"), New: row("new"), Old: row("old"), Unchanged: rapid.SliceOf(str).Draw(rt, "unch")}
		if rapid.Bool().Draw(rt, "trunc") {
			ev.Truncate = &schemas.Truncate{Tables: rapid.SliceOf(str).Draw(rt, "tables"), Cascade: rapid.Bool().Draw(rt, "c"), RestartIdentity: rapid.Bool().Draw(rt, "r")}
		}
		want, err := json.Marshal(ev)
		if err != nil {
			rt.Fatal(err)
		}
		got := marshalEvent(ev)
		if !json.Valid(got) {
			rt.Fatalf("invalid JSON: %s", got)
		}
		if a, b := normalise(rt, got), normalise(rt, want); !bytes.Equal(a, b) {
			rt.Fatalf("appendEvent differs from encoding/json:\n got %s\nwant %s", a, b)
		}
	})
}

func normalise(rt *rapid.T, data []byte) []byte {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		rt.Fatalf("unmarshal %s: %v", data, err)
	}
	out, _ := json.Marshal(v)
	return out
}

func BenchmarkEncodeEvent(b *testing.B) {
	ev := &schemas.ChangeEvent{V: "1.0", Slot: "shadowcube", DB: "legacy", Schema: "public", Table: "bench", Op: schemas.OpInsert,
		CommitLSN: 0x16B374D848, TxID: 1234, Index: 0, TxSize: 1, CommitTime: time.Now().UTC(),
		Columns: []schemas.Column{{Name: "id", Type: "integer", OID: 23, Key: true}, {Name: "v", Type: "text", OID: 25}, {Name: "n", Type: "numeric", OID: 1700}, {Name: "at", Type: "timestamp with time zone", OID: 1184}},
		Key:     []string{"id"}, New: schemas.Row{"id": str("42"), "v": str("value 42"), "n": str("52.50"), "at": str("2026-11-25 22:31:35.123456+00")}}
	b.Run("appendEvent", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			buf = appendEvent(buf[:0], ev)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			json.Marshal(ev)
		}
	})
}
