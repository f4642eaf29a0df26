package schemas

import (
	"hash/maphash"
	"math"
	"sync/atomic"
)

// decodeChangeFast parses the ChangeEvent documents AppendChangeEvent and
// encoding/json write (sync decodes one per source row change): known keys
// spelt exactly, each once, in any order; strings as fastScanner.raw takes
// them; row values strings or null; integers in range. A truncate event,
// null anywhere else, or anything unusual makes ok false, and then the
// general decoder (goccy/go-json, encoding/json for the errors) decides: the
// fast path never rejects a document, it only leaves it to the general
// one. FuzzDecodeChangeFast holds what it accepts to the general decoder's
// result.
func decodeChangeFast(data []byte) (ev ChangeEvent, ok bool) {
	s := fastScanner{b: data}
	if !s.open('{') {
		return ev, false
	}
	var seen uint32
	if s.close('}') {
		return ev, s.end()
	}
	for {
		key, ok := s.key()
		if !ok {
			return ev, false
		}
		var bit uint32
		switch string(key) {
		case "v":
			bit = 1 << 0
			ev.V, ok = s.name()
		case "slot":
			bit = 1 << 1
			ev.Slot, ok = s.name()
		case "db":
			bit = 1 << 2
			ev.DB, ok = s.name()
		case "schema":
			bit = 1 << 3
			ev.Schema, ok = s.name()
		case "table":
			bit = 1 << 4
			ev.Table, ok = s.name()
		case "op":
			bit = 1 << 5
			var op string
			op, ok = s.name()
			ev.Op = Op(op)
		case "commit_lsn":
			bit = 1 << 6
			ev.CommitLSN, ok = s.lsn()
		case "tx_id":
			bit = 1 << 7
			ev.TxID, ok = s.uint32()
		case "index":
			bit = 1 << 8
			var n int64
			n, ok = s.int64()
			ev.Index = int(n)
		case "tx_size":
			bit = 1 << 9
			var n int64
			n, ok = s.int64()
			ev.TxSize = int(n)
		case "commit_time":
			bit = 1 << 10
			ev.CommitTime, ok = s.time()
		case "prev_lsn":
			bit = 1 << 11
			ev.PrevLSN, ok = s.lsn()
		case "columns":
			bit = 1 << 12
			ev.Columns, ok = s.columns()
		case "key":
			bit = 1 << 13
			ev.Key, ok = s.strings()
		case "new":
			bit = 1 << 14
			ev.New, ok = s.row()
		case "old":
			bit = 1 << 15
			ev.Old, ok = s.row()
		case "unchanged":
			bit = 1 << 16
			ev.Unchanged, ok = s.strings()
		default: // truncate among them: rare, left to the general decoder
			return ev, false
		}
		if !ok || seen&bit != 0 {
			return ev, false
		}
		seen |= bit
		if s.close('}') {
			return ev, s.end()
		}
		if !s.open(',') {
			return ev, false
		}
	}
}

// uint32 reads an unsigned integer in range as encoding/json does (no
// sign: "-0" is refused too).
func (s *fastScanner) uint32() (uint32, bool) {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '-' {
		return 0, false
	}
	n, ok := s.int64()
	if !ok || n > math.MaxUint32 {
		return 0, false
	}
	return uint32(n), true
}

// lsn reads an LSN string as LSN.UnmarshalJSON does.
func (s *fastScanner) lsn() (LSN, bool) {
	str, ok := s.str()
	if !ok {
		return 0, false
	}
	l, err := ParseLSN(str)
	return l, err == nil
}

// strings reads an array of strings ([] is an empty, non-nil slice).
func (s *fastScanner) strings() ([]string, bool) {
	if !s.open('[') {
		return nil, false
	}
	out := []string{}
	if s.close(']') {
		return out, true
	}
	for {
		v, ok := s.name()
		if !ok {
			return nil, false
		}
		out = append(out, v)
		if s.close(']') {
			return out, true
		}
		if !s.open(',') {
			return nil, false
		}
	}
}

// null consumes a JSON null.
func (s *fastScanner) null() bool {
	s.ws()
	if len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	return false
}

// row reads an object of strings or nulls; a name given twice is left to
// the general decoder.
func (s *fastScanner) row() (Row, bool) {
	if !s.open('{') {
		return nil, false
	}
	r := Row{}
	if s.close('}') {
		return r, true
	}
	for {
		k, ok := s.name()
		if !ok || !s.open(':') {
			return nil, false
		}
		if _, dup := r[k]; dup {
			return nil, false
		}
		if s.null() {
			r[k] = nil
		} else {
			v, ok := s.str()
			if !ok {
				return nil, false
			}
			r[k] = &v
		}
		if s.close('}') {
			return r, true
		}
		if !s.open(',') {
			return nil, false
		}
	}
}

// columns reads an array of Column objects.
func (s *fastScanner) columns() ([]Column, bool) {
	if !s.open('[') {
		return nil, false
	}
	out := []Column{}
	if s.close(']') {
		return out, true
	}
	for {
		c, ok := s.column()
		if !ok {
			return nil, false
		}
		out = append(out, c)
		if s.close(']') {
			return out, true
		}
		if !s.open(',') {
			return nil, false
		}
	}
}

func (s *fastScanner) column() (c Column, ok bool) {
	if !s.open('{') {
		return c, false
	}
	if s.close('}') {
		return c, true
	}
	var seen uint8
	for {
		key, ok := s.key()
		if !ok {
			return c, false
		}
		var bit uint8
		switch string(key) {
		case "name":
			bit = 1 << 0
			c.Name, ok = s.name()
		case "type":
			bit = 1 << 1
			c.Type, ok = s.name()
		case "oid":
			bit = 1 << 2
			c.OID, ok = s.uint32()
		case "key":
			bit = 1 << 3
			c.Key, ok = s.boolean()
		default:
			return c, false
		}
		if !ok || seen&bit != 0 {
			return c, false
		}
		seen |= bit
		if s.close('}') {
			return c, true
		}
		if !s.open(',') {
			return c, false
		}
	}
}

// names holds strings that repeat from event to event (versions, slots,
// table and column names, types, operations): name returns the held copy
// instead of allocating one per event. A slot is replaced by the newest
// name hashing to it; strings are immutable, so sharing them is safe.
var (
	names     [4096]atomic.Pointer[string]
	namesSeed = maphash.MakeSeed()
)

// name reads a string like str, returning a shared copy of unescaped ones.
func (s *fastScanner) name() (string, bool) {
	start := s.i
	b, escaped, ok := s.raw()
	if !ok {
		return "", false
	}
	if escaped || len(b) > 64 {
		s.i = start
		return s.str()
	}
	slot := &names[maphash.Bytes(namesSeed, b)%uint64(len(names))]
	if p := slot.Load(); p != nil && *p == string(b) {
		return *p, true
	}
	v := string(b)
	slot.Store(&v)
	return v, true
}
