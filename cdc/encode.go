package cdc

import "github.com/heal7/shadowcube/schemas"

// marshalEvent encodes ev into a fresh buffer.
func marshalEvent(ev *schemas.ChangeEvent) []byte {
	return schemas.AppendChangeEvent(make([]byte, 0, 512), ev)
}
