package consumers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DB is what the sync stage needs of a PostgreSQL connection or pool.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Begin(ctx context.Context) (pgx.Tx, error)
}

type srcColumn struct {
	Name   string
	Type   string
	Key    bool
	Always bool // GENERATED ALWAYS AS IDENTITY: can only be updated to DEFAULT
}

// tableColumns returns the live, non-generated columns of schema.table with
// their format_type names, in column order; nil when the table does not exist.
func tableColumns(ctx context.Context, db DB, schema, table string) ([]srcColumn, error) {
	rows, err := db.Query(ctx, `
SELECT a.attname, format_type(a.atttypid, a.atttypmod),
       coalesce(a.attnum = ANY (i.indkey), false), a.attidentity = 'a'
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY a.attnum`, schema, table)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s.%s: %w", schema, table, err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (srcColumn, error) {
		var c srcColumn
		err := r.Scan(&c.Name, &c.Type, &c.Key, &c.Always)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("read columns of %s.%s: %w", schema, table, err)
	}
	return cols, nil
}

// Validate checks target t of m against the source and target databases:
// tables and columns exist, every expression type-checks in the target
// (through statements run on zero rows in a rolled-back transaction), the key
// has a unique index. It resolves what the applier needs. Errors are
// *MappingError naming file, line, table and column.
func (m *Mapping) Validate(ctx context.Context, t *Target, src, dst DB) error {
	for _, tm := range t.Tables {
		if err := m.validateTable(ctx, t, tm, src, dst); err != nil {
			return err
		}
	}
	return nil
}

func (m *Mapping) validateTable(ctx context.Context, t *Target, tm *TableMap, src, dst DB) error {
	merr := func(line int, column, format string, args ...any) error {
		return mappingError(m.File, line, t.Name, tm.Source, column, fmt.Sprintf(format, args...))
	}
	scols, err := tableColumns(ctx, src, tm.SourceSchema, tm.SourceTable)
	if err != nil {
		return err
	}
	if len(scols) == 0 {
		return merr(tm.Line, "", "source table %s does not exist in the source database", tm.Source)
	}
	tcols, err := tableColumns(ctx, dst, tm.TargetSchema, tm.TargetTable)
	if err != nil {
		return err
	}
	if len(tcols) == 0 {
		return merr(tm.Line, "", "target table %s does not exist in the database of target %s", tm.Target, t.Name)
	}
	if err := m.resolveTable(t, tm, scols, tcols); err != nil {
		return err
	}

	// Type-check each expression alone, then the whole statements, on zero rows.
	tx, err := dst.Begin(ctx)
	if err != nil {
		return fmt.Errorf("validate target %s: %w", t.Name, err)
	}
	defer tx.Rollback(ctx)
	// check runs sql on zero rows ($2, used by the key-change statements, too)
	check := func(sql string) error {
		sp, err := tx.Begin(ctx)
		if err != nil {
			return err
		}
		args := []any{"[]"}
		if strings.Contains(sql, "$2") {
			args = append(args, "[]")
		}
		_, err = sp.Exec(ctx, sql, args...)
		if rerr := sp.Rollback(ctx); rerr != nil && err == nil {
			err = rerr
		}
		return err
	}
	rs := recordset(tm)
	for _, c := range tm.Columns {
		sql := fmt.Sprintf("INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s", tm.qTarget(), quoteIdent(c.Name), c.Expr, rs)
		if err := check(sql); err != nil {
			return merr(c.Line, c.Name, "expression %q: %s", c.Expr, pgMessage(err))
		}
	}
	if tm.Where != "" {
		if err := check(fmt.Sprintf("SELECT 1 FROM %s WHERE (%s)", rs, tm.Where)); err != nil {
			return merr(tm.WhereLine, "", "where %q: %s", tm.Where, pgMessage(err))
		}
	}
	rekey := tm.rekeySQL(nil)
	if tm.alwaysKey {
		rekey = "" // not used: key changes are completed from the source
	}
	for _, sql := range []string{tm.upsertSQL(nil), tm.deleteSQL(), tm.filteredOutSQL(), tm.updateInPlaceSQL(nil), rekey,
		tm.staleNewKeySQL(), tm.rekeyedOutSQL()} {
		if sql == "" {
			continue // delete: ignore
		}
		if err := check(sql); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "42P10" {
				return merr(tm.KeyLine, "", "key %v: %s has no unique index or primary key on exactly these columns", tm.Key, tm.Target)
			}
			return merr(tm.Line, "", "statement check failed: %s", pgMessage(err))
		}
	}
	return m.checkConflictSetup(ctx, t, tm, src, dst) // conflict.go
}

// resolveTable resolves what the applier needs of tm from the columns of its
// source (scols) and target (tcols) tables, without I/O: key columns first,
// the soft-delete mark, the source columns each target column and the where
// filter read, the plain key. Errors are *MappingError.
func (m *Mapping) resolveTable(t *Target, tm *TableMap, scols, tcols []srcColumn) error {
	merr := func(line int, column, format string, args ...any) error {
		return mappingError(m.File, line, t.Name, tm.Source, column, fmt.Sprintf(format, args...))
	}
	tm.srcCols = scols
	tm.tgtTypes = map[string]string{}
	tm.alwaysKey = false
	for _, c := range tcols {
		tm.tgtTypes[c.Name] = c.Type
		if c.Always && slices.Contains(tm.Key, c.Name) {
			tm.alwaysKey = true
		}
	}
	srcNames := map[string]bool{}
	for _, c := range scols {
		srcNames[c.Name] = true
	}
	if tm.Identity {
		tm.Columns = nil
		for _, c := range scols {
			if _, ok := tm.tgtTypes[c.Name]; !ok {
				return merr(tm.Line, c.Name, "identity copy: source column %s has no column of that name in %s; list columns: explicitly", c.Name, tm.Target)
			}
			tm.Columns = append(tm.Columns, &ColumnMap{Name: c.Name, Expr: quoteIdent(c.Name), Line: tm.Line})
		}
	}
	// Key columns first; unmapped key columns copy the source column of the same name.
	var keyCols []*ColumnMap
	for _, k := range tm.Key {
		i := slices.IndexFunc(tm.Columns, func(c *ColumnMap) bool { return c.Name == k })
		if i >= 0 {
			keyCols = append(keyCols, tm.Columns[i])
			tm.Columns = slices.Delete(tm.Columns, i, i+1)
			continue
		}
		if !srcNames[k] {
			return merr(tm.KeyLine, k, "key column %s is neither under columns nor a source column of %s", k, tm.Source)
		}
		keyCols = append(keyCols, &ColumnMap{Name: k, Expr: quoteIdent(k), Line: tm.KeyLine})
	}
	tm.Columns = append(keyCols, tm.Columns...)
	for _, c := range tm.Columns {
		if _, ok := tm.tgtTypes[c.Name]; !ok {
			return merr(c.Line, c.Name, "target table %s has no column %s", tm.Target, c.Name)
		}
	}
	if tm.Delete == DeleteSoft {
		typ, ok := tm.tgtTypes[tm.SoftColumn]
		if !ok {
			return merr(tm.DeleteLine, tm.SoftColumn, "soft-delete column %s does not exist in %s", tm.SoftColumn, tm.Target)
		}
		switch {
		case typ == "boolean":
			tm.softValue, tm.softClear = "true", "false"
		case strings.HasPrefix(typ, "timestamp") || typ == "date":
			tm.softValue, tm.softClear = "r.\"shadowcube$ct\"::timestamptz", "NULL"
		default:
			return merr(tm.DeleteLine, tm.SoftColumn, "soft-delete column %s has type %s: want boolean, date or timestamp", tm.SoftColumn, typ)
		}
		if slices.ContainsFunc(tm.Columns, func(c *ColumnMap) bool { return c.Name == tm.SoftColumn }) {
			return merr(tm.DeleteLine, tm.SoftColumn, "soft-delete column %s is also mapped under columns", tm.SoftColumn)
		}
	}
	tm.deps = map[string][]string{}
	for _, c := range tm.Columns {
		tm.deps[c.Name] = referencedColumns(c.Expr, srcNames)
	}
	tm.whereDeps = referencedColumns(tm.Where, srcNames)
	tm.plainKey, tm.hardView = nil, nil
	for _, c := range tm.Columns[:len(tm.Key)] {
		name := plainColumn(c.Expr)
		if name == "" || !srcNames[name] {
			tm.plainKey = nil
			break
		}
		tm.plainKey = append(tm.plainKey, name)
	}
	return nil
}

func pgMessage(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		s := pe.Message
		if pe.Hint != "" {
			s += " (hint: " + pe.Hint + ")"
		}
		return s
	}
	return err.Error()
}

// plainColumn returns the column name when expr is just a (quoted) identifier.
func plainColumn(expr string) string {
	e := strings.TrimSpace(expr)
	if identRe.MatchString(e) {
		return e
	}
	if len(e) > 2 && e[0] == '"' && e[len(e)-1] == '"' && !strings.Contains(e[1:len(e)-1], `"`) {
		return e[1 : len(e)-1]
	}
	return ""
}

// referencedColumns lists the source columns an expression mentions (words
// outside string literals that name a source column). It is used to leave a
// target column alone when a TOAST value it depends on was not sent.
func referencedColumns(expr string, src map[string]bool) []string {
	var out []string
	add := func(w string) {
		if src[w] && !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '\'':
			j := i + 1
			for j < len(expr) {
				if expr[j] == '\'' {
					if j+1 < len(expr) && expr[j+1] == '\'' {
						j += 2
						continue
					}
					break
				}
				j++
			}
			i = j + 1
		case c == '"':
			j := strings.IndexByte(expr[i+1:], '"')
			if j < 0 {
				return out
			}
			add(expr[i+1 : i+1+j])
			i += j + 2
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(expr) && (expr[j] == '_' || expr[j] == '$' || expr[j] >= 'a' && expr[j] <= 'z' || expr[j] >= 'A' && expr[j] <= 'Z' || expr[j] >= '0' && expr[j] <= '9') {
				j++
			}
			add(strings.ToLower(expr[i:j]))
			i = j
		case c >= '0' && c <= '9':
			for i < len(expr) && (expr[i] >= '0' && expr[i] <= '9' || expr[i] == '.' || expr[i] == '_') {
				i++
			}
		default:
			i++
		}
	}
	return out
}
