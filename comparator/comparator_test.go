package comparator

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heal7/shadowcube/schemas"
)

const sajuRoute = "/api/saju/chart"

func sajuComparator(t testing.TB, extra ...RouteRules) *Comparator {
	t.Helper()
	routes := append([]RouteRules{{Service: "saju", Route: sajuRoute, Rules: Rules{Kind: KindSaju}}}, extra...)
	c, err := New(Config{Routes: routes})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func result(service, route, reqBody, legacy, cube string) *schemas.ShadowResult {
	return &schemas.ShadowResult{
		V: schemas.Version, RequestID: fmt.Sprintf("r-%d", rand.Int()), Service: service, Route: route,
		Request: schemas.RequestEvent{V: schemas.Version, Service: service, Route: route, Method: "POST", Path: route,
			Body: []byte(reqBody), CapturedAt: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Source: schemas.SourceImport},
		Legacy: schemas.HTTPResponse{Status: 200, Body: []byte(legacy), Latency: time.Millisecond},
		Cube:   &schemas.HTTPResponse{Status: 200, Body: []byte(cube), Latency: 2 * time.Millisecond},
	}
}

// sajuDoc renders a saju answer; script "hanja" or "hangul".
func sajuDoc(id int, reqID, y, m, d, h, dmStem, tgYear string, startAge int, hangul bool) string {
	conv := func(s string) string {
		if !hangul {
			return s
		}
		return toHangul(s)
	}
	hour := "null"
	if h != "" {
		hour = `"` + conv(h) + `"`
	}
	return fmt.Sprintf(`{"id":%d,"request_id":%q,"generated_at":%q,"pillars":{"year":%q,"month":%q,"day":%q,"hour":%s},`+
		`"day_master":{"stem":%q,"element":"metal","yin_yang":"yang"},"elements":{"wood":1,"fire":0,"earth":3,"metal":2,"water":2},`+
		`"ten_gods":{"year":%q,"month":"편재","hour":"편인"},"luck":{"direction":"forward","start_age":%d,"pillars":[%q,%q]},"interpretation":"text %s"}`,
		id, reqID, time.Now().Format(time.RFC3339Nano), conv(y), conv(m), conv(d), hour, conv(dmStem), tgYear, startAge, conv("乙卯"), conv("丙辰"), reqID)
}

func toHangul(s string) string {
	var b strings.Builder
	for i, r := range []rune(s) {
		if k := strings.IndexRune(stemsHanja, r); k >= 0 && i == 0 {
			b.WriteRune([]rune(stemsHangul)[strings.Count(stemsHanja[:k], "")-1])
			continue
		}
		if k := strings.IndexRune(branchesHanja, r); k >= 0 {
			b.WriteRune([]rune(branchesHangul)[strings.Count(branchesHanja[:k], "")-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func birth(date, tm, cal string) string {
	return fmt.Sprintf(`{"user_id":"u-1","birth_date":%q,"birth_time":%q,"calendar":%q,"leap_month":false,"gender":"male","city":"Seoul"}`, date, tm, cal)
}

func TestHangulHelper(t *testing.T) {
	if got := toHangul("辛申"); got != "신신" {
		t.Fatalf("toHangul = %q", got)
	}
	if NormalizeGanji("신신") != "辛申" || NormalizeGanji("경자") != "庚子" || NormalizeGanji(" 경 ") != "庚" {
		t.Fatalf("NormalizeGanji: %q %q", NormalizeGanji("신신"), NormalizeGanji("경자"))
	}
}

// TestSajuMatchAcrossScripts: the same chart in Hanja (legacy) and Hangul
// (cube), with different ids, request ids, timestamps and narrative, is a match.
func TestSajuMatchAcrossScripts(t *testing.T) {
	c := sajuComparator(t)
	l := sajuDoc(1, "req-a", "戊辰", "甲寅", "庚子", "戊子", "庚", "편인", 7, false)
	cu := sajuDoc(77, "req-b", "戊辰", "甲寅", "庚子", "戊子", "庚", "偏印", 7, true)
	o := c.Compare(result("saju", sajuRoute, birth("1988-02-15", "23:30", "solar"), l, cu))
	if o.Verdict != VerdictMatch || len(o.Diffs) != 0 {
		t.Fatalf("verdict %s diffs %+v", o.Verdict, o.Diffs)
	}
}

// TestSajuCauses: each kind of difference, on birth data that explains it,
// gets the expected cause tag; the same difference without an explanation
// is unexplained.
func TestSajuCauses(t *testing.T) {
	base := func(y, m, d, h, dm string, age int, hangul bool) string {
		return sajuDoc(1, "x", y, m, d, h, dm, "편인", age, hangul)
	}
	cases := []struct {
		name        string
		req         string
		legacy      string
		cube        string
		wantCauses  []string
		wantInPaths string
	}{
		// Pillars below are worked by hand from docs/saju.md's rules (day index
		// (JDN−11) mod 60; 子-hour stem 2·(stem of the next day from 23:00
		// mod 5); 寅-month stem 2·(year stem mod 5)+2) and the term instants
		// quoted; lunar-go agrees (TestCauseAttributionIndependentPairs).
		{"day pillar at 23:40 is zi-hour", birth("1988-02-15", "23:40", "solar"),
			base("戊辰", "甲寅", "辛丑", "戊子", "辛", 7, false), base("戊辰", "甲寅", "庚子", "戊子", "庚", 7, true),
			[]string{CauseZiHour}, "$.pillars.day"},
		{"day pillar at 14:00 is unexplained", birth("1988-02-15", "14:00", "solar"),
			base("戊辰", "甲寅", "辛丑", "癸未", "辛", 7, false), base("戊辰", "甲寅", "庚子", "癸未", "庚", 7, true),
			[]string{CauseUnexplained}, "$.pillars.day"},
		// 立春 2024 is 2024-02-04 16:27 UTC+8 = 17:27 KST: at 17:10 KST the
		// new year and month start only for a side reading the wall clock as UTC+8.
		{"month and year at 立春 are solar-term-boundary", birth("2024-02-04", "17:10", "solar"),
			base("甲辰", "丙寅", "戊戌", "辛酉", "戊", 5, false), base("癸卯", "乙丑", "戊戌", "辛酉", "戊", 5, true),
			[]string{CauseSolarTerm}, "$.pillars.month"},
		{"the other direction at 立春 is unexplained", birth("2024-02-04", "17:50", "solar"),
			base("癸卯", "乙丑", "戊戌", "辛酉", "戊", 5, false), base("甲辰", "丙寅", "戊戌", "辛酉", "戊", 5, true),
			[]string{CauseUnexplained}, "$.pillars.month"},
		{"month far from a term is unexplained", birth("2024-03-20", "12:00", "solar"),
			base("甲辰", "丁卯", "戊戌", "戊午", "戊", 5, false), base("甲辰", "戊辰", "戊戌", "戊午", "戊", 5, true),
			[]string{CauseUnexplained}, "$.pillars.month"},
		// 2000-06-10 is 己亥; 13:20 is 辛未, 12:48 (−32 min) 庚午.
		{"hour pillar at 13:20 is local-mean-time", birth("2000-06-10", "13:20", "solar"),
			base("庚辰", "壬午", "己亥", "辛未", "己", 3, false), base("庚辰", "壬午", "己亥", "庚午", "己", 3, true),
			[]string{CauseLocalMeanTime}, "$.pillars.hour"},
		// Issue 11.9 (b): 1995-03-10 (庚子) 23:10 is 戊子 (the next day's
		// stem); 32 minutes earlier, 22:38, is 丁亥. No zi rule makes 亥.
		{"23:10 moved into the 亥 hour is local-mean-time", birth("1995-03-10", "23:10", "solar"),
			base("乙亥", "己卯", "庚子", "戊子", "庚", 3, false), base("乙亥", "己卯", "庚子", "丁亥", "庚", 3, true),
			[]string{CauseLocalMeanTime}, "$.pillars.hour"},
		// 00:20 on 1995-03-10 read 32 minutes earlier is 23:48 on 03-09 (己亥).
		{"00:20 moved to the day before is local-mean-time", birth("1995-03-10", "00:20", "solar"),
			base("乙亥", "己卯", "庚子", "丙子", "庚", 3, false), base("乙亥", "己卯", "己亥", "丙子", "己", 3, true),
			[]string{CauseLocalMeanTime}, "$.pillars.day"},
		// Issue 11.9 (a): 寒露 1958 is about 03:20 UTC+8 on 10-09; Korea ran
		// on UTC+8:30, so 04:10 is 03:40 UTC+8 (戌 month); a fixed UTC+9
		// clock makes it 03:10 (still 酉). A naive UTC+8 table would go the
		// other way (late), so this is clock-history alone.
		{"month in the UTC+8:30 years is clock-history", birth("1958-10-09", "04:10", "solar"),
			base("戊戌", "辛酉", "己未", "丙寅", "己", 3, false), base("戊戌", "壬戌", "己未", "丙寅", "己", 3, true),
			[]string{CauseClockHistory}, "$.pillars.month"},
		// Lunar 1995-07-10: lunar-go's month starts on the UTC+8 day of the
		// new moon, a day before a calendar on UTC+9 starts it.
		{"lunar input", birth("1995-07-10", "10:00", "lunar"),
			base("乙亥", "癸未", "戊辰", "丁巳", "戊", 3, false), base("乙亥", "癸未", "己巳", "己巳", "己", 3, true),
			[]string{CauseLunarInput}, "$.pillars.day"},
		// Lunar 2017-06-10: lunar-go (Chinese calendar, leap 6th month)
		// gives 2017-07-03; the Korean calendar (leap 5th month) has its 6th
		// month where the Chinese leap 6th is, so 2017-08-01. Day index
		// 27 (辛卯) vs 56 (庚申); months 丙午 vs 丁未; hours 癸巳 vs 辛巳.
		{"lunar leap month placed elsewhere", birth("2017-06-10", "10:00", "lunar"),
			base("丁酉", "丙午", "辛卯", "癸巳", "辛", 3, false), base("丁酉", "丁未", "庚申", "辛巳", "庚", 3, true),
			[]string{CauseLunarInput}, "$.pillars.day"},
		{"only the luck start age is table-convention", birth("1995-09-01", "10:00", "solar"),
			base("乙亥", "甲申", "戊午", "丁巳", "戊", 3, false), base("乙亥", "甲申", "戊午", "丁巳", "戊", 4, true),
			[]string{CauseTable}, "$.luck.start_age"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := sajuComparator(t)
			o := c.Compare(result("saju", sajuRoute, tc.req, tc.legacy, tc.cube))
			if o.Verdict != VerdictMismatch {
				t.Fatalf("verdict %s, want mismatch", o.Verdict)
			}
			if !slices.Equal(o.Causes, tc.wantCauses) {
				t.Errorf("causes %v, want %v (birth %+v, diffs %+v)", o.Causes, tc.wantCauses, o.Birth, o.Diffs)
			}
			if !strings.Contains(o.Signature, tc.wantInPaths) {
				t.Errorf("signature %q lacks %s", o.Signature, tc.wantInPaths)
			}
		})
	}
}

func TestBirthFacts(t *testing.T) {
	cfg := SajuConfig{}
	f := birthFacts([]byte(birth("1955-05-05", "10:00", "solar")), cfg)
	if !f.Valid || f.Offset != 9*time.Hour+30*time.Minute || len(f.Dates) != 1 {
		t.Errorf("1955 summer time: %+v", f)
	}
	f = birthFacts([]byte(birth("1958-01-05", "10:00", "solar")), cfg)
	if f.Offset != 8*time.Hour+30*time.Minute {
		t.Errorf("1958 UTC+8:30: %+v", f)
	}
	f = birthFacts([]byte(birth("1970-01-05", "10:00", "solar")), cfg)
	if f.Offset != 9*time.Hour || f.Longitude != seoulLongitude {
		t.Errorf("1970 is standard time: %+v", f)
	}
	f = birthFacts([]byte(birth("2023-02-30", "10:00", "solar")), cfg)
	if f.Valid || f.Err == "" {
		t.Errorf("impossible date accepted: %+v", f)
	}
	// lunar 2017-06-31: lunar-go's 6th month of 2017 has 29 days.
	f = birthFacts([]byte(birth("2017-06-31", "10:00", "lunar")), cfg)
	if f.Valid || !strings.Contains(f.Err, "not day 31") && !strings.Contains(f.Err, "not 1..30") {
		t.Errorf("lunar 2017-06-31 accepted: %+v", f)
	}
	// lunar 2017-06-01 (Chinese calendar: 2017-06-24) and the readings of
	// other calendars: a day either side, and the neighbouring months.
	f = birthFacts([]byte(birth("2017-06-01", "10:00", "lunar")), cfg)
	if !f.Valid || f.Dates[0] != (civilDate{2017, 6, 24}) || len(f.Dates) != 9 || !slices.Contains(f.Dates, civilDate{2017, 6, 25}) {
		t.Errorf("lunar 2017-06-01: %+v", f)
	}
}

func TestSignatureAndAccepted(t *testing.T) {
	acc, err := ParseAccepted("accepted.yaml", []byte(`version: 1
accepted:
  - route: /api/saju/chart
    cause: zi-hour
    reason: the cube keeps the day until midnight (Korean rule) on purpose
`))
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Routes: []RouteRules{{Service: "saju", Route: sajuRoute, Rules: Rules{Kind: KindSaju}}}, Accepted: acc})
	if err != nil {
		t.Fatal(err)
	}
	l := sajuDoc(1, "x", "戊辰", "甲寅", "辛丑", "戊子", "辛", "편인", 7, false)
	cu := sajuDoc(1, "x", "戊辰", "甲寅", "庚子", "戊子", "庚", "편인", 7, true)
	o := c.Compare(result("saju", sajuRoute, birth("1988-02-15", "23:40", "solar"), l, cu))
	if o.Verdict != VerdictMismatch || !o.Accepted || o.Failing() {
		t.Fatalf("want an accepted, non-failing mismatch: %+v", o)
	}
	want := "saju:/api/saju/chart:$.day_master,$.pillars.day:zi-hour"
	if o.Signature != want {
		t.Errorf("signature %q, want %q", o.Signature, want)
	}
	m := o.Mismatch()
	if err := m.Validate(); err != nil || m.Signature != want || len(m.Diffs) != len(o.Diffs) {
		t.Errorf("Mismatch event %+v: %v", m, err)
	}
	if a, err := LoadAccepted("testdata/accepted.yaml"); err != nil || len(a.Entries) != 2 || a.Entries[1].Line == 0 {
		t.Fatalf("testdata/accepted.yaml: %+v %v", a, err)
	}
	for _, bad := range []string{"version: 2\naccepted: []\n", "version: 1\naccepted:\n  - route: /x\n    reason: r\n",
		"version: 1\naccepted:\n  - signature: s\n", "version: 1\nbogus: 1\n"} {
		if _, err := ParseAccepted("a.yaml", []byte(bad)); err == nil {
			t.Errorf("accepted %q without error", bad)
		}
	}
}

// TestNoiseSuppression: a field random in the legacy, its secondary and the
// cube alike is suppressed with no rule; a real difference that occurs as
// often as another field's noise is still reported.
func TestNoiseSuppression(t *testing.T) {
	c, err := New(Config{Routes: []RouteRules{{Service: "svc", Route: "/r", Rules: Rules{}}}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	doc := func(nonce int, flaky, real string) string {
		return fmt.Sprintf(`{"nonce":%d,"flaky":%q,"real":%q,"stable":1}`, nonce, flaky, real)
	}
	const n = 2000
	var realReported, flakyReported, nonceReported int
	for i := 0; i < n; i++ {
		// flaky differs between legacy instances in 10% of the requests;
		// the cube differs in "real" in 10% of the requests, never noise.
		lf, sf, cf := "a", "a", "a"
		if i%10 == 3 {
			sf, cf = "b", "b"
		}
		lr, cr := "x", "x"
		if i%10 == 7 {
			cr = "y"
		}
		r := result("svc", "/r", `{}`, doc(rng.Int(), lf, lr), doc(rng.Int(), cf, cr))
		r.Secondary = &schemas.HTTPResponse{Status: 200, Body: []byte(doc(rng.Int(), sf, lr))}
		o := c.Compare(r)
		for _, d := range o.Diffs {
			switch d.Path {
			case "$.real":
				realReported++
			case "$.flaky":
				flakyReported++
			case "$.nonce":
				nonceReported++
			}
		}
	}
	if nonceReported != 0 {
		t.Errorf("random field reported %d times, want 0", nonceReported)
	}
	if realReported != n/10 {
		t.Errorf("real difference reported %d times, want %d", realReported, n/10)
	}
	if flakyReported > 5 { // at most while the baseline is still empty
		t.Errorf("noisy field reported %d times", flakyReported)
	}
	_, base, paths := c.NoiseState("svc", "/r")
	if base != n {
		t.Errorf("baselines %d, want %d", base, n)
	}
	for _, p := range paths {
		if want := p.Path != "$.real"; p.IsNoise != want {
			t.Errorf("path %s noise=%v, want %v (%+v)", p.Path, p.IsNoise, want, p)
		}
	}
}

// TestNoiseFromRepeats: without a secondary, two legacy answers to the same
// request teach the comparator which field is noise.
func TestNoiseFromRepeats(t *testing.T) {
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	var last *Outcome
	for i := 0; i < 50; i++ {
		req := fmt.Sprintf(`{"q":%d}`, i%5) // every request repeats
		r := result("svc", "/r", req, fmt.Sprintf(`{"token":"t%d","v":1}`, i), fmt.Sprintf(`{"token":"c%d","v":1}`, i))
		last = c.Compare(r)
	}
	if last.Verdict != VerdictNoise || len(last.NoiseDiffs) != 1 || !last.Noise.FromRepeats {
		t.Fatalf("last outcome %+v", last)
	}
}

func TestDiffyRule(t *testing.T) {
	cfg := NoiseConfig{}
	for _, tc := range []struct {
		raw, noise float64
		want       bool
	}{
		{0.10, 0.10, false}, {0.10, 0.09, false}, {0.10, 0.0, true}, {0.10, 0.06, true}, {0.10, 0.07, false},
		{0.0002, 0, false}, {0.0005, 0, true}, {0.05, 0.10, false},
	} {
		if got := Reportable(tc.raw, tc.noise, cfg); got != tc.want {
			t.Errorf("Reportable(%v, %v) = %v, want %v", tc.raw, tc.noise, got, tc.want)
		}
	}
}

func aiDoc(label string, conf float64) string {
	b, _ := json.Marshal(map[string]any{"label": label, "confidence": conf, "text": "because " + label, "request_id": rand.Int()})
	return string(b)
}

// runAI feeds n labelled pairs with the given legacy and cube accuracies.
func runAI(t *testing.T, n int, legacyAcc, cubeAcc float64, seed uint64) AIReport {
	t.Helper()
	c, err := New(Config{Routes: []RouteRules{{Service: "ai", Route: "/api/ai/analyze", Rules: Rules{Kind: KindAI}}}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	labels := []string{"wood", "fire", "earth", "metal", "water"}
	wrong := func(truth string) string {
		for {
			if l := labels[rng.IntN(5)]; l != truth {
				return l
			}
		}
	}
	// Exact counts, shuffled: the test is about the statistics, not sampling luck.
	lc, cc := int(legacyAcc*float64(n)+0.5), int(cubeAcc*float64(n)+0.5)
	lOK, cOK := rng.Perm(n), rng.Perm(n)
	lset, cset := map[int]bool{}, map[int]bool{}
	for _, i := range lOK[:lc] {
		lset[i] = true
	}
	for _, i := range cOK[:cc] {
		cset[i] = true
	}
	for i := 0; i < n; i++ {
		truth := labels[rng.IntN(5)]
		ll, cl := wrong(truth), wrong(truth)
		if lset[i] {
			ll = truth
		}
		if cset[i] {
			cl = truth
		}
		r := result("ai", "/api/ai/analyze", fmt.Sprintf(`{"user_id":"u-%d"}`, i), aiDoc(ll, 0.8), aiDoc(cl, 0.75))
		r.Request.Headers = http.Header{"X-Truth-Label": {truth}}
		o := c.Compare(r)
		if (ll != cl) != (o.Verdict == VerdictMismatch) {
			t.Fatalf("labels %s/%s gave verdict %s %+v", ll, cl, o.Verdict, o.Diffs)
		}
		if o.Verdict == VerdictMismatch && !slices.Equal(o.Causes, []string{CauseAILabel}) {
			t.Fatalf("causes %v", o.Causes)
		}
	}
	return c.AIReport("ai", "/api/ai/analyze")
}

func TestAIAccuracy(t *testing.T) {
	t.Run("2pp drop passes", func(t *testing.T) {
		r := runAI(t, 2000, 0.90, 0.88, 1)
		if r.Flagged {
			t.Fatalf("flagged: %s", r.FlaggedReason)
		}
		if r.Labelled != 2000 || r.MeanConfDiff < 0.049 || r.MeanConfDiff > 0.051 {
			t.Fatalf("report %+v", r)
		}
	})
	t.Run("8pp drop on enough samples fails", func(t *testing.T) {
		r := runAI(t, 1000, 0.90, 0.82, 2)
		if !r.Flagged || r.P >= 0.05 || r.Drop < 0.079 {
			t.Fatalf("not flagged: %+v", r)
		}
		if !(r.CubeCI.Lo < r.CubeAcc && r.CubeAcc < r.CubeCI.Hi && r.CubeCI.Hi < r.LegacyCI.Hi) {
			t.Fatalf("intervals %+v %+v", r.LegacyCI, r.CubeCI)
		}
	})
	t.Run("8pp drop on few samples is not significant", func(t *testing.T) {
		r := runAI(t, 40, 0.90, 0.82, 3)
		if r.Flagged {
			t.Fatalf("flagged on 40 samples: %s", r.FlaggedReason)
		}
	})
}

func TestWilsonAndZ(t *testing.T) {
	iv := Wilson(90, 100, 1.959964)
	if iv.Lo < 0.8255 || iv.Lo > 0.8258 || iv.Hi < 0.9446 || iv.Hi > 0.9450 {
		t.Errorf("Wilson(90,100) = %+v, want about [0.8256, 0.9448]", iv)
	}
	z, p1, p2 := TwoProportionZ(90, 100, 80, 100)
	if z < 1.97 || z > 1.99 || p1 < 0.023 || p1 > 0.025 || p2 < 0.047 || p2 > 0.049 {
		t.Errorf("TwoProportionZ = %v %v %v", z, p1, p2)
	}
}

func TestCubeErrorAndStale(t *testing.T) {
	c := sajuComparator(t)
	r := result("saju", sajuRoute, birth("1988-02-15", "10:00", "solar"), `{}`, `{}`)
	r.Cube, r.CubeError = nil, "timeout after 2s"
	o := c.Compare(r)
	if o.Verdict != VerdictError || !o.Failing() || o.CubeError == "" {
		t.Fatalf("%+v", o)
	}
	r = result("saju", sajuRoute, birth("1988-02-15", "10:00", "solar"), `{"a":1}`, `{"a":1}`)
	r.Freshness.Stale = true
	if o := c.Compare(r); !o.Stale || o.Verdict != VerdictMatch {
		t.Fatalf("%+v", o)
	}
	// A body cut at the capture cap is not comparable as JSON: tagged so.
	r = result("svc", "/r", `{}`, `{"a":[1,2`, `{"a":[1,2,3]}`)
	r.Legacy.BodyTruncated = true
	if o := c.Compare(r); !slices.Equal(o.Causes, []string{CauseTruncated}) {
		t.Fatalf("truncated body causes %v diffs %+v", o.Causes, o.Diffs)
	}
	// A mismatch on a stale cube says so: the cube's data may simply lag.
	r = result("saju", sajuRoute, birth("1999-02-15", "10:00", "solar"), `{"interpretation":"x"}`, `{"interpretation":""}`)
	r.Freshness.Stale = true
	if o := c.Compare(r); !slices.Equal(o.Causes, []string{CauseStaleCube, CauseUnexplained}) {
		t.Fatalf("stale mismatch causes %v", o.Causes)
	}
}

func TestRulesErrors(t *testing.T) {
	for _, r := range []Rules{{Kind: "xml"}, {Ignore: []string{"request_id"}}, {Tolerance: map[string]float64{"$.a": -1}},
		{Unordered: []string{"$.a["}}, {Kind: KindAI, Label: "$.a[*]"}} {
		if _, err := New(Config{Routes: []RouteRules{{Service: "s", Route: "/r", Rules: r}}}); err == nil {
			t.Errorf("rules %+v accepted", r)
		}
	}
}

// TestConfigValidate: one error per bad field, each naming it.
func TestConfigValidate(t *testing.T) {
	_, err := New(Config{AI: AIConfig{MaxDrop: -0.1, MinSamples: -1}, Noise: NoiseConfig{MinRelative: 2}, RepeatCache: -5,
		RepeatWindow: -time.Second, Saju: SajuConfig{Longitude: 500}})
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, f := range []string{"AI.MaxDrop -0.1", "AI.MinSamples -1", "Noise.MinRelative 2", "RepeatCache -5", "RepeatWindow -1s", "Saju.Longitude 500"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not name %s", err, f)
		}
	}
	if err := (Config{RepeatCache: -1}).Validate(); err != nil {
		t.Errorf("RepeatCache -1 (off): %v", err)
	}
}
