package comparator

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/testenv"
)

// TestBackfillRollupsEqualsLivePath: the roll-ups migration 3 builds for
// pairs stored before it are the ones Save builds while storing them.
func TestBackfillRollupsEqualsLivePath(t *testing.T) {
	s := openStore(t)
	ctx := testenv.Context(t, time.Minute)
	c := sajuComparator(t, RouteRules{Service: "ai", Route: "/api/ai/analyze", Rules: Rules{Kind: KindAI}})
	l := sajuDoc(1, "x", "戊辰", "甲寅", "辛丑", "戊子", "辛", "편인", 7, false)
	cu := sajuDoc(1, "x", "戊辰", "甲寅", "庚子", "戊子", "庚", "편인", 7, true)
	var outs []*Outcome
	for i := range 30 {
		var o *Outcome
		switch i % 3 {
		case 0:
			o = c.Compare(result("saju", sajuRoute, birth("1988-02-15", "23:40", "solar"), l, cu))
		case 1:
			o = c.Compare(result("saju", sajuRoute, birth("1988-02-15", "10:00", "solar"), l, l))
		default:
			res := result("ai", "/api/ai/analyze", `{"u":1}`, aiDoc("wood", 0.9), aiDoc([]string{"wood", "fire"}[i%2], 0.6))
			res.Request.Headers = map[string][]string{"X-Truth-Label": {"wood"}}
			o = c.Compare(res)
		}
		o.RequestID = fmt.Sprintf("bf-%d", i)
		o.ComparedAt = time.Date(2026, 11, 30, 8+i%4, i, 0, 0, time.UTC)
		o.LegacyLatency = time.Duration(3+i) * time.Millisecond
		o.CubeLatency = time.Duration(5+2*i) * time.Millisecond
		outs = append(outs, o)
	}
	if _, err := s.Save(ctx, outs); err != nil {
		t.Fatal(err)
	}
	dump := func() string {
		t.Helper()
		var b strings.Builder
		rows, err := s.pool.Query(ctx, s.q(`SELECT hour, service, route, verdict, signature, kind, causes, pairs, accepted, stale,
			ai_pairs, ai_agree, ai_conf_diff_sum, ai_conf_pairs, ai_labelled, ai_legacy_correct, ai_cube_correct
			FROM {s}.rollup_hourly ORDER BY 1, 2, 3, 4, 5`))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			v, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			for i, x := range v {
				if f, ok := x.(float64); ok { // sums of milliseconds: rounding of the ms round trip
					v[i] = math.Round(f*1e6) / 1e6
				}
			}
			fmt.Fprintln(&b, v...)
		}
		rows, err = s.pool.Query(ctx, s.q(`SELECT hour, service, route, verdict, signature, path, pairs FROM {s}.rollup_paths ORDER BY 1, 2, 3, 4, 5, 6`))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			v, _ := rows.Values()
			fmt.Fprintln(&b, v...)
		}
		rows, err = s.pool.Query(ctx, s.q(`SELECT hour, service, route, verdict, round(legacy_ms_sum::numeric, 6), legacy_ms_n,
			round(cube_ms_sum::numeric, 6), cube_ms_n, legacy_hist, cube_hist FROM {s}.rollup_latency ORDER BY 1, 2, 3, 4`))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			v, _ := rows.Values()
			fmt.Fprintln(&b, v...)
		}
		return b.String()
	}
	live := dump()
	if !strings.Contains(live, "zi-hour") || !strings.Contains(live, "$.pillars.day") || strings.Count(live, "\n") < 8 {
		t.Fatalf("live roll-ups look empty:\n%s", live)
	}
	if _, err := s.pool.Exec(ctx, s.q(`TRUNCATE {s}.rollup_hourly, {s}.rollup_paths, {s}.rollup_latency`)); err != nil {
		t.Fatal(err)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.backfillRollups(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if back := dump(); back != live {
		t.Fatalf("backfilled roll-ups differ from the live ones:\nlive:\n%s\nbackfilled:\n%s", live, back)
	}
}
