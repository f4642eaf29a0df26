package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// FK apply modes of a target, decided at start-up (DecideFK).
const (
	FKNone     = "none"    // no foreign key between the target's tables
	FKReplica  = "replica" // session_replication_role = replica: FK triggers do not fire
	FKOrdered  = "ordered" // FKs enforced: source order, whole transactions, deferrable ones deferred
	fkQueryMsg = "read foreign keys of target %s: %w"
)

type foreignKey struct {
	name, child, parent string
	deferrable          bool
}

// targetFKs lists the foreign keys whose referencing table is a table of t
// (in the target database).
func targetFKs(ctx context.Context, db DB, t *Target) ([]foreignKey, error) {
	var names []string
	for _, tm := range t.Tables {
		names = append(names, tm.Target)
	}
	rows, err := db.Query(ctx, `
SELECT c.conname, cn.nspname || '.' || cl.relname, pn.nspname || '.' || pl.relname, c.condeferrable
FROM pg_constraint c
JOIN pg_class cl ON cl.oid = c.conrelid JOIN pg_namespace cn ON cn.oid = cl.relnamespace
JOIN pg_class pl ON pl.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = pl.relnamespace
WHERE c.contype = 'f' AND cn.nspname || '.' || cl.relname = ANY($1)
ORDER BY 2, 1`, names)
	if err != nil {
		return nil, fmt.Errorf(fkQueryMsg, t.Name, err)
	}
	fks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (foreignKey, error) {
		var k foreignKey
		err := r.Scan(&k.name, &k.child, &k.parent, &k.deferrable)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf(fkQueryMsg, t.Name, err)
	}
	return fks, nil
}

// DecideFK decides how target t is applied when its tables have foreign
// keys, and says so in the log:
//   - none: no foreign key among them;
//   - replica: the target role may set session_replication_role = replica
//     (superuser, or GRANT SET ON PARAMETER): each target transaction does,
//     as PostgreSQL's own subscriber does, so FK triggers (and other
//     non-ALWAYS triggers of the cube tables) do not fire on replicated rows;
//     the source already enforced its keys;
//   - ordered: the keys are enforced; the snapshot arrives in FK dependency
//     order (cdc copies parents first), each source transaction is applied
//     whole and in order, deferrable constraints are deferred to the end of
//     the target transaction. It fails with one error naming the problem
//     when that cannot work: a referenced table missing from the mapping, or
//     a cycle of keys of which one is not deferrable.
func DecideFK(ctx context.Context, db DB, t *Target, log *slog.Logger) (string, error) {
	fks, err := targetFKs(ctx, db, t)
	if err != nil {
		return "", err
	}
	if len(fks) == 0 {
		return FKNone, nil
	}
	var list []string
	for _, k := range fks {
		list = append(list, fmt.Sprintf("%s(%s->%s)", k.name, k.child, k.parent))
	}
	ok, err := canReplica(ctx, db)
	if err != nil {
		return "", fmt.Errorf("target %s: %w", t.Name, err)
	}
	if ok {
		log.Info("target tables have foreign keys; applying with session_replication_role = replica: "+
			"FK checks and ordinary triggers of the cube tables do not fire on synced rows (the source enforced them)",
			"target", t.Name, "foreign_keys", strings.Join(list, ", "))
		return FKReplica, nil
	}
	mapped := map[string]bool{}
	for _, tm := range t.Tables {
		mapped[tm.Target] = true
	}
	for _, k := range fks {
		if !mapped[k.parent] {
			return "", fmt.Errorf("target %s: foreign key %s of %s references %s, which is not in the mapping: "+
				"map %s too, or run sync as a role that may set session_replication_role (superuser or GRANT SET ON PARAMETER session_replication_role)",
				t.Name, k.name, k.child, k.parent, k.parent)
		}
	}
	if cyc := fkCycle(fks); cyc != nil {
		return "", fmt.Errorf("target %s: foreign keys form a cycle (%s) with a constraint that is not deferrable: "+
			"the rows cannot be applied in an order that satisfies them; make the constraints DEFERRABLE, "+
			"or run sync as a role that may set session_replication_role (superuser or GRANT SET ON PARAMETER session_replication_role)",
			t.Name, strings.Join(cyc, " -> "))
	}
	log.Info("target tables have foreign keys and the role may not set session_replication_role; "+
		"applying with foreign keys enforced: snapshot in FK dependency order, whole source transactions in order, deferrable constraints deferred",
		"target", t.Name, "foreign_keys", strings.Join(list, ", "))
	return FKOrdered, nil
}

// canReplica reports whether the session may set session_replication_role.
func canReplica(ctx context.Context, db DB) (bool, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(context.Background())
	_, err = tx.Exec(ctx, "SET LOCAL session_replication_role = replica")
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" {
		return false, nil
	}
	return err == nil, err
}

// fkCycle returns a cycle of tables (first table repeated at the end) whose
// keys include a non-deferrable one, or nil. Deferrable keys are checked at
// commit, so a cycle of only deferrable keys is fine.
func fkCycle(fks []foreignKey) []string {
	edges := map[string][]foreignKey{}
	for _, k := range fks {
		edges[k.child] = append(edges[k.child], k)
	}
	var nodes []string
	for n := range edges {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	// depth-first search for a path back to the start through any keys,
	// reporting it when one of them is not deferrable
	var found []string
	var walk func(start, at string, path []string, strict bool, seen map[string]bool) bool
	walk = func(start, at string, path []string, strict bool, seen map[string]bool) bool {
		for _, k := range edges[at] {
			s := strict || !k.deferrable
			if k.parent == start {
				if s {
					found = append(slices.Clone(path), start)
					return true
				}
				continue
			}
			if seen[k.parent] {
				continue
			}
			seen[k.parent] = true
			if walk(start, k.parent, append(path, k.parent), s, seen) {
				return true
			}
		}
		return false
	}
	for _, n := range nodes {
		if walk(n, n, []string{n}, false, map[string]bool{}) {
			return found
		}
	}
	return nil
}
