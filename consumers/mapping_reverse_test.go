package consumers

import (
	"strings"
	"testing"
	"time"
)

const reverseYAML = `source: {database_url_env: CUBE_URL, slot: rev, side: cube}
targets:
  - name: legacy
    database_url_env: LEGACY_URL
    tables:
      - source: cube.saju_charts
        target: public.saju_records
        key: [id]
        conflict: %s
`

func TestReverseMappingParse(t *testing.T) {
	m, err := ParseMapping("rev.yaml", []byte(strings.Replace(reverseYAML, "%s", "newest", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if !m.Reverse() || m.TargetSide() != SideLegacy || m.Targets[0].Tables[0].Conflict != ConflictNewest || m.Targets[0].Tables[0].ConflictLine != 9 {
		t.Fatalf("parsed %+v / %+v", m.Source, m.Targets[0].Tables[0])
	}
	fwd, err := ParseMapping("fwd.yaml", []byte("targets: [{name: c, database_url_env: X, tables: [{source: a, key: [id]}]}]"))
	if err != nil {
		t.Fatal(err)
	}
	if fwd.Reverse() || fwd.Source.Side != SideLegacy || fwd.Targets[0].Tables[0].Conflict != "" {
		t.Fatalf("forward defaults: %+v", fwd.Source)
	}
	for _, c := range []struct{ yaml, want string }{
		{strings.Replace(reverseYAML, "%s", "cube-first", 1), `rev.yaml:9: target legacy: table cube.saju_charts: conflict "cube-first": want legacy-wins, cube-wins or newest`},
		{strings.Replace(strings.Replace(reverseYAML, "%s", "newest", 1), "side: cube", "side: both", 1), `rev.yaml:1: source.side "both": want legacy (forward mapping) or cube (reverse mapping)`},
	} {
		_, err := ParseMapping("rev.yaml", []byte(c.yaml))
		if err == nil || err.Error() != c.want {
			t.Errorf("got %v, want %s", err, c.want)
		}
	}
}

func TestConflictWinner(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	later, earlier := now.Add(time.Millisecond), now.Add(-time.Millisecond)
	fwd := &Mapping{Source: SourceSpec{Side: SideLegacy}}
	rev := &Mapping{Source: SourceSpec{Side: SideCube}}
	for _, c := range []struct {
		m      *Mapping
		policy string
		target *time.Time
		want   string
	}{
		{fwd, ConflictLegacyWins, &later, SideLegacy},
		{rev, ConflictLegacyWins, &earlier, SideLegacy},
		{fwd, ConflictCubeWins, &earlier, SideCube},
		{fwd, ConflictNewest, &later, SideCube}, // the cube's row is newer
		{fwd, ConflictNewest, &earlier, SideLegacy},
		{rev, ConflictNewest, &later, SideLegacy}, // legacy's row is newer
		{rev, ConflictNewest, &earlier, SideCube},
		{rev, ConflictNewest, &now, SideLegacy}, // tie
		{rev, ConflictNewest, nil, SideLegacy},  // unknown commit time
	} {
		if got := c.m.winner(&TableMap{Conflict: c.policy}, now, c.target); got != c.want {
			t.Errorf("%s side %s target %v: winner %s, want %s", c.policy, c.m.Source.Side, c.target, got, c.want)
		}
	}
}
