package consumers

import (
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/heal7/shadowcube/internal/fileerr"
)

// Mapping is a parsed and syntactically checked mapping file (see docs/architecture.md,
// "Mapping file"). Validate checks it against the databases.
type Mapping struct {
	File    string
	Source  SourceSpec
	Targets []*Target
}

// SourceSpec says where the legacy database is and which CDC origin (slot)
// to follow.
type SourceSpec struct {
	DatabaseURLEnv string
	Slot           string
	// Side is which side of a rollout the source database is: SideLegacy
	// (default: the forward mapping, legacy → cube) or SideCube (a reverse
	// mapping, cube → legacy; see mapping_reverse.go).
	Side string
}

// Poison policies of a target.
const (
	PolicyStop = "stop" // halt the target at the poison transaction (default)
	PolicySkip = "skip" // record it in the DLQ and carry on
)

// Target is one cube database and the tables synced into it.
type Target struct {
	Name           string
	DatabaseURLEnv string
	OnPoison       string // PolicyStop or PolicySkip
	Tables         []*TableMap
	Line           int
}

// Delete policies of a table.
const (
	DeleteHard   = "delete"
	DeleteSoft   = "soft-delete"
	DeleteIgnore = "ignore"
)

// TableMap maps one source table onto one target table.
type TableMap struct {
	Source       string // schema.table in the legacy database
	Target       string // schema.table in the cube database
	SourceSchema string
	SourceTable  string
	TargetSchema string
	TargetTable  string
	Key          []string     // target key columns (a unique index must cover exactly them)
	Columns      []*ColumnMap // target columns in file order; key columns first once resolved
	Identity     bool         // no columns given: copy every source column
	Where        string       // SQL predicate over the source row; rows failing it are kept out of the target
	Delete       string       // DeleteHard, DeleteSoft or DeleteIgnore
	SoftColumn   string       // target column set on soft delete
	Line         int
	WhereLine    int
	KeyLine      int
	DeleteLine   int
	Conflict     string // ConflictLegacyWins, ConflictCubeWins, ConflictNewest or "" (no detection; conflict.go)
	ConflictLine int

	// resolved by Validate
	srcCols   []srcColumn         // source columns in table order
	tgtTypes  map[string]string   // target column -> format_type
	softValue string              // SQL of the soft-delete mark ($2 = commit time)
	softClear string              // SQL value clearing the mark on upsert
	deps      map[string][]string // target column -> source columns its expression reads
	whereDeps []string            // source columns the where filter reads
	alwaysKey bool                // a target key column is GENERATED ALWAYS AS IDENTITY (no update in place of the key)
	plainKey  []string            // source column per key column when key exprs are plain columns
	hardView  *TableMap           // this table with the hard delete policy (primary-key changes)
}

// ColumnMap is one target column and the SQL expression computing it from
// the source row's columns.
type ColumnMap struct {
	Name string
	Expr string
	Line int
}

// MappingError names the file, line and place of a mapping problem: the
// error type of every shadowcube file (file, line, field, message). Field is
// "target <name>: table <schema.table>: column <name>", as far as known.
type MappingError = fileerr.Error

// mappingError builds a *MappingError; target, table and column may be empty.
func mappingError(file string, line int, target, table, column, msg string) *MappingError {
	var place []string
	if target != "" {
		place = append(place, "target "+target)
	}
	if table != "" {
		place = append(place, "table "+table)
	}
	if column != "" {
		place = append(place, "column "+column)
	}
	return &MappingError{File: file, Line: line, Field: strings.Join(place, ": "), Msg: msg}
}

// LoadMapping reads and parses a mapping file.
func LoadMapping(path string) (*Mapping, error) {
	return fileerr.Read(path, "mapping file", ParseMapping)
}

var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*$`)

// ParseMapping parses mapping YAML; name is used in error messages.
func ParseMapping(name string, data []byte) (*Mapping, error) {
	root, err := fileerr.Document(name, data, "source: and targets:")
	if err != nil {
		return nil, err
	}
	p := &parser{file: name}
	m, err := p.mapping(root)
	if err != nil {
		return nil, err
	}
	m.File = name
	return m, nil
}

type parser struct{ file string }

func (p *parser) errf(n *yaml.Node, target, table, column, format string, args ...any) error {
	return mappingError(p.file, n.Line, target, table, column, fmt.Sprintf(format, args...))
}

// fields returns the key/value pairs of a mapping node, rejecting unknown keys.
func (p *parser) fields(n *yaml.Node, what string, allowed ...string) (map[string]*yaml.Node, error) {
	if n.Kind != yaml.MappingNode {
		return nil, p.errf(n, "", "", "", "%s must be a mapping", what)
	}
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		ok := false
		for _, a := range allowed {
			if k.Value == a {
				ok = true
			}
		}
		if !ok {
			return nil, p.errf(k, "", "", "", "unknown field %q in %s (allowed: %s)", k.Value, what, strings.Join(allowed, ", "))
		}
		if _, dup := out[k.Value]; dup {
			return nil, p.errf(k, "", "", "", "field %q given twice in %s", k.Value, what)
		}
		out[k.Value] = v
	}
	return out, nil
}

func (p *parser) str(n *yaml.Node, what string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", p.errf(n, "", "", "", "%s must be a string", what)
	}
	return n.Value, nil
}

func (p *parser) mapping(n *yaml.Node) (*Mapping, error) {
	f, err := p.fields(n, "the mapping file", "source", "targets")
	if err != nil {
		return nil, err
	}
	m := &Mapping{Source: SourceSpec{DatabaseURLEnv: "SHADOWCUBE_SOURCE_DATABASE_URL", Slot: "shadowcube", Side: SideLegacy}}
	if s := f["source"]; s != nil {
		sf, err := p.fields(s, "source", "database_url_env", "slot", "side")
		if err != nil {
			return nil, err
		}
		if v := sf["database_url_env"]; v != nil {
			if m.Source.DatabaseURLEnv, err = p.str(v, "source.database_url_env"); err != nil {
				return nil, err
			}
		}
		if v := sf["slot"]; v != nil {
			if m.Source.Slot, err = p.str(v, "source.slot"); err != nil {
				return nil, err
			}
		}
		if err := p.side(sf["side"], &m.Source); err != nil {
			return nil, err
		}
	}
	tn := f["targets"]
	if tn == nil || tn.Kind != yaml.SequenceNode || len(tn.Content) == 0 {
		at := n
		if tn != nil {
			at = tn
		}
		return nil, p.errf(at, "", "", "", "targets: want a non-empty list of cube targets")
	}
	names := map[string]bool{}
	for _, t := range tn.Content {
		tg, err := p.target(t)
		if err != nil {
			return nil, err
		}
		if names[tg.Name] {
			return nil, p.errf(t, tg.Name, "", "", "target name %q used twice", tg.Name)
		}
		names[tg.Name] = true
		m.Targets = append(m.Targets, tg)
	}
	return m, nil
}

func (p *parser) target(n *yaml.Node) (*Target, error) {
	f, err := p.fields(n, "a target", "name", "database_url_env", "on_poison", "tables")
	if err != nil {
		return nil, err
	}
	t := &Target{Line: n.Line, OnPoison: PolicyStop}
	if v := f["name"]; v == nil {
		return nil, p.errf(n, "", "", "", "target without name")
	} else if t.Name, err = p.str(v, "name"); err != nil {
		return nil, err
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_-]+$`).MatchString(t.Name) {
		return nil, p.errf(f["name"], t.Name, "", "", "target name %q: use letters, digits, '-' and '_' only", t.Name)
	}
	if v := f["database_url_env"]; v == nil {
		return nil, p.errf(n, t.Name, "", "", "database_url_env missing: name the environment variable holding the cube database URL")
	} else if t.DatabaseURLEnv, err = p.str(v, "database_url_env"); err != nil {
		return nil, err
	}
	if v := f["on_poison"]; v != nil {
		if t.OnPoison, err = p.str(v, "on_poison"); err != nil {
			return nil, err
		}
		if t.OnPoison != PolicyStop && t.OnPoison != PolicySkip {
			return nil, p.errf(v, t.Name, "", "", "on_poison %q: want stop or skip", t.OnPoison)
		}
	}
	tn := f["tables"]
	if tn == nil || tn.Kind != yaml.SequenceNode || len(tn.Content) == 0 {
		return nil, p.errf(n, t.Name, "", "", "tables: want a non-empty list")
	}
	seen := map[string]bool{}
	for _, x := range tn.Content {
		tm, err := p.table(t.Name, x)
		if err != nil {
			return nil, err
		}
		if seen[tm.Source] {
			return nil, p.errf(x, t.Name, tm.Source, "", "source table mapped twice in this target")
		}
		seen[tm.Source] = true
		t.Tables = append(t.Tables, tm)
	}
	return t, nil
}

func splitQualified(s string) (schema, table string, ok bool) {
	schema, table, found := strings.Cut(s, ".")
	if !found {
		schema, table = "public", s
	}
	return schema, table, identRe.MatchString(schema) && identRe.MatchString(table)
}

func (p *parser) table(target string, n *yaml.Node) (*TableMap, error) {
	f, err := p.fields(n, "a table", "source", "target", "key", "columns", "where", "delete", "conflict")
	if err != nil {
		return nil, err
	}
	tm := &TableMap{Line: n.Line, Delete: DeleteHard}
	src := f["source"]
	if src == nil {
		return nil, p.errf(n, target, "", "", "table entry without source")
	}
	if tm.Source, err = p.str(src, "source"); err != nil {
		return nil, err
	}
	var ok bool
	if tm.SourceSchema, tm.SourceTable, ok = splitQualified(tm.Source); !ok {
		return nil, p.errf(src, target, tm.Source, "", "source %q: want schema.table (plain identifiers)", tm.Source)
	}
	tm.Source = tm.SourceSchema + "." + tm.SourceTable
	tm.Target = tm.Source
	if v := f["target"]; v != nil {
		if tm.Target, err = p.str(v, "target"); err != nil {
			return nil, err
		}
	}
	if tm.TargetSchema, tm.TargetTable, ok = splitQualified(tm.Target); !ok {
		return nil, p.errf(n, target, tm.Source, "", "target %q: want schema.table (plain identifiers)", tm.Target)
	}
	tm.Target = tm.TargetSchema + "." + tm.TargetTable
	kn := f["key"]
	if kn == nil {
		return nil, p.errf(n, target, tm.Source, "", "key missing: list the target key columns, e.g. key: [id]")
	}
	tm.KeyLine = kn.Line
	if kn.Kind != yaml.SequenceNode || len(kn.Content) == 0 {
		return nil, p.errf(kn, target, tm.Source, "", "key: want a non-empty list of target column names")
	}
	for _, k := range kn.Content {
		s, err := p.str(k, "key column")
		if err != nil {
			return nil, err
		}
		if !identRe.MatchString(s) {
			return nil, p.errf(k, target, tm.Source, s, "key column %q is not a plain identifier", s)
		}
		tm.Key = append(tm.Key, s)
	}
	if cn := f["columns"]; cn != nil {
		if cn.Kind != yaml.MappingNode || len(cn.Content) == 0 {
			return nil, p.errf(cn, target, tm.Source, "", "columns: want a mapping of target column to SQL expression")
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(cn.Content); i += 2 {
			k, v := cn.Content[i], cn.Content[i+1]
			if !identRe.MatchString(k.Value) {
				return nil, p.errf(k, target, tm.Source, k.Value, "target column %q is not a plain identifier", k.Value)
			}
			if seen[k.Value] {
				return nil, p.errf(k, target, tm.Source, k.Value, "column given twice")
			}
			seen[k.Value] = true
			expr, err := p.str(v, "column expression")
			if err != nil || strings.TrimSpace(expr) == "" {
				return nil, p.errf(v, target, tm.Source, k.Value, "want a non-empty SQL expression over the source row's columns")
			}
			if strings.Contains(expr, ";") && !strings.Contains(expr, "'") {
				return nil, p.errf(v, target, tm.Source, k.Value, "expression %q contains ';': one expression only", expr)
			}
			tm.Columns = append(tm.Columns, &ColumnMap{Name: k.Value, Expr: expr, Line: v.Line})
		}
	} else {
		tm.Identity = true
	}
	if v := f["where"]; v != nil {
		if tm.Where, err = p.str(v, "where"); err != nil {
			return nil, err
		}
		tm.WhereLine = v.Line
	}
	if v := f["delete"]; v != nil {
		s, err := p.str(v, "delete")
		if err != nil {
			return nil, err
		}
		tm.DeleteLine = v.Line
		fields := strings.Fields(s)
		switch {
		case len(fields) == 1 && (fields[0] == DeleteHard || fields[0] == DeleteIgnore):
			tm.Delete = fields[0]
		case len(fields) == 2 && fields[0] == DeleteSoft && identRe.MatchString(fields[1]):
			tm.Delete, tm.SoftColumn = DeleteSoft, fields[1]
		default:
			return nil, p.errf(v, target, tm.Source, "", "delete %q: want delete, ignore or \"soft-delete <column>\"", s)
		}
	}
	if err := p.conflict(target, f["conflict"], tm); err != nil {
		return nil, err
	}
	return tm, nil
}

// Target returns the target of that name, or nil.
func (m *Mapping) Target(name string) *Target {
	for _, t := range m.Targets {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// table returns the mapping of a source table, or nil when it is not synced.
func (t *Target) table(schema, table string) *TableMap {
	for _, tm := range t.Tables {
		if tm.SourceSchema == schema && tm.SourceTable == table {
			return tm
		}
	}
	return nil
}

// quoteIdent quotes a PostgreSQL identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

func quoteLiteral(s string) string {
	return `'` + strings.ReplaceAll(s, `'`, `''`) + `'`
}
