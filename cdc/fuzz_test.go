package cdc

import (
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/heal7/shadowcube/schemas"
)

// FuzzParseMessage feeds arbitrary bytes to the pgoutput message decoder and
// the tuple decoder: malformed input must give an error, never a panic.
func FuzzParseMessage(f *testing.F) {
	for _, seed := range [][]byte{
		{'B', 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7},
		{'I', 0, 0, 0, 1, 'N', 0, 1, 't', 0, 0, 0, 1, '5'},
		{'U', 0, 0, 0, 1, 'K', 0, 1, 'n', 'N', 0, 1, 'u'},
		{'R', 0, 0, 0, 1, 'p', 0, 't', 0, 'd', 0, 1, 1, 'i', 'd', 0, 0, 0, 0, 23, 255, 255, 255, 255},
		{'T', 0, 0, 0, 1, 3, 0, 0, 0, 1},
		{'M', 1, 0, 0, 0, 0, 0, 0, 0, 1, 'p', 0, 0, 0, 0, 1, 'x'},
		{'S', 0, 0, 0, 9, 1}, {'E'}, {'A', 0, 0, 0, 9, 0, 0, 0, 10},
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	rel := &relation{schema: "public", table: "t", cols: []schemas.Column{{Name: "id"}}, identKey: []bool{true}}
	f.Fuzz(func(t *testing.T, data []byte, inStream bool) {
		msg, err := parseMessage(data, inStream)
		if err != nil {
			return
		}
		switch m := msg.(type) {
		case *pglogrepl.InsertMessageV2:
			_, _, _, _ = tupleRow(rel, m.Tuple, false)
		case *pglogrepl.UpdateMessageV2:
			_, _, _, _ = tupleRow(rel, m.NewTuple, false)
			_, _, _, _ = tupleRow(rel, m.OldTuple, true)
		case *pglogrepl.DeleteMessageV2:
			_, _, _, _ = tupleRow(rel, m.OldTuple, true)
		}
	})
}
