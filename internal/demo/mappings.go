package demo

import _ "embed"

// ForwardMapping is the sync mapping of the demo's saju tables, legacy →
// cube (consumers' mapping file format): saju_records' flat columns become
// cube.saju_charts' jsonb documents.
//
//go:embed testdata/forward-mapping.yaml
var ForwardMapping string

// ReverseMapping is the inverse, cube → legacy (source.side: cube), used by
// the reverse sync of a rollout: charts the cube writes for rolled-out users
// reach legacy's saju_records.
//
//go:embed testdata/reverse-mapping.yaml
var ReverseMapping string

// LegacyRolloutSchema and CubeRolloutSchema make the saju tables send whole
// old rows (REPLICA IDENTITY FULL), which conflict detection needs on the
// source side of each direction (consumers/conflict.go).
const (
	LegacyRolloutSchema = `ALTER TABLE saju_records REPLICA IDENTITY FULL`
	CubeRolloutSchema   = `ALTER TABLE cube.saju_charts REPLICA IDENTITY FULL`
)
