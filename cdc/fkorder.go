package cdc

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// fkOrder orders the tables to copy so that a table referenced by a foreign
// key comes before the tables referencing it (a cube that enforces its keys
// can then apply the snapshot row by row); otherwise the listing order
// stays. Tables in a cycle keep their listing order among themselves.
func fkOrder(ctx context.Context, conn *pgx.Conn, tables []snapTable) ([]snapTable, error) {
	oids := make([]uint32, len(tables))
	for i, t := range tables {
		oids[i] = t.oid
	}
	rows, err := conn.Query(ctx, `SELECT conrelid::oid::int8, confrelid::oid::int8 FROM pg_constraint
WHERE contype = 'f' AND conrelid <> confrelid AND conrelid::oid::int8 = ANY($1) AND confrelid::oid::int8 = ANY($1)`, oids)
	if err != nil {
		return nil, fmt.Errorf("read foreign keys of published tables: %w", err)
	}
	parents := map[uint32][]uint32{}
	var child, parent int64
	if _, err := pgx.ForEachRow(rows, []any{&child, &parent}, func() error {
		parents[uint32(child)] = append(parents[uint32(child)], uint32(parent))
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read foreign keys of published tables: %w", err)
	}
	if len(parents) == 0 {
		return tables, nil
	}
	byOID := map[uint32]snapTable{}
	for _, t := range tables {
		byOID[t.oid] = t
	}
	out := make([]snapTable, 0, len(tables))
	state := map[uint32]int{} // 1 visiting, 2 done
	var visit func(oid uint32)
	visit = func(oid uint32) {
		if state[oid] != 0 {
			return // done, or a cycle: keep going
		}
		state[oid] = 1
		for _, p := range parents[oid] {
			visit(p)
		}
		state[oid] = 2
		out = append(out, byOID[oid])
	}
	for _, t := range tables {
		visit(t.oid)
	}
	return out, nil
}
