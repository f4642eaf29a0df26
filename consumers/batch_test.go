package consumers

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heal7/shadowcube/schemas"
)

// batchMapping covers each way a change event becomes SQL: identity copies
// (t, p), a where filter (f), a computed column reading a TOASTable value
// together with a sent one (c), the ignore (g) and soft (s) delete policies.
const batchMapping = `
source: {slot: s1}
targets:
  - name: cube
    database_url_env: CUBE_URL
    tables:
      - source: public.t
        key: [id]
      - source: public.f
        key: [id]
        where: "kind = 'a'"
      - source: public.c
        key: [id]
        columns: {summary: "small || left(big, 3)"}
      - source: public.p
        key: [id]
      - source: public.g
        key: [id]
        delete: ignore
      - source: public.s
        key: [id]
        delete: soft-delete gone
`

// batchTarget parses batchMapping and resolves it against hand-written
// catalogs (Mapping.resolveTable, the I/O-free half of Validate).
func batchTarget(t testing.TB) *Target {
	t.Helper()
	m, err := ParseMapping("batch.yaml", []byte(batchMapping))
	if err != nil {
		t.Fatal(err)
	}
	cols := func(spec string) []srcColumn {
		var out []srcColumn
		for _, f := range strings.Fields(spec) {
			name, typ, _ := strings.Cut(f, ":")
			out = append(out, srcColumn{Name: name, Type: typ, Key: name == "id"})
		}
		return out
	}
	catalogs := map[string][2]string{ // source columns, target columns
		"public.t": {"id:integer small:text big:text", "id:integer small:text big:text"},
		"public.f": {"id:integer kind:text v:text", "id:integer kind:text v:text"},
		"public.c": {"id:integer small:text big:text", "id:integer summary:text"},
		"public.p": {"id:integer", "id:integer"},
		"public.g": {"id:integer v:text", "id:integer v:text"},
		"public.s": {"id:integer v:text", "id:integer v:text gone:boolean"},
	}
	tg := m.Target("cube")
	for _, tm := range tg.Tables {
		c, ok := catalogs[tm.Source]
		if !ok {
			t.Fatalf("no catalog for %s", tm.Source)
		}
		if err := m.resolveTable(tg, tm, cols(c[0]), cols(c[1])); err != nil {
			t.Fatal(err)
		}
	}
	return tg
}

var batchCT = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// change builds an event of public.<table>; rows are "col=value ..." (a
// value "NULL" is SQL NULL), unchanged lists the TOAST columns not sent.
func change(op schemas.Op, table, newRow, oldRow string, unchanged ...string) *schemas.ChangeEvent {
	row := func(s string) schemas.Row {
		if s == "" {
			return nil
		}
		r := schemas.Row{}
		for _, f := range strings.Fields(s) {
			k, v, _ := strings.Cut(f, "=")
			if v == "NULL" {
				r[k] = nil
				continue
			}
			r[k] = &v
		}
		return r
	}
	return &schemas.ChangeEvent{Slot: "s1", Schema: "public", Table: table, Op: op, CommitTime: batchCT,
		Key: []string{"id"}, New: row(newRow), Old: row(oldRow), Unchanged: unchanged}
}

func truncateEv(table string, restart bool, tables ...string) *schemas.ChangeEvent {
	return &schemas.ChangeEvent{Slot: "s1", Schema: "public", Table: table, Op: schemas.OpTruncate, CommitTime: batchCT,
		Truncate: &schemas.Truncate{Tables: tables, RestartIdentity: restart}}
}

// describe names a statement by the TableMap method that built it and lists
// the rows of its parameters: "copy t [1:small=a 2:small=b]". Row columns
// are those the row carries (key and ordinal and commit time left out), so a
// TOAST value that was not sent shows as absent.
func describe(t testing.TB, tg *Target, s stmt) string {
	t.Helper()
	if s.copy != nil {
		var js [][]byte
		for i, r := range s.copy.rows {
			js = append(js, rowJSON(s.copy.tm, r, s.copy.cts[i]))
		}
		return "copy " + s.copy.tm.SourceTable + " " + describeRows(t, jsonArray(js))
	}
	kind := ""
	if s.sql == "" {
		kind = "fill"
	}
	for _, tm := range tg.Tables {
		if kind != "" {
			break
		}
		name := tm.SourceTable
		var rest []string
		for _, c := range tm.Columns[len(tm.Key):] {
			rest = append(rest, c.Name)
		}
		// every subset of the non-key columns may be left alone
		for mask := 0; mask < 1<<len(rest) && kind == ""; mask++ {
			ex := map[string]bool{}
			var names []string
			for i, c := range rest {
				if mask&(1<<i) != 0 {
					ex[c] = true
					names = append(names, c)
				}
			}
			sig := ""
			if len(names) > 0 {
				sig = "(keep " + strings.Join(names, ",") + ")"
			}
			switch s.sql {
			case tm.upsertSQL(ex):
				kind = "upsert" + sig
			case tm.updateInPlaceSQL(ex):
				kind = "inplace" + sig
			case tm.rekeySQL(ex):
				kind = "rekey" + sig
			}
		}
		if kind != "" {
			kind += " " + name
			break
		}
		for _, c := range []struct{ sql, kind string }{
			{tm.deleteSQL(), "delete"},
			{hardDeleteView(tm).deleteSQL(), "harddelete"},
			{tm.filteredOutSQL(), "filteredout"},
			{tm.staleNewKeySQL(), "stalenewkey"},
			{tm.rekeyedOutSQL(), "rekeyedout"},
			{tm.truncateSQL(false), "truncate"},
			{tm.truncateSQL(true), "truncate-restart"},
		} {
			if c.sql != "" && s.sql == c.sql {
				kind = c.kind + " " + name
				break
			}
		}
	}
	if kind == "" {
		kind = s.sql // built here, not by a TableMap method (one TRUNCATE of several tables)
	}
	if s.fill != nil {
		var ids []string
		for _, ev := range s.fill.evs {
			ids = append(ids, *ev.New["id"])
		}
		if s.sql != "" {
			kind += " +fill"
		}
		kind += fmt.Sprintf(" fill%v %s", ids, s.fill.tm.SourceTable)
	}
	for _, a := range s.args {
		kind += " " + describeRows(t, a)
	}
	return kind
}

// describeRows renders a JSON array parameter as [id:col=value ...] per row,
// checking the commit time each row must carry and the ordinals, when
// present, numbering the rows from 0.
func describeRows(t testing.TB, arg any) string {
	t.Helper()
	var rows []map[string]string
	if err := json.Unmarshal([]byte(arg.(string)), &rows); err != nil {
		t.Fatalf("parameter %v: %v", arg, err)
	}
	var out []string
	for i, r := range rows {
		if r[ctColumn] != batchCT.Format(time.RFC3339Nano) {
			t.Errorf("row %v: commit time %q, want %s", r, r[ctColumn], batchCT.Format(time.RFC3339Nano))
		}
		if ord, ok := r[ordColumn]; ok && ord != fmt.Sprint(i) {
			t.Errorf("row %v: ordinal %s at position %d", r, ord, i)
		}
		var cols []string
		for k, v := range r {
			if k != "id" && k != ctColumn && k != ordColumn {
				cols = append(cols, k+"="+v)
			}
		}
		slices.Sort(cols)
		out = append(out, strings.Join(append([]string{r["id"]}, cols...), ":"))
	}
	return "[" + strings.Join(out, " ") + "]"
}

// TestStmtBatch checks the statements (kind, table, rows, order) and the
// change count a run of units produces, without a database.
func TestStmtBatch(t *testing.T) {
	type unit []*schemas.ChangeEvent
	ins := func(table, row string) *schemas.ChangeEvent { return change(schemas.OpInsert, table, row, "") }
	upd := func(table, row, old string, unchanged ...string) *schemas.ChangeEvent {
		return change(schemas.OpUpdate, table, row, old, unchanged...)
	}
	del := func(table, old string) *schemas.ChangeEvent { return change(schemas.OpDelete, table, "", old) }
	for _, tc := range []struct {
		name  string
		units []unit
		want  []string
		count int
	}{{
		name:  "inserts of one table share one upsert",
		units: []unit{{ins("t", "id=1 small=a big=x"), ins("t", "id=2 small=b big=NULL")}, {ins("t", "id=3 small=c big=z")}},
		want:  []string{"copy t [1:big=x:small=a 2:small=b 3:big=z:small=c]"},
		count: 3,
	}, {
		name: "order across tables is kept",
		units: []unit{{ins("t", "id=1 small=a big=x"), ins("p", "id=7"), ins("t", "id=2 small=b big=y")},
			{change(schemas.OpSnapshot, "p", "id=8", "")}},
		want:  []string{"copy t [1:big=x:small=a]", "copy p [7]", "copy t [2:big=y:small=b]", "copy p [8]"},
		count: 4,
	}, {
		name:  "a row changed twice in a run keeps its newest version",
		units: []unit{{ins("t", "id=1 small=a big=x"), ins("t", "id=2 small=b big=y")}, {upd("t", "id=1 small=A big=X", "")}},
		want:  []string{"copy t [1:big=X:small=A 2:big=y:small=b]"},
		count: 3,
	}, {
		name:  "unmapped tables and schema events make no statement",
		units: []unit{{ins("other", "id=1"), {Slot: "s1", Schema: "public", Table: "t", Op: schemas.OpSchema}, del("other", "id=1")}},
		want:  nil,
		count: 0,
	}, {
		name:  "delete then re-insert of a key stay two statements in order",
		units: []unit{{del("t", "id=1"), ins("t", "id=1 small=n big=m"), del("t", "id=2"), del("t", "id=3")}},
		want:  []string{"delete t [1]", "copy t [1:big=m:small=n]", "delete t [2 3]"},
		count: 4,
	}, {
		name:  "delete policies: ignore makes nothing, soft marks",
		units: []unit{{del("g", "id=1"), del("s", "id=2"), ins("s", "id=3 v=q")}},
		want:  []string{"delete s [2]", "upsert s [3:v=q]"},
		count: 2,
	}, {
		name: "updates with unchanged TOAST update in place, grouped by what they leave alone",
		units: []unit{{upd("t", "id=1 small=a", "", "big"), upd("t", "id=2 small=b", "", "big")},
			{upd("t", "id=3 big=z", "", "small"), upd("t", "id=1 small=A", "", "big")}},
		want: []string{
			"inplace(keep big) t +fill fill[1 2] t [1:small=a 2:small=b]",
			"inplace(keep small) t +fill fill[3] t [3:big=z]",
			"inplace(keep big) t +fill fill[1] t [1:small=A]",
		},
		count: 4,
	}, {
		name:  "an in-place row changed twice keeps its newest version and ordinal",
		units: []unit{{upd("t", "id=1 small=a", "", "big"), upd("t", "id=2 small=b", "", "big"), upd("t", "id=1 small=c", "", "big")}},
		want:  []string{"inplace(keep big) t +fill fill[1 2] t [1:small=c 2:small=b]"},
		count: 3,
	}, {
		name:  "key change with every value sent: hard delete of the old key, upsert of the new",
		units: []unit{{upd("t", "id=2 small=a big=x", "id=1")}},
		want:  []string{"delete t [1]", "copy t [2:big=x:small=a]"},
		count: 1,
	}, {
		name:  "key change under the soft-delete policy removes the old key row for good",
		units: []unit{{upd("s", "id=2 v=a", "id=1 v=a")}},
		want:  []string{"harddelete s [1:v=a]", "upsert s [2:v=a]"},
		count: 1,
	}, {
		name:  "key change with unchanged TOAST under a where filter also removes a row leaving the subset",
		units: []unit{{upd("f", "id=2 kind=a", "id=1 kind=a", "v")}},
		want: []string{
			"stalenewkey f [2:kind=a] [1:kind=a]",
			"rekey(keep v) f +fill fill[2] f [2:kind=a] [1:kind=a]",
			"rekeyedout f [2:kind=a] [1:kind=a]",
		},
		count: 1,
	}, {
		name:  "key change with unchanged TOAST moves the row in place",
		units: []unit{{ins("t", "id=5 small=e big=e"), upd("t", "id=2 small=a", "id=1 small=a", "big")}},
		want: []string{
			"copy t [5:big=e:small=e]",
			"stalenewkey t [2:small=a] [1:small=a]",
			"rekey(keep big) t +fill fill[2] t [2:small=a] [1:small=a]",
		},
		count: 2,
	}, {
		name: "a computed column reading a sent and an unchanged value is completed from the source",
		units: []unit{{upd("c", "id=1 small=a", "", "big"), upd("c", "id=2 small=b", "", "big"),
			upd("c", "id=4 small=d", "id=3 small=d", "big")}},
		want:  []string{"fill fill[1] c", "fill fill[2] c", "delete c [3:small=d]", "fill fill[4] c"},
		count: 3,
	}, {
		name: "where filter: an upsert is followed by removal of rows that left the subset",
		units: []unit{{upd("f", "id=1 kind=a v=1", ""), upd("f", "id=2 kind=b v=2", "")},
			{upd("f", "id=1 kind=b v=3", "")}},
		// with a filter the older version of row 1 may matter: not merged
		want: []string{
			"upsert f [1:kind=a:v=1 2:kind=b:v=2]", "filteredout f [1:kind=a:v=1 2:kind=b:v=2]",
			"upsert f [1:kind=b:v=3]", "filteredout f [1:kind=b:v=3]",
		},
		count: 3,
	}, {
		name:  "where filter: an in-place row changed twice keeps both versions, each numbered from 0",
		units: []unit{{upd("f", "id=1 kind=a", "", "v"), upd("f", "id=1 kind=b", "", "v")}},
		want: []string{
			"inplace(keep v) f +fill fill[1] f [1:kind=a]", "filteredout f [1:kind=a]",
			"inplace(keep v) f +fill fill[1] f [1:kind=b]", "filteredout f [1:kind=b]",
		},
		count: 2,
	}, {
		name:  "where filter reading an unchanged value: completed from the source",
		units: []unit{{upd("f", "id=1 v=1", "", "kind"), upd("f", "id=2 kind=a", "", "v")}},
		want:  []string{"fill fill[1] f", "inplace(keep v) f +fill fill[2] f [2:kind=a]", "filteredout f [2:kind=a]"},
		count: 2,
	}, {
		name: "a source TRUNCATE of two hard tables is one target TRUNCATE per unit",
		units: []unit{
			{ins("t", "id=1 small=a big=x"), truncateEv("t", false, "public.t", "public.p"), truncateEv("p", false, "public.t", "public.p"), ins("p", "id=1")},
			{truncateEv("p", true, "public.p", "public.t"), truncateEv("t", true, "public.p", "public.t")},
		},
		want: []string{
			"copy t [1:big=x:small=a]",
			`TRUNCATE "public"."t", "public"."p"`,
			"copy p [1]",
			`TRUNCATE "public"."p", "public"."t" RESTART IDENTITY`,
		},
		count: 4,
	}, {
		name: "a second source TRUNCATE of a table later in the unit applies too",
		units: []unit{
			{truncateEv("t", false, "public.t"), ins("t", "id=1 small=a big=x"), truncateEv("t", false, "public.t")},
		},
		want:  []string{"truncate t", "copy t [1:big=x:small=a]", "truncate t"},
		count: 3,
	}, {
		name:  "truncate under the soft and ignore policies",
		units: []unit{{truncateEv("s", false, "public.s"), truncateEv("g", false, "public.g"), truncateEv("", false, "public.s")}},
		want:  []string{"truncate s", "truncate s"},
		count: 2,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			tg := batchTarget(t)
			b := newStmtBatch(tg, nil)
			for _, u := range tc.units {
				b.addUnit(u)
			}
			stmts, count := b.statements()
			var got []string
			for _, s := range stmts {
				got = append(got, describe(t, tg, s))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("statements:\n  got  %q\n  want %q", got, tc.want)
			}
			if count != tc.count {
				t.Errorf("count %d, want %d", count, tc.count)
			}
		})
	}
}

// TestStmtBatchEmpty: a batch without units has no statements.
func TestStmtBatchEmpty(t *testing.T) {
	if stmts, n := newStmtBatch(batchTarget(t), nil).statements(); len(stmts) != 0 || n != 0 {
		t.Fatalf("empty batch: %d statements, count %d", len(stmts), n)
	}
}
