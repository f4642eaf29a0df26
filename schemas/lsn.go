package schemas

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// LSN is a PostgreSQL write-ahead log position. It marshals to JSON in
// PostgreSQL's own text form ("16/B374D848") so events stay readable, and
// compares as a number.
type LSN uint64

// String returns the PostgreSQL text form of the LSN.
func (l LSN) String() string {
	return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l))
}

// ParseLSN parses PostgreSQL's text form of an LSN ("16/B374D848").
func ParseLSN(s string) (LSN, error) {
	hiText, loText, ok := strings.Cut(s, "/")
	if !ok || len(hiText) == 0 || len(loText) == 0 || len(hiText) > 8 || len(loText) > 8 {
		return 0, fmt.Errorf("parse LSN %q: want the form X/X with 1 to 8 hexadecimal digits each", s)
	}
	hi, err1 := strconv.ParseUint(hiText, 16, 32)
	lo, err2 := strconv.ParseUint(loText, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse LSN %q: want the form X/X with 1 to 8 hexadecimal digits each", s)
	}
	return LSN(hi<<32 | lo), nil
}

// MarshalJSON writes the LSN as its text form.
func (l LSN) MarshalJSON() ([]byte, error) {
	return json.Marshal(l.String())
}

// UnmarshalJSON reads the text form written by MarshalJSON.
func (l *LSN) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("LSN must be a string like \"16/B374D848\"")
	}
	v, err := ParseLSN(s)
	if err != nil {
		return err
	}
	*l = v
	return nil
}
