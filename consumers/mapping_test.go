package consumers

import (
	"errors"
	"strings"
	"testing"
)

func TestParseMappingErrors(t *testing.T) {
	cases := []struct {
		name, yaml, want string
		line             int
	}{
		{"missing key", "targets:\n  - name: c\n    database_url_env: X\n    tables:\n      - source: public.a\n", "key missing", 5},
		{"unknown field", "targets:\n  - name: c\n    database_url_env: X\n    tables:\n      - source: public.a\n        key: [id]\n        colums: {a: b}\n", `unknown field "colums"`, 7},
		{"bad delete", "targets:\n  - name: c\n    database_url_env: X\n    tables:\n      - source: public.a\n        key: [id]\n        delete: soft\n", `delete "soft"`, 7},
		{"bad policy", "targets:\n  - name: c\n    database_url_env: X\n    on_poison: retry\n    tables: [{source: a, key: [id]}]\n", "on_poison", 4},
		{"no targets", "source: {slot: s}\n", "targets", 1},
		{"bad yaml", "targets: [\n", "invalid YAML", 1},
		{"empty expression", "targets:\n  - name: c\n    database_url_env: X\n    tables:\n      - source: a\n        key: [id]\n        columns:\n          x: ''\n", "non-empty SQL expression", 8},
		{"no url env", "targets:\n  - name: c\n    tables: [{source: a, key: [id]}]\n", "database_url_env missing", 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseMapping("m.yaml", []byte(c.yaml))
			var me *MappingError
			if !errors.As(err, &me) {
				t.Fatalf("err = %v, want a *MappingError", err)
			}
			if !strings.Contains(err.Error(), c.want) || me.Line != c.line || me.File != "m.yaml" {
				t.Fatalf("err = %q (line %d), want it to contain %q at m.yaml:%d", err, me.Line, c.want, c.line)
			}
		})
	}
}

func TestParseMappingDefaults(t *testing.T) {
	m, err := ParseMapping("m.yaml", []byte("targets:\n  - name: c\n    database_url_env: X\n    tables:\n      - source: items\n        key: [id]\n        where: \"id > 0\"\n        delete: soft-delete deleted_at\n"))
	if err != nil {
		t.Fatal(err)
	}
	tm := m.Targets[0].Tables[0]
	if m.Source.Slot != "shadowcube" || m.Targets[0].OnPoison != PolicyStop || tm.Source != "public.items" || tm.Target != "public.items" ||
		!tm.Identity || tm.Where != "id > 0" || tm.Delete != DeleteSoft || tm.SoftColumn != "deleted_at" {
		t.Fatalf("unexpected parse: %+v %+v", m, tm)
	}
}

func TestReferencedColumns(t *testing.T) {
	src := map[string]bool{"a": true, "b": true, "big": true, "year": true}
	got := referencedColumns(`jsonb_build_object('a', b, 'year''s', "big") || year::text || 'big'`, src)
	if strings.Join(got, ",") != "b,big,year" {
		t.Fatalf("got %v", got)
	}
}

// TestValidateMappingAgainstDatabases checks the errors of bad mappings
// against real source and target databases: each names file, line, table and column.
func TestValidateMappingAgainstDatabases(t *testing.T) {
	e := newEnv(t)
	e.exec(e.src, sajuLegacyDDL)
	e.exec(e.dst, sajuCubeDDL+`; CREATE TABLE cube.nokey (id bigint, user_id text)`)
	head := "targets:\n  - name: saju\n    database_url_env: X\n    tables:\n      - source: public.saju_records\n"
	cases := []struct {
		name, tables, want string
		line               int
		column             string
	}{
		{"unknown source column", "        target: cube.saju_charts\n        key: [id]\n        columns:\n          user_id: user_idd\n          birth_info: \"'{}'\"\n          saju_chart: \"'{}'\"\n          created_at: created_at\n",
			`column "user_idd" does not exist`, 9, "user_id"},
		{"bad SQL expression", "        target: cube.saju_charts\n        key: [id]\n        columns:\n          user_id: user_id\n          birth_info: \"jsonb_build_object('y', birth_year\"\n",
			"syntax error", 10, "birth_info"},
		{"type mismatch", "        target: cube.saju_charts\n        key: [id]\n        columns:\n          birth_info: birth_year\n",
			"jsonb", 9, "birth_info"},
		{"unknown target column", "        target: cube.saju_charts\n        key: [id]\n        columns:\n          nope: user_id\n",
			"has no column nope", 9, "nope"},
		{"missing key index", "        target: cube.nokey\n        key: [id]\n        columns:\n          user_id: user_id\n",
			"no unique index", 7, ""},
		{"key not mapped", "        target: cube.saju_charts\n        key: [chart_id]\n        columns:\n          user_id: user_id\n",
			"key column chart_id", 7, "chart_id"},
		{"missing target table", "        target: cube.nothere\n        key: [id]\n",
			"does not exist", 5, ""},
		{"identity with extra source columns", "        target: cube.saju_charts\n        key: [id]\n",
			"identity copy", 5, "birth_year"},
		{"bad where", "        target: cube.saju_charts\n        key: [id]\n        where: \"no_such_col > 1\"\n        columns:\n          user_id: user_id\n",
			"where", 8, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := ParseMapping("bad.yaml", []byte(head+c.tables))
			if err != nil {
				t.Fatal(err)
			}
			err = m.Validate(e.ctx, m.Targets[0], e.src, e.dst)
			var me *MappingError
			if !errors.As(err, &me) {
				t.Fatalf("err = %v, want a *MappingError", err)
			}
			field := "target saju: table public.saju_records"
			if c.column != "" {
				field += ": column " + c.column
			}
			if !strings.Contains(err.Error(), c.want) || me.Line != c.line || me.Field != field ||
				!strings.HasPrefix(err.Error(), "bad.yaml:") {
				t.Fatalf("err = %q (line %d field %q), want %q at line %d field %q", err, me.Line, me.Field, c.want, c.line, field)
			}
		})
	}
}
