package consumers

import (
	"gopkg.in/yaml.v3"
)

// Two-way sync during a rollout uses two mapping files, one per direction:
//
//   - the forward mapping (source.side: legacy, the default): legacy → cube;
//   - the reverse mapping (source.side: cube): the cube database is the
//     source and the legacy database the target, with SQL expressions over
//     the cube row computing the legacy columns. It is validated exactly like
//     the forward one (Mapping.Validate against both databases).
//
// Each direction has its own CDC slot; each cdc reader ignores the origin
// (the other direction's slot) that sync writes into its apply transactions,
// so a change crosses at most once each way (docs/cdc-notes.md, "Two-way
// sync"). The reverse direction never moves legacy sequences (sequences.go
// would move legacy's past the cube's own id range).
//
// Example (the demo's saju tables: internal/demo/testdata/reverse-mapping.yaml):
//
//	source: {database_url_env: SAJU_CUBE_DATABASE_URL, slot: shadowcube_reverse, side: cube}
//	targets:
//	  - name: legacy
//	    database_url_env: SHADOWCUBE_LEGACY_DATABASE_URL
//	    tables:
//	      - source: cube.saju_charts
//	        target: public.saju_records
//	        key: [id]
//	        conflict: newest
//	        columns:
//	          id: id
//	          birth_year: "(birth_info->>'year')::int"
//	          ...

// Sides of a rollout.
const (
	SideLegacy = "legacy"
	SideCube   = "cube"
)

// Conflict policies of a table (conflict.go).
const (
	ConflictLegacyWins = "legacy-wins"
	ConflictCubeWins   = "cube-wins"
	ConflictNewest     = "newest"
)

// Reverse reports whether m maps a cube database back to legacy.
func (m *Mapping) Reverse() bool { return m.Source.Side == SideCube }

// TargetSide is the side of the databases m writes to.
func (m *Mapping) TargetSide() string {
	if m.Reverse() {
		return SideLegacy
	}
	return SideCube
}

func (p *parser) side(n *yaml.Node, s *SourceSpec) error {
	if n == nil {
		return nil
	}
	v, err := p.str(n, "source.side")
	if err != nil {
		return err
	}
	if v != SideLegacy && v != SideCube {
		return p.errf(n, "", "", "", "source.side %q: want legacy (forward mapping) or cube (reverse mapping)", v)
	}
	s.Side = v
	return nil
}

func (p *parser) conflict(target string, n *yaml.Node, tm *TableMap) error {
	if n == nil {
		return nil
	}
	v, err := p.str(n, "conflict")
	if err != nil {
		return err
	}
	switch v {
	case ConflictLegacyWins, ConflictCubeWins, ConflictNewest:
	default:
		return p.errf(n, target, tm.Source, "", "conflict %q: want legacy-wins, cube-wins or newest", v)
	}
	tm.Conflict, tm.ConflictLine = v, n.Line
	return nil
}
