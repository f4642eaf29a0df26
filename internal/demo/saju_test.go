package demo

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestReferenceVectors checks both services against docs/saju.md's reference
// vectors. The 1988-02-15 23:30 vector is stated for the midnight (sect 2)
// rule: the cube answers it, the legacy (23:30 cut-off) is the zi-hour
// divergence and must advance the day.
func TestReferenceVectors(t *testing.T) {
	legacy, cube := pair(t)
	cases := []struct {
		date, time string
		want       [4]string
		legacyDay  string // legacy's day pillar when it differs (zi-hour divergence)
	}{
		{"2020-01-06", "11:22", [4]string{"己亥", "丁丑", "戊申", "戊午"}, ""},
		{"1988-02-15", "23:30", [4]string{"戊辰", "甲寅", "庚子", "戊子"}, "辛丑"},
		{"2000-01-01", "18:00", [4]string{"己卯", "丙子", "戊午", "辛酉"}, ""},
		{"2022-11-02", "22:00", [4]string{"壬寅", "庚戌", "己未", "乙亥"}, ""},
		{"2023-02-24", "23:00", [4]string{"癸卯", "甲寅", "癸丑", "甲子"}, ""},
	}
	for _, c := range cases {
		t.Run(c.date+"T"+c.time, func(t *testing.T) {
			req := ChartRequest{BirthDate: c.date, BirthTime: strp(c.time), Gender: "male"}
			if got := hanjaPillars(t, chart(t, cube, req)); got != c.want {
				t.Errorf("cube %v, want %v", got, c.want)
			}
			want := c.want
			if c.legacyDay != "" {
				want[2] = c.legacyDay
			}
			if got := hanjaPillars(t, chart(t, legacy, req)); got != want {
				t.Errorf("legacy %v, want %v", got, want)
			}
		})
	}
	days := map[string]string{"1945-08-15": "丙辰", "1950-06-25": "辛卯", "1968-08-07": "己酉", "1987-06-22": "壬寅", "2000-01-01": "戊午", "2023-02-24": "癸丑", "1988-02-15": "庚子"}
	for date, want := range days {
		for _, svc := range []*SajuService{legacy, cube} {
			// Unknown hour: the day pillar is the civil date's.
			d := chart(t, svc, ChartRequest{BirthDate: date, Gender: "female"})
			if got := hanjaPillars(t, d)[2]; got != want {
				t.Errorf("%s day pillar of %s = %s, want %s", svc.Name(), date, got, want)
			}
			if d.Pillars.Hour != nil || d.TenGods.Hour != nil {
				t.Errorf("%s %s unknown hour: hour pillar %v, ten god %v, want null", svc.Name(), date, d.Pillars.Hour, d.TenGods.Hour)
			}
			e := d.Elements
			if n := e.Wood + e.Fire + e.Earth + e.Metal + e.Water; n != 6 {
				t.Errorf("%s %s unknown hour: elements count %d characters, want 6", svc.Name(), date, n)
			}
		}
	}
}

// TestDocumentContract checks the answer's shape and derived fields on the
// brief's example (1988-02-15 23:30 through the cube, which follows the
// midnight rule), and that the legacy prints Hanja and the cube Hangul.
func TestDocumentContract(t *testing.T) {
	legacy, cube := pair(t)
	req := ChartRequest{UserID: "u-123", BirthDate: "1988-02-15", BirthTime: strp("23:30"), Calendar: "solar", Gender: "male", City: "Seoul"}
	d := chart(t, cube, req)
	if d.Pillars.Year != "무진" || d.Pillars.Month != "갑인" || d.Pillars.Day != "경자" || deref(d.Pillars.Hour) != "무자" {
		t.Errorf("cube pillars %+v, want Hangul 무진 갑인 경자 무자", d.Pillars)
	}
	if d.DayMaster != (DayMasterDoc{Stem: "경", Element: "metal", YinYang: "yang"}) {
		t.Errorf("day master %+v", d.DayMaster)
	}
	// 戊 甲 庚 戊 / 辰 寅 子 子: wood 甲寅, earth 戊戊辰, metal 庚, water 子子.
	if d.Elements != (ElementsDoc{Wood: 2, Fire: 0, Earth: 3, Metal: 1, Water: 2}) {
		t.Errorf("elements %+v", d.Elements)
	}
	if d.TenGods.Year != "편인" || d.TenGods.Month != "편재" || deref(d.TenGods.Hour) != "편인" {
		t.Errorf("ten gods %+v", d.TenGods)
	}
	if d.Luck == nil || d.Luck.Direction != "forward" || len(d.Luck.Pillars) != 8 || d.Luck.Pillars[0] != "을묘" || d.Luck.Pillars[7] != "임술" {
		t.Errorf("luck %+v, want forward 을묘..임술", d.Luck)
	}
	if d.ID != 0 || d.RequestID == "" || d.Interpretation == "" {
		t.Errorf("dry-run id %d (want 0), request_id %q, interpretation %q", d.ID, d.RequestID, d.Interpretation)
	}
	if _, err := time.Parse(time.RFC3339, d.GeneratedAt); err != nil {
		t.Errorf("generated_at %q: %v", d.GeneratedAt, err)
	}
	l := chart(t, legacy, ChartRequest{BirthDate: "1988-02-15", BirthTime: strp("23:29"), Gender: "male"})
	if l.Pillars.Year != "戊辰" || l.Pillars.Day != "庚子" || l.DayMaster.Stem != "庚" || l.Luck.Pillars[0] != "乙卯" {
		t.Errorf("legacy should print Hanja: %+v %+v %+v", l.Pillars, l.DayMaster, l.Luck)
	}
	// Female with a yang year goes backward.
	f := chart(t, legacy, ChartRequest{BirthDate: "1988-02-15", BirthTime: strp("12:00"), Gender: "female"})
	if f.Luck.Direction != "backward" || f.Luck.Pillars[0] != "癸丑" {
		t.Errorf("female luck %+v, want backward from 癸丑", f.Luck)
	}
}

// TestDivergenceExamples proves each planted divergence with its example
// birth: the services answer exactly the documented pillars, the differing
// fields are the documented ones, and attribution finds exactly that cause.
func TestDivergenceExamples(t *testing.T) {
	legacy, cube := pair(t)
	examples := slices.Clone(Divergences)
	for _, d := range examples {
		t.Run(d.Cause, func(t *testing.T) {
			l := chart(t, legacy, d.Example)
			c := chart(t, cube, d.Example)
			if got := hanjaPillars(t, l); got != d.LegacyPillars {
				t.Errorf("legacy pillars %v, documented %v", got, d.LegacyPillars)
			}
			if got := hanjaPillars(t, c); got != d.CubePillars {
				t.Errorf("cube pillars %v, documented %v", got, d.CubePillars)
			}
			diff := diffDocs(t, l, c)
			if len(diff) == 0 {
				t.Fatalf("example does not diverge")
			}
			for _, f := range diff {
				documented := false
				for _, df := range d.Fields {
					if strings.HasPrefix(df, f) || strings.HasPrefix(f, strings.Fields(df)[0]) {
						documented = true
					}
				}
				if !documented {
					t.Errorf("field %s differs but is not documented in %v", f, d.Fields)
				}
			}
			b, err := d.Example.ParseBirth()
			if err != nil {
				t.Fatal(err)
			}
			causes, err := Attribute(b)
			if err != nil || !slices.Equal(causes, []string{d.Cause}) {
				t.Errorf("Attribute = %v, %v; want [%s]", causes, err, d.Cause)
			}
			// One minute outside the zone the services agree.
			out := outsideZone(t, d)
			if diff := diffDocs(t, chart(t, legacy, out), chart(t, cube, out)); len(diff) != 0 {
				t.Errorf("just outside the zone (%s %s) the services still differ in %v", out.BirthDate, *out.BirthTime, diff)
			}
		})
	}
	t.Run("clock-history-1957", func(t *testing.T) {
		b, err := ClockHistory1957Example.ParseBirth()
		if err != nil {
			t.Fatal(err)
		}
		if causes, err := Attribute(b); err != nil || !slices.Equal(causes, []string{CauseClockHistory}) {
			t.Errorf("Attribute = %v, %v; want [clock-history]", causes, err)
		}
		l, c := chart(t, legacy, ClockHistory1957Example), chart(t, cube, ClockHistory1957Example)
		if diff := diffDocs(t, l, c); !slices.Contains(diff, "pillars.month") {
			t.Errorf("month pillars should differ: %v", diff)
		}
	})
}

// outsideZone moves a divergence example just outside its zone.
func outsideZone(tb testing.TB, d Divergence) ChartRequest {
	req := d.Example
	switch d.Cause {
	case CauseZiHour: // 23:30 -> 23:29
		req.BirthTime = strp("23:29")
	case CauseSolarTerm: // 21:10 -> 21:41, after 立春 21:40:24 KST
		req.BirthTime = strp("21:41")
	case CauseClockHistory: // 11:00 -> 11:30 KDT, after 立秋 11:29:13 KDT
		req.BirthTime = strp("11:30")
	default:
		tb.Fatalf("no outside-zone birth for %s", d.Cause)
	}
	return req
}

// TestAgreementOutsideZones draws random births (2000; years 1930–2010, 10%
// lunar) and checks that outside the divergence zones (23:30–23:59 and
// ±3 h around a jie term) both services answer the same in every compared
// field, and inside them every difference has exactly one cause.
func TestAgreementOutsideZones(t *testing.T) {
	legacy, cube := pair(t)
	n := 2000
	if testing.Short() {
		n = 500
	}
	cfg := DefaultGenConfig()
	cfg.Seed = 7
	g, err := NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	tt := NewTermTable()
	for _, req := range sortedRequests(g, n) {
		b, err := req.ParseBirth()
		if err != nil {
			t.Fatalf("generated %+v: %v", req, err)
		}
		if inZone(t, tt, b) {
			continue
		}
		checked++
		if diff := diffDocs(t, chart(t, legacy, req), chart(t, cube, req)); len(diff) != 0 {
			t.Errorf("%+v (time %v) outside every zone but differs in %v", req, deref(req.BirthTime), diff)
		}
	}
	if checked < n*9/10 {
		t.Errorf("only %d of %d births were outside the zones", checked, n)
	}
	t.Logf("%d births outside the divergence zones agree", checked)
}

// inZone is the zone predicate from the Divergences descriptions,
// independent of the engines.
func inZone(tb testing.TB, tt *TermTable, b Birth) bool {
	tb.Helper()
	if b.HourKnown && b.Hour == 23 && b.Minute >= 30 {
		return true
	}
	sd, err := solarDate(b)
	if err != nil {
		tb.Fatal(err)
	}
	h, m := 12, 0
	if b.HourKnown {
		h, m = b.Hour, b.Minute
	}
	return tt.NearJie(time.Date(sd.Year(), sd.Month(), sd.Day(), h, m, 0, 0, time.UTC), 3*time.Hour)
}

// TestBadInput: every bad input is a 400 naming the field, never a 500.
func TestBadInput(t *testing.T) {
	legacy, cube := pair(t)
	cases := []struct {
		name, body, field string
	}{
		{"feb 30", `{"birth_date":"2023-02-30","birth_time":"10:00","gender":"male"}`, "birth_date"},
		{"month 13", `{"birth_date":"2023-13-01","gender":"male"}`, "birth_date"},
		{"day 0", `{"birth_date":"2023-01-00","gender":"male"}`, "birth_date"},
		{"not a date", `{"birth_date":"15/02/1988","gender":"male"}`, "birth_date"},
		{"empty date", `{"gender":"male"}`, "birth_date"},
		{"year too early", `{"birth_date":"1200-01-01","gender":"male"}`, "birth_date"},
		{"year huge", `{"birth_date":"9999-01-01","gender":"male"}`, "birth_date"},
		{"hour 25", `{"birth_date":"1988-02-15","birth_time":"25:00","gender":"male"}`, "birth_time"},
		{"minute 60", `{"birth_date":"1988-02-15","birth_time":"10:60","gender":"male"}`, "birth_time"},
		{"time garbage", `{"birth_date":"1988-02-15","birth_time":"noon","gender":"male"}`, "birth_time"},
		{"no leap month 2023-05", `{"birth_date":"2023-05-01","calendar":"lunar","leap_month":true,"gender":"male"}`, "leap_month"},
		{"leap on solar", `{"birth_date":"2023-05-01","calendar":"solar","leap_month":true,"gender":"male"}`, "leap_month"},
		{"lunar day 31", `{"birth_date":"2023-01-31","calendar":"lunar","gender":"male"}`, "birth_date"},
		{"lunar day 30 of a 29-day month", `{"birth_date":"2023-01-30","calendar":"lunar","gender":"male"}`, "birth_date"},
		{"calendar", `{"birth_date":"1988-02-15","calendar":"julian","gender":"male"}`, "calendar"},
		{"gender", `{"birth_date":"1988-02-15","gender":"x"}`, "gender"},
		{"malformed JSON", `{"birth_date":"1988-02-15",`, "body"},
		{"not an object", `[1,2]`, "body"},
		{"wrong type", `{"birth_date":19880215,"gender":"male"}`, "birth_date"},
		{"wrong type time", `{"birth_date":"1988-02-15","birth_time":2330,"gender":"male"}`, "birth_time"},
		{"wrong type leap", `{"birth_date":"1988-02-15","leap_month":"yes","gender":"male"}`, "leap_month"},
		{"trailing data", `{"birth_date":"1988-02-15","gender":"male"} {}`, "body"},
	}
	for _, c := range cases {
		for _, svc := range []*SajuService{legacy, cube} {
			t.Run(c.name+"/"+svc.Name(), func(t *testing.T) {
				for _, hdr := range []map[string]string{dryRun, nil} { // no DB: the 400 must come first
					code, body := do(t, svc, "POST", "/api/saju/chart", c.body, hdr)
					var e ErrorResponse
					if code != 400 || json.Unmarshal(body, &e) != nil || e.Field != c.field || e.Error == "" {
						t.Errorf("status %d body %s, want 400 naming field %q", code, body, c.field)
					}
				}
			})
		}
	}
	// Lunar 2023 has a leap 2nd month (Chinese calendar): accepted.
	d := chart(t, cube, ChartRequest{BirthDate: "2023-02-15", Calendar: "lunar", LeapMonth: true, Gender: "male"})
	if d.Pillars.Day == "" {
		t.Errorf("leap month 2023-02 rejected")
	}
	for _, path := range []string{"/api/saju/chart/abc", "/api/saju/chart/-1", "/api/saju/chart/0"} {
		if code, body := do(t, legacy, "GET", path, nil, nil); code != 400 || !strings.Contains(string(body), `"field":"id"`) {
			t.Errorf("GET %s: %d %s, want 400 naming id", path, code, body)
		}
	}
	// Without a database a real write is refused, not faked.
	code, _ := do(t, legacy, "POST", "/api/saju/chart", `{"birth_date":"1988-02-15","gender":"male"}`, nil)
	if code != 503 {
		t.Errorf("POST without database and without dry-run: %d, want 503", code)
	}
}

// FuzzChartRequest: no body makes a service panic or answer 5xx (the
// recover in handle would turn a panic into a 500, which fails here).
func FuzzChartRequest(f *testing.F) {
	for _, s := range []string{`{"birth_date":"2023-02-30","gender":"male"}`, `{"birth_date":"1900-01-31","calendar":"lunar","leap_month":true,"gender":"f","birth_time":"23:59"}`, `{"birth_date":"2100-12-31","birth_time":"00:00","gender":"m"}`} {
		f.Add(s)
	}
	legacy, cube := pair(f)
	f.Fuzz(func(t *testing.T, body string) {
		for _, svc := range []*SajuService{legacy, cube} {
			if code, out := do(t, svc, "POST", "/api/saju/chart", body, dryRun); code >= 500 {
				t.Fatalf("%s: %s -> %d %s", svc.Name(), body, code, out)
			}
		}
	})
}

// TestMismatchRate sends 10 000 generated realistic requests (uniform times,
// years 1930–2010, 10% lunar, 5% unknown time) to both services, compares
// the answers field by field (Hanja == Hangul), requires a rate well under
// 5% and exactly one cause for every mismatch, and logs the breakdown.
func TestMismatchRate(t *testing.T) {
	legacy, cube := pair(t)
	n := 10000
	if testing.Short() {
		n = 1000
	}
	g, err := NewGenerator(DefaultGenConfig())
	if err != nil {
		t.Fatal(err)
	}
	byCause := map[string]int{}
	byField := map[string]int{}
	startAge := 0
	mismatches := 0
	for _, req := range sortedRequests(g, n) {
		l, c := chart(t, legacy, req), chart(t, cube, req)
		if l.Luck.StartAge != c.Luck.StartAge {
			startAge++
		}
		diff := diffDocs(t, l, c)
		if len(diff) == 0 {
			continue
		}
		mismatches++
		for _, f := range diff {
			byField[f]++
		}
		b, err := req.ParseBirth()
		if err != nil {
			t.Fatal(err)
		}
		causes, err := Attribute(b)
		if err != nil || len(causes) != 1 {
			t.Errorf("%+v time %s: differs in %v with causes %v (%v), want exactly one", req, deref(req.BirthTime), diff, causes, err)
			continue
		}
		byCause[causes[0]]++
	}
	rate := float64(mismatches) / float64(n)
	var parts []string
	for _, c := range []string{CauseZiHour, CauseSolarTerm, CauseClockHistory} {
		parts = append(parts, fmt.Sprintf("%s %d", c, byCause[c]))
	}
	t.Logf("mismatch rate %.2f%% (%d of %d): %s; fields %v; luck start_age differs on %d (not compared)",
		100*rate, mismatches, n, strings.Join(parts, ", "), byField, startAge)
	if rate >= 0.035 {
		t.Errorf("mismatch rate %.2f%%, want well under 5%% (< 3.5%%)", 100*rate)
	}
	if mismatches == 0 || byCause[CauseZiHour] == 0 {
		t.Errorf("no zi-hour mismatch in %d realistic births: the divergence is not planted", n)
	}
}

// sortedRequests draws n requests and orders them by birth date: the set is
// the same, but lunar-go's one-year cache then hits, which makes the
// thousands of charts affordable under the race detector.
func sortedRequests(g *Generator, n int) []ChartRequest {
	reqs := make([]ChartRequest, n)
	for i := range reqs {
		reqs[i] = g.Next().Request
	}
	slices.SortStableFunc(reqs, func(a, b ChartRequest) int { return strings.Compare(a.BirthDate, b.BirthDate) })
	return reqs
}

// TestZiRules: the three day-change rules on the same evening.
func TestZiRules(t *testing.T) {
	cases := []struct {
		rule           string
		at2310, at2340 string // day pillar of 1988-02-15 at 23:10 and 23:40
	}{
		{"midnight", "庚子", "庚子"},
		{"23:30", "庚子", "辛丑"},
		{"23:00", "辛丑", "辛丑"},
	}
	for _, c := range cases {
		r, err := ParseZiRule(c.rule)
		if err != nil {
			t.Fatal(err)
		}
		conv := LegacyConventions
		conv.Zi = r
		svc, err := NewLegacySaju(SajuConfig{Conventions: &conv})
		if err != nil {
			t.Fatal(err)
		}
		for tm, want := range map[string]string{"23:10": c.at2310, "23:40": c.at2340, "22:59": "庚子", "00:10": "辛丑"} {
			d := chart(t, svc, ChartRequest{BirthDate: "1988-02-15", BirthTime: strp(tm), Gender: "male"})
			if tm == "00:10" {
				d = chart(t, svc, ChartRequest{BirthDate: "1988-02-16", BirthTime: strp(tm), Gender: "male"})
			}
			if got := hanjaPillars(t, d); got[2] != want {
				t.Errorf("rule %s at %s: day %s, want %s", c.rule, tm, got[2], want)
			}
			if tm != "22:59" && hanjaPillars(t, d)[3] != "戊子" {
				t.Errorf("rule %s at %s: hour %s, want 戊子 (子 hour of the 辛 day)", c.rule, tm, hanjaPillars(t, d)[3])
			}
		}
	}
	if _, err := ParseZiRule("noon"); err == nil {
		t.Error("ParseZiRule accepted noon")
	}
}
