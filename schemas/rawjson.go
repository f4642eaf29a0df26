package schemas

import (
	"encoding/json"
	"errors"
)

// RawJSON is a JSON value kept as its bytes (json.RawMessage that also treats
// an absent value as empty rather than as the literal null).
type RawJSON []byte

// MarshalJSON returns the value itself, or null when empty.
func (r RawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	return r, nil
}

// UnmarshalJSON keeps a copy of the raw value.
func (r *RawJSON) UnmarshalJSON(b []byte) error {
	if r == nil {
		return errors.New("schemas.RawJSON: UnmarshalJSON on nil pointer")
	}
	if !json.Valid(b) {
		return errors.New("schemas.RawJSON: invalid JSON")
	}
	*r = append((*r)[:0], b...)
	return nil
}
