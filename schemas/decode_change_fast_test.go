package schemas

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	gojson "github.com/goccy/go-json"
	"pgregory.net/rapid"
)

// FuzzDecodeChangeFast: whatever the plain parser accepts, goccy/go-json
// and encoding/json accept too and decode to the same event (so
// DecodeChangeEvent gives what it gave before the plain parser).
func FuzzDecodeChangeFast(f *testing.F) {
	addExamples(f, "*.json")
	s := func(v string) *string { return &v }
	ev := ChangeEvent{V: Version, Slot: "shadowcube", DB: "legacy", Schema: "public", Table: "bench", Op: OpUpdate,
		CommitLSN: 0x16B374D848, PrevLSN: 0x16B374D000, TxID: 4294967295, Index: 3, TxSize: 9, CommitTime: time.Date(2026, 11, 30, 12, 0, 0, 123, time.FixedZone("KST", 9*3600)),
		Columns: []Column{{Name: "id", Type: "integer", OID: 23, Key: true}, {Name: "v", Type: "text", OID: 25}},
		Key:     []string{"id"}, New: Row{"id": s("42"), "v": nil}, Old: Row{"id": s("41")}, Unchanged: []string{"big"}}
	f.Add(AppendChangeEvent(nil, &ev))
	f.Add([]byte(` { "v" : "1.0" , "columns":[], "key":[], "new":{}, "tx_id":-0 } `))
	f.Add([]byte(`{"v":"1.0","new":{"a":"1","a":"2"}}`))
	f.Add([]byte(`{"v":"1.0","columns":[{}],"commit_lsn":"0/0","index":-7}`))
	f.Add([]byte(`{"v":"1.0","new":{"\u00e9\n":"庚子\t"},"tx_id":4294967296}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := decodeChangeFast(data)
		if !ok {
			return
		}
		var g, std ChangeEvent
		if err := gojson.Unmarshal(data, &g); err != nil {
			t.Fatalf("plain parser accepts what goccy rejects (%v): %q", err, data)
		}
		if err := json.Unmarshal(data, &std); err != nil {
			t.Fatalf("plain parser accepts what encoding/json rejects (%v): %q", err, data)
		}
		if !reflect.DeepEqual(fast, g) || !reflect.DeepEqual(fast, std) {
			t.Fatalf("decoders differ on %q:\n plain %#v\n goccy %#v\n std   %#v", data, fast, g, std)
		}
	})
}

// TestDecodeChangeFastTakesEncodedEvents: every change event the encoder
// writes, but truncates, takes the plain parser and decodes to what
// encoding/json decodes; DecodeChangeEvent gives what the general decoder
// gives, errors included.
func TestDecodeChangeFastTakesEncodedEvents(t *testing.T) {
	str := rapid.OneOf(rapid.StringMatching(`[a-z_0-9 ]{0,10}|庚子[a-z]{0,3}`), rapid.String(),
		rapid.SampledFrom([]string{"\u2028\"\\\x00\x1f<>&", "\xff\xfe bad utf8", "{1,NULL,\"a,b\"}"}))
	rapid.Check(t, func(rt *rapid.T) {
		row := func(label string) Row {
			if rapid.Bool().Draw(rt, label+"Nil") {
				return nil
			}
			r := Row{}
			for _, k := range rapid.SliceOfN(str, 0, 5).Draw(rt, label+"Keys") {
				if rapid.Bool().Draw(rt, label+"Null") {
					r[k] = nil
				} else {
					v := str.Draw(rt, label+"Value")
					r[k] = &v
				}
			}
			return r
		}
		strs := func(label string) []string {
			if rapid.Bool().Draw(rt, label+"Nil") {
				return nil
			}
			return rapid.SliceOfN(str, 1, 3).Draw(rt, label)
		}
		var cols []Column // distinct names, as a table's (the encoder writes rows in column order)
		for range rapid.IntRange(0, 4).Draw(rt, "cols") {
			c := Column{Name: str.Draw(rt, "name"), Type: str.Draw(rt, "type"),
				OID: rapid.Uint32().Draw(rt, "oid"), Key: rapid.Bool().Draw(rt, "key")}
			if !slices.ContainsFunc(cols, func(o Column) bool { return o.Name == c.Name }) {
				cols = append(cols, c)
			}
		}
		ev := ChangeEvent{V: rapid.SampledFrom([]string{Version, "9.0"}).Draw(rt, "v"), Slot: str.Draw(rt, "slot"), DB: str.Draw(rt, "db"),
			Schema: str.Draw(rt, "schema"), Table: str.Draw(rt, "table"),
			Op:        rapid.SampledFrom([]Op{OpInsert, OpUpdate, OpDelete, OpSnapshot, OpSchema, Op("bogus")}).Draw(rt, "op"),
			CommitLSN: LSN(rapid.Uint64().Draw(rt, "lsn")), PrevLSN: LSN(rapid.Uint64().Draw(rt, "prev")),
			TxID: rapid.Uint32().Draw(rt, "txid"), Index: rapid.IntRange(-5, 1<<40).Draw(rt, "index"), TxSize: rapid.IntRange(-5, 1<<40).Draw(rt, "size"),
			CommitTime: time.Unix(0, rapid.Int64Range(0, 4e18).Draw(rt, "at")).In(time.FixedZone("x", rapid.IntRange(-50000, 50000).Draw(rt, "tz"))),
			Columns:    cols, Key: strs("key"), New: row("new"), Old: row("old"), Unchanged: strs("unchanged")}
		data := AppendChangeEvent(nil, &ev)
		var std ChangeEvent
		if err := json.Unmarshal(data, &std); err != nil {
			rt.Fatal(err)
		}
		fast, ok := decodeChangeFast(data)
		if !ok {
			rt.Fatalf("encoded event left to the general decoder: %s", data)
		}
		if !reflect.DeepEqual(fast, std) {
			rt.Fatalf("decoders differ on %s:\n plain %#v\n std   %#v", data, fast, std)
		}
		got, err := DecodeChangeEvent(data)
		var want ChangeEvent
		werr := decodeSlow(data, "ChangeEvent", &want)
		if werr == nil {
			werr = want.Validate()
		}
		if (err == nil) != (werr == nil) || (err == nil && !reflect.DeepEqual(got, want)) {
			rt.Fatalf("DecodeChangeEvent = %#v, %v; encoding/json gives %#v, %v", got, err, want, werr)
		}
	})
}

// BenchmarkDecodeChangeEvent: a B4-like change (4 columns, one row)
// through the plain parser and through goccy/go-json.
func BenchmarkDecodeChangeEvent(b *testing.B) {
	s := func(v string) *string { return &v }
	ev := ChangeEvent{V: Version, Slot: "b4", DB: "legacy", Schema: "public", Table: "bench", Op: OpInsert,
		CommitLSN: 0x16B374D848, TxID: 1234, Index: 0, TxSize: 1, CommitTime: time.Now().UTC(),
		Columns: []Column{{Name: "id", Type: "bigint", Key: true}, {Name: "v", Type: "text"}, {Name: "n", Type: "integer"}, {Name: "at", Type: "timestamp with time zone"}},
		Key:     []string{"id"}, New: Row{"id": s("42"), "v": s("value 42 with some text to look like a row"), "n": s("42"), "at": s("2024-01-01 00:00:42+00")}}
	data := AppendChangeEvent(nil, &ev)
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := DecodeChangeEvent(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("goccy", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := decode[ChangeEvent](data, "ChangeEvent"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
