package demo

import (
	"fmt"
	"testing"
	"time"

	"github.com/6tail/lunar-go/calendar"
)

// BenchmarkSajuService measures dry-run chart requests per second through
// the legacy service's HTTP handler (JSON in, chart, JSON out) next to its
// limit in the same run: bare lunar-go eight-character computations per
// second for the same births (the service needs two per chart: one for the
// term-based pillars, one for the wall-clock day and hour). Target: ≥ 0.35.
func BenchmarkSajuService(b *testing.B) {
	n := 2000
	if testing.Short() {
		n = 100
	}
	g, err := NewGenerator(DefaultGenConfig())
	if err != nil {
		b.Fatal(err)
	}
	reqs := sortedRequests(g, n)
	births := make([]Birth, n)
	for i, r := range reqs {
		if births[i], err = r.ParseBirth(); err != nil {
			b.Fatal(err)
		}
	}
	legacy, _ := pair(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		for _, bi := range births {
			sd, err := solarDate(bi)
			if err != nil {
				b.Fatal(err)
			}
			calendar.NewSolar(sd.Year(), int(sd.Month()), sd.Day(), bi.Hour, bi.Minute, 0).GetLunar().GetEightChar().GetDay()
		}
		limit := float64(n) / time.Since(start).Seconds()
		start = time.Now()
		for _, r := range reqs {
			if code, body := do(b, legacy, "POST", "/api/saju/chart", r, dryRun); code != 200 {
				b.Fatalf("%d %s", code, body)
			}
		}
		figure := float64(n) / time.Since(start).Seconds()
		fmt.Printf("bench demo_saju_charts: %.0f charts/s | limit %.0f lunar-go eight-chars/s | ratio %.2f | target 0.35\n", figure, limit, figure/limit)
	}
}
