package schemas

import "embed"

// Files holds the JSON Schema (draft 2020-12) of every event type:
// request_event, change_event, shadow_result, mismatch and dead_letter, each as
// "<name>.schema.json". Other tools can validate events against them.
//
//go:embed *.schema.json
var Files embed.FS
