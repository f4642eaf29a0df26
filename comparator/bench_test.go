package comparator

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

// benchDocs returns a legacy (Hanja) and a cube (Hangul) saju answer of
// about 1 KiB each, equal after normalisation (or differing in the day
// pillar, as a zi-hour mismatch does, when mismatch is set).
func benchDocs(mismatch bool) (string, string) {
	luck := []string{"乙卯", "丙辰", "丁巳", "戊午", "己未", "庚申", "辛酉", "壬戌"}
	doc := func(hangul bool, day, stem string, reqID string) string {
		conv := func(s string) string {
			if hangul {
				return toHangul(s)
			}
			return s
		}
		ls := make([]string, len(luck))
		for i, l := range luck {
			ls[i] = fmt.Sprintf("%q", conv(l))
		}
		interp := strings.Repeat("일간이 강한 편이며 금의 기운이 뚜렷합니다. ", 8)
		return fmt.Sprintf(`{"id":123456,"request_id":%q,"generated_at":"2026-11-25T10:00:00.123456Z",`+
			`"pillars":{"year":%q,"month":%q,"day":%q,"hour":%q},`+
			`"day_master":{"stem":%q,"element":"metal","yin_yang":"yang"},`+
			`"elements":{"wood":1,"fire":0,"earth":3,"metal":2,"water":2},`+
			`"ten_gods":{"year":"편인","month":"편재","hour":"편인"},`+
			`"luck":{"direction":"forward","start_age":7,"pillars":[%s]},"interpretation":%q}`,
			reqID, conv("戊辰"), conv("甲寅"), conv(day), conv("戊子"), conv(stem), strings.Join(ls, ","), interp)
	}
	l := doc(false, "庚子", "庚", "01JD3Q9M2K6W8X4Y7Z0A1B2C3D")
	if mismatch {
		return l, doc(true, "辛丑", "辛", "01JD3Q9M2K6W8X4Y7Z0A1B2C3E")
	}
	return l, doc(true, "庚子", "庚", "01JD3Q9M2K6W8X4Y7Z0A1B2C3E")
}

// BenchmarkB7Compare is B7: the comparator alone on ~1 KiB saju answers,
// comparisons per second on one core, next to json.Unmarshal of the same
// two documents (the floor of any comparison) in the same run.
func BenchmarkB7Compare(b *testing.B) {
	n := 20000
	if testing.Short() {
		n = 500
	}
	// The bench replays one request over and over; with the repeat cache on,
	// every pair would also be compared legacy-vs-legacy as a noise baseline
	// (distinct requests in real traffic do not), so it is off here.
	c, err := New(Config{Routes: []RouteRules{{Service: "saju", Route: sajuRoute, Rules: Rules{Kind: KindSaju}}}, RepeatCache: -1})
	if err != nil {
		b.Fatal(err)
	}
	req := birth("1988-02-15", "23:40", "solar")
	lm, cm := benchDocs(false)
	lx, cx := benchDocs(true)
	match := result("saju", sajuRoute, req, lm, cm)
	mis := result("saju", sajuRoute, req, lx, cx)
	if o := c.Compare(match); o.Verdict != VerdictMatch {
		b.Fatalf("bench pair does not match: %+v", o.Diffs)
	}
	if o := c.Compare(mis); o.Verdict != VerdictMismatch || o.Causes[0] != CauseZiHour {
		b.Fatalf("bench mismatch pair: %+v %v", o.Diffs, o.Causes)
	}
	unmarshal := func() {
		var x, y any
		if json.Unmarshal(match.Legacy.Body, &x) != nil || json.Unmarshal(match.Cube.Body, &y) != nil {
			b.Fatal("unmarshal")
		}
	}
	timeIt := func(f func()) float64 {
		start := time.Now()
		for i := 0; i < n; i++ {
			f()
		}
		return float64(n) / time.Since(start).Seconds()
	}
	rounds := 3
	if testing.Short() {
		rounds = 1
	}
	median := func(v []float64) float64 {
		sort.Float64s(v)
		return v[len(v)/2]
	}
	b.ResetTimer()
	var limit, rate, misRate float64
	for i := 0; i < b.N; i++ {
		// The machine is shared and noisy: alternate limit and figures and
		// take the median of each.
		var ls, rs, ms []float64
		for r := 0; r < rounds; r++ {
			ls = append(ls, timeIt(unmarshal))
			rs = append(rs, timeIt(func() { c.Compare(match) }))
			ms = append(ms, timeIt(func() { c.Compare(mis) }))
		}
		limit, rate, misRate = median(ls), median(rs), median(ms)
	}
	b.StopTimer()
	allocs := testing.AllocsPerRun(200, func() { c.Compare(match) })
	misAllocs := testing.AllocsPerRun(50, func() { c.Compare(mis) })
	limAllocs := testing.AllocsPerRun(200, unmarshal)
	fmt.Printf("bench B7 comparator saju match (%d B docs): %.0f comparisons/s/core | limit %.0f unmarshal-pairs/s/core | ratio %.2f | target 0.25\n",
		len(match.Legacy.Body), rate, limit, rate/limit)
	fmt.Printf("bench B7 comparator saju mismatch + cause tags: %.0f comparisons/s/core | limit %.0f unmarshal-pairs/s/core | ratio %.2f | target 0.25\n",
		misRate, limit, misRate/limit)
	fmt.Printf("bench B7 allocations per match comparison: %.0f allocs | limit %.0f allocs/unmarshal-pair | ratio %.2f | target -\n",
		allocs, limAllocs, allocs/limAllocs)
	fmt.Printf("bench B7 allocations per mismatch comparison: %.0f allocs | limit %.0f allocs/unmarshal-pair | ratio %.2f | target -\n",
		misAllocs, limAllocs, misAllocs/limAllocs)
}
