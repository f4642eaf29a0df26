package cdc

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/heal7/shadowcube/schemas"
)

// relation is the latest known shape of a published table, by relation id.
type relation struct {
	id       uint32
	schema   string
	table    string
	subject  string
	cols     []schemas.Column
	key      []string
	identKey []bool // column is part of the replica identity (relation flags)
	ident    uint8  // replica identity: d, n, f or i
}

func (r *relation) sameShape(o *relation) bool {
	return r.schema == o.schema && r.table == o.table && r.ident == o.ident &&
		slices.Equal(r.cols, o.cols) && slices.Equal(r.key, o.key)
}

// typeNames resolves (oid, typmod) pairs to format_type names, cached.
type typeKey struct {
	oid    uint32
	typmod int32
}

// buildRelation turns a Relation message into a relation, resolving type
// names and the primary key on the meta connection.
func (r *Reader) buildRelation(ctx context.Context, meta *pgx.Conn, msg *pglogrepl.RelationMessage) (*relation, error) {
	rel := &relation{id: msg.RelationID, schema: msg.Namespace, table: msg.RelationName, ident: msg.ReplicaIdentity}
	rel.subject = schemas.ChangeSubject(r.db, rel.schema, rel.table)
	var missing []typeKey
	for _, c := range msg.Columns {
		k := typeKey{c.DataType, c.TypeModifier}
		if _, ok := r.types[k]; !ok && !slices.Contains(missing, k) {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		oids := make([]uint32, len(missing))
		mods := make([]int32, len(missing))
		for i, k := range missing {
			oids[i], mods[i] = k.oid, k.typmod
		}
		rows, err := meta.Query(ctx, `SELECT u.o, u.m, format_type(u.o, u.m) FROM unnest($1::oid[], $2::int4[]) AS u(o, m)`, oids, mods)
		if err != nil {
			return nil, fmt.Errorf("resolve column types of %s.%s: %w", rel.schema, rel.table, err)
		}
		for rows.Next() {
			var k typeKey
			var name *string
			if err := rows.Scan(&k.oid, &k.typmod, &name); err != nil {
				rows.Close()
				return nil, fmt.Errorf("resolve column types of %s.%s: %w", rel.schema, rel.table, err)
			}
			if name == nil || *name == "???" {
				// A type created by a transaction not yet committed (streamed
				// in progress): keep its OID, name it by number.
				s := fmt.Sprintf("oid:%d", k.oid)
				name = &s
			}
			r.types[k] = *name
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("resolve column types of %s.%s: %w", rel.schema, rel.table, err)
		}
	}
	var pk []string
	rows, err := meta.Query(ctx, `SELECT a.attname FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = $1::oid AND i.indisprimary
		ORDER BY array_position(i.indkey::int2[], a.attnum)`, msg.RelationID)
	if err != nil {
		return nil, fmt.Errorf("read primary key of %s.%s: %w", rel.schema, rel.table, err)
	}
	pk, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read primary key of %s.%s: %w", rel.schema, rel.table, err)
	}
	rel.cols = make([]schemas.Column, len(msg.Columns))
	rel.identKey = make([]bool, len(msg.Columns))
	var identCols []string
	for i, c := range msg.Columns {
		rel.cols[i] = schemas.Column{Name: c.Name, Type: r.types[typeKey{c.DataType, c.TypeModifier}], OID: c.DataType}
		if c.Flags&1 != 0 {
			rel.identKey[i] = true
			identCols = append(identCols, c.Name)
		}
	}
	// Key is the primary key when the table has one (also under REPLICA
	// IDENTITY FULL, where every column is flagged), else the replica
	// identity columns.
	rel.key = identCols
	if len(pk) > 0 {
		rel.key = pk
	}
	for i := range rel.cols {
		rel.cols[i].Key = slices.Contains(rel.key, rel.cols[i].Name)
	}
	return rel, nil
}

// newEvent starts an event of rel; transaction fields are filled at commit.
func (r *Reader) newEvent(rel *relation, op schemas.Op) *schemas.ChangeEvent {
	return &schemas.ChangeEvent{V: schemas.Version, Slot: r.cfg.Slot, DB: r.db, Schema: rel.schema,
		Table: rel.table, Op: op, Columns: rel.cols, Key: rel.key}
}

// tupleRow decodes a tuple. keyOnly keeps only replica identity columns (an
// old 'K' tuple sends the others as NULL). unchanged collects TOAST columns
// whose value was not sent.
func tupleRow(rel *relation, t *pglogrepl.TupleData, keyOnly bool) (row schemas.Row, unchanged []string, size int64, err error) {
	if t == nil {
		return nil, nil, 0, nil
	}
	if len(t.Columns) != len(rel.cols) {
		return nil, nil, 0, fmt.Errorf("decode row of %s.%s: %d columns, relation has %d (relation message missed?)",
			rel.schema, rel.table, len(t.Columns), len(rel.cols))
	}
	row = make(schemas.Row, len(t.Columns))
	for i, c := range t.Columns {
		if keyOnly && !rel.identKey[i] {
			continue
		}
		name := rel.cols[i].Name
		size += int64(len(name)) + 24
		switch c.DataType {
		case pglogrepl.TupleDataTypeNull:
			row[name] = nil
		case pglogrepl.TupleDataTypeToast:
			unchanged = append(unchanged, name)
		case pglogrepl.TupleDataTypeText:
			s := string(c.Data)
			row[name] = &s
			size += int64(len(s))
		default:
			return nil, nil, 0, fmt.Errorf("decode row of %s.%s: column %s has format %q; only text is requested", rel.schema, rel.table, name, c.DataType)
		}
	}
	return row, unchanged, size, nil
}

// changeEvent decodes an insert, update or delete into an event.
func (r *Reader) changeEvent(msg pglogrepl.Message) (*pending, error) {
	var relID uint32
	switch m := msg.(type) {
	case *pglogrepl.InsertMessageV2:
		relID = m.RelationID
	case *pglogrepl.UpdateMessageV2:
		relID = m.RelationID
	case *pglogrepl.DeleteMessageV2:
		relID = m.RelationID
	}
	rel, ok := r.relations[relID]
	if !ok {
		return nil, fmt.Errorf("change for unknown relation id %d (no relation message received)", relID)
	}
	p := &pending{Subject: rel.subject, size: 256}
	switch m := msg.(type) {
	case *pglogrepl.InsertMessageV2:
		ev := r.newEvent(rel, schemas.OpInsert)
		row, unch, sz, err := tupleRow(rel, m.Tuple, false)
		if err != nil {
			return nil, err
		}
		ev.New, ev.Unchanged, p.Event = row, unch, ev
		p.size += sz
	case *pglogrepl.UpdateMessageV2:
		ev := r.newEvent(rel, schemas.OpUpdate)
		newRow, unch, sz, err := tupleRow(rel, m.NewTuple, false)
		if err != nil {
			return nil, err
		}
		p.size += sz
		if m.OldTuple != nil {
			old, _, sz, err := tupleRow(rel, m.OldTuple, m.OldTupleType == pglogrepl.UpdateMessageTupleTypeKey)
			if err != nil {
				return nil, err
			}
			p.size += sz
			ev.Old = old
			// Under REPLICA IDENTITY FULL the old tuple holds the
			// detoasted value: the unchanged column is known.
			if m.OldTupleType == pglogrepl.UpdateMessageTupleTypeOld && len(unch) > 0 {
				kept := unch[:0]
				for _, name := range unch {
					if v, ok := old[name]; ok {
						newRow[name] = v
						continue
					}
					kept = append(kept, name)
				}
				unch = kept
			}
		}
		if len(unch) == 0 {
			unch = nil
		}
		ev.New, ev.Unchanged, p.Event = newRow, unch, ev
	case *pglogrepl.DeleteMessageV2:
		ev := r.newEvent(rel, schemas.OpDelete)
		old, _, sz, err := tupleRow(rel, m.OldTuple, m.OldTupleType == pglogrepl.DeleteMessageTupleTypeKey)
		if err != nil {
			return nil, err
		}
		p.size += sz
		ev.Old, p.Event = old, ev
	}
	return p, nil
}

// truncateEvents makes one event per truncated table.
func (r *Reader) truncateEvents(m *pglogrepl.TruncateMessageV2) ([]*pending, error) {
	tr := &schemas.Truncate{Cascade: m.Option&pglogrepl.TruncateOptionCascade != 0,
		RestartIdentity: m.Option&pglogrepl.TruncateOptionRestartIdentity != 0}
	rels := make([]*relation, 0, len(m.RelationIDs))
	for _, id := range m.RelationIDs {
		rel, ok := r.relations[id]
		if !ok {
			return nil, fmt.Errorf("truncate of unknown relation id %d (no relation message received)", id)
		}
		rels = append(rels, rel)
		tr.Tables = append(tr.Tables, rel.schema+"."+rel.table)
	}
	out := make([]*pending, len(rels))
	for i, rel := range rels {
		ev := r.newEvent(rel, schemas.OpTruncate)
		ev.Truncate = tr
		out[i] = &pending{Subject: rel.subject, Event: ev, size: 512}
	}
	return out, nil
}
