package cdc

import (
	"slices"
	"strconv"
	"time"

	"github.com/heal7/shadowcube/internal/jsonenc"
	"github.com/heal7/shadowcube/schemas"
)

// appendEvent appends ev as JSON, the same document encoding/json writes for
// schemas.ChangeEvent (a test checks it) but several times faster: this is
// the hot path of the reader. Row values are written in column order.
func appendEvent(b []byte, ev *schemas.ChangeEvent) []byte {
	b = append(b, `{"v":`...)
	b = jsonenc.AppendString(b, ev.V)
	b = append(b, `,"slot":`...)
	b = jsonenc.AppendString(b, ev.Slot)
	b = append(b, `,"db":`...)
	b = jsonenc.AppendString(b, ev.DB)
	b = append(b, `,"schema":`...)
	b = jsonenc.AppendString(b, ev.Schema)
	b = append(b, `,"table":`...)
	b = jsonenc.AppendString(b, ev.Table)
	b = append(b, `,"op":`...)
	b = jsonenc.AppendString(b, string(ev.Op))
	b = append(b, `,"commit_lsn":"`...)
	b = appendLSN(b, ev.CommitLSN)
	b = append(b, `","tx_id":`...)
	b = strconv.AppendUint(b, uint64(ev.TxID), 10)
	b = append(b, `,"index":`...)
	b = strconv.AppendInt(b, int64(ev.Index), 10)
	b = append(b, `,"tx_size":`...)
	b = strconv.AppendInt(b, int64(ev.TxSize), 10)
	b = append(b, `,"commit_time":"`...)
	b = ev.CommitTime.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if len(ev.Columns) > 0 {
		b = append(b, `,"columns":[`...)
		for i, c := range ev.Columns {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"name":`...)
			b = jsonenc.AppendString(b, c.Name)
			b = append(b, `,"type":`...)
			b = jsonenc.AppendString(b, c.Type)
			if c.OID != 0 {
				b = append(b, `,"oid":`...)
				b = strconv.AppendUint(b, uint64(c.OID), 10)
			}
			if c.Key {
				b = append(b, `,"key":true`...)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if len(ev.Key) > 0 {
		b = append(b, `,"key":`...)
		b = appendStrings(b, ev.Key)
	}
	if len(ev.New) > 0 {
		b = append(b, `,"new":`...)
		b = appendRow(b, ev.New, ev.Columns)
	}
	if len(ev.Old) > 0 {
		b = append(b, `,"old":`...)
		b = appendRow(b, ev.Old, ev.Columns)
	}
	if len(ev.Unchanged) > 0 {
		b = append(b, `,"unchanged":`...)
		b = appendStrings(b, ev.Unchanged)
	}
	if t := ev.Truncate; t != nil {
		b = append(b, `,"truncate":{"tables":`...)
		if t.Tables == nil {
			b = append(b, "null"...)
		} else {
			b = appendStrings(b, t.Tables)
		}
		if t.Cascade {
			b = append(b, `,"cascade":true`...)
		}
		if t.RestartIdentity {
			b = append(b, `,"restart_identity":true`...)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

func appendLSN(b []byte, l schemas.LSN) []byte {
	b = strconv.AppendUint(b, uint64(l>>32), 16)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(uint32(l)), 16)
	// PostgreSQL prints upper-case hex.
	for i := len(b) - 1; i >= 0 && b[i] != '"'; i-- {
		if b[i] >= 'a' && b[i] <= 'f' {
			b[i] -= 'a' - 'A'
		}
	}
	return b
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonenc.AppendString(b, s)
	}
	return append(b, ']')
}

// appendRow writes the row's columns in column order, then any others
// sorted (none in practice).
func appendRow(b []byte, r schemas.Row, cols []schemas.Column) []byte {
	b = append(b, '{')
	n := 0
	put := func(k string, v *string) {
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = jsonenc.AppendString(b, k)
		b = append(b, ':')
		if v == nil {
			b = append(b, "null"...)
		} else {
			b = jsonenc.AppendString(b, *v)
		}
	}
	for _, c := range cols {
		if v, ok := r[c.Name]; ok {
			put(c.Name, v)
		}
	}
	if n < len(r) {
		var rest []string
		for k := range r {
			if !slices.ContainsFunc(cols, func(c schemas.Column) bool { return c.Name == k }) {
				rest = append(rest, k)
			}
		}
		slices.Sort(rest)
		for _, k := range rest {
			put(k, r[k])
		}
	}
	return append(b, '}')
}

// marshalEvent is appendEvent into a fresh buffer.
func marshalEvent(ev *schemas.ChangeEvent) []byte {
	return appendEvent(make([]byte, 0, 512), ev)
}
