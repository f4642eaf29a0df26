package comparator

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/6tail/lunar-go/calendar"
)

// This file generates saju answer pairs that differ in one known convention
// and checks the comparator names it. The charts are computed here with
// lunar-go's EightChar (year, month, day and hour pillars as lunar-go prints
// them) and, for the Korean lunar calendar, with new moons from Meeus's
// series; the comparator's attribution computes pillars by its own
// arithmetic from lunar-go's term table. Only the time zone database
// (Asia/Seoul) and lunar-go are shared.

// genConv is one implementation's choices, in the generator's terms.
type genConv struct {
	zi     string // "midnight", "23:00", "23:30"
	lmt    string // "none", "-30", "-32", "longitude"
	basis  string // "utc8" (the instant converted), "wall" (the wall clock read as UTC+8)
	clock  string // "seoul" (tz database), "fixed9"
	korean bool   // lunar dates read in the Korean calendar (new moons in UTC+9)
}

var genDefault = genConv{zi: "midnight", lmt: "none", basis: "utc8", clock: "seoul"}

type genBirth struct {
	y, m, d   int
	lunar     bool
	hourKnown bool
	h, mi     int
	city      string
	lon       float64
}

var genKST = time.FixedZone("KST", 9*3600)
var genUTC8 = time.FixedZone("CST", 8*3600)

func genLoc(clock string) *time.Location {
	if clock == "fixed9" {
		return genKST
	}
	loc, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		panic(err)
	}
	return loc
}

// genSolarDate converts a birth date to the civil solar date; ok false when
// the date does not exist in that calendar.
func genSolarDate(b genBirth, korean bool) (y, m, d int, ok bool) {
	if !b.lunar {
		return b.y, b.m, b.d, true
	}
	lm := calendar.NewLunarYear(b.y).GetMonth(b.m)
	if lm == nil {
		return 0, 0, 0, false
	}
	if !korean {
		if b.d > lm.GetDayCount() {
			return 0, 0, 0, false
		}
		s := calendar.NewSolarFromJulianDay(lm.GetFirstJulianDay() + float64(b.d-1))
		return s.GetYear(), s.GetMonth(), s.GetDay(), true
	}
	start, ok1 := koreanMonthStart(lm.GetFirstJulianDay())
	next := calendar.NewLunarYear(b.y).GetMonth(b.m + 1)
	if next == nil || !ok1 {
		return 0, 0, 0, false
	}
	end, ok2 := koreanMonthStart(next.GetFirstJulianDay())
	if !ok2 || b.d > int(end.Sub(start).Hours()/24+0.5) {
		return 0, 0, 0, false
	}
	t := start.AddDate(0, 0, b.d-1)
	return t.Year(), int(t.Month()), t.Day(), true
}

// koreanMonthStart is the civil date (UTC+9) of the new moon that starts
// the lunar-go month whose first day is at julian day jd (noon-based);
// ok is false when Meeus's new moon does not fall on that day in UTC+8
// (the two models disagree by minutes near midnight: skip).
func koreanMonthStart(jd float64) (time.Time, bool) {
	nm := meeusNewMoon(jd)
	c := nm.In(genUTC8)
	s := calendar.NewSolarFromJulianDay(jd)
	if c.Year() != s.GetYear() || int(c.Month()) != s.GetMonth() || c.Day() != s.GetDay() {
		return time.Time{}, false
	}
	if c.Hour() == 22 && c.Minute() >= 55 || c.Hour() == 23 && c.Minute() >= 55 {
		return time.Time{}, false // within minutes of a day boundary: Meeus's series is not that precise
	}
	k := nm.In(genKST)
	return time.Date(k.Year(), k.Month(), k.Day(), 0, 0, 0, 0, time.UTC), true
}

// meeusNewMoon is the new moon nearest julian day jd (Meeus, Astronomical
// Algorithms, ch. 49, the main periodic terms), as an instant.
func meeusNewMoon(jd float64) time.Time {
	k := math.Round((jd - 2451550.09766) / 29.530588861)
	T := k / 1236.85
	rad := math.Pi / 180
	jde := 2451550.09766 + 29.530588861*k + 0.00015437*T*T - 0.000000150*T*T*T + 0.00000000073*T*T*T*T
	E := 1 - 0.002516*T - 0.0000074*T*T
	M := (2.5534 + 29.10535670*k - 0.0000014*T*T - 0.00000011*T*T*T) * rad
	Mp := (201.5643 + 385.81693528*k + 0.0107582*T*T + 0.00001238*T*T*T - 0.000000058*T*T*T*T) * rad
	F := (160.7108 + 390.67050284*k - 0.0016118*T*T - 0.00000227*T*T*T + 0.000000011*T*T*T*T) * rad
	Om := (124.7746 - 1.56375588*k + 0.0020672*T*T + 0.00000215*T*T*T) * rad
	jde += -0.40720*math.Sin(Mp) + 0.17241*E*math.Sin(M) + 0.01608*math.Sin(2*Mp) + 0.01039*math.Sin(2*F) +
		0.00739*E*math.Sin(Mp-M) - 0.00514*E*math.Sin(Mp+M) + 0.00208*E*E*math.Sin(2*M) - 0.00111*math.Sin(Mp-2*F) -
		0.00057*math.Sin(Mp+2*F) + 0.00056*E*math.Sin(2*Mp+M) - 0.00042*math.Sin(3*Mp) + 0.00042*E*math.Sin(M+2*F) +
		0.00038*E*math.Sin(M-2*F) - 0.00024*E*math.Sin(2*Mp-M) - 0.00017*math.Sin(Om) - 0.00007*math.Sin(Mp+2*M) +
		0.00004*math.Sin(2*Mp-2*F) + 0.00004*math.Sin(3*M) + 0.00003*math.Sin(Mp+M-2*F) + 0.00003*math.Sin(2*Mp+2*F) -
		0.00003*math.Sin(Mp+M+2*F) + 0.00003*math.Sin(Mp-M+2*F) - 0.00002*math.Sin(Mp-M-2*F) - 0.00002*math.Sin(3*Mp+M) +
		0.00002*math.Sin(4*Mp)
	jde -= 60.0 / 86400 // ΔT, about a minute over 1930–2010
	sec := (jde - 2440587.5) * 86400
	return time.Unix(int64(sec), 0).UTC()
}

// genChart computes the four pillars (Hanja; hour "" when unknown) of b
// under c with lunar-go's EightChar. ok false: the date does not exist.
func genChart(b genBirth, c genConv) (p [4]string, ok bool) {
	y, m, d, ok := genSolarDate(b, c.korean)
	if !ok {
		return p, false
	}
	h, mi := 12, 0
	if b.hourKnown {
		h, mi = b.h, b.mi
	}
	inst := time.Date(y, time.Month(m), d, h, mi, 0, 0, genLoc(c.clock))
	var ti time.Time
	if c.basis == "wall" {
		ti = time.Date(y, time.Month(m), d, h, mi, 0, 0, genUTC8)
	} else {
		ti = inst.In(genUTC8)
	}
	ec := calendar.NewSolar(ti.Year(), int(ti.Month()), ti.Day(), ti.Hour(), ti.Minute(), ti.Second()).GetLunar().GetEightChar()
	p[0], p[1] = ec.GetYear(), ec.GetMonth()
	local := time.Date(y, time.Month(m), d, h, mi, 0, 0, time.UTC)
	switch c.lmt {
	case "-30":
		local = local.Add(-30 * time.Minute)
	case "-32":
		local = local.Add(-32 * time.Minute)
	case "longitude":
		local = inst.UTC().Add(time.Duration(b.lon * 240 * float64(time.Second)))
	}
	sect := 2
	if c.zi == "23:00" || c.zi == "23:30" && local.Hour() == 23 && local.Minute() >= 30 {
		sect = 1
	}
	lec := calendar.NewSolar(local.Year(), int(local.Month()), local.Day(), local.Hour(), local.Minute(), local.Second()).GetLunar().GetEightChar()
	lec.SetSect(sect)
	p[2] = lec.GetDay()
	if b.hourKnown {
		p[3] = lec.GetTime()
	}
	return p, true
}

// genDoc renders an answer for pillars p: the pillars, the day master and
// the element counts (in Hangul when hangul is set).
func genDoc(p [4]string, hangul bool) string {
	el := map[string]int{"wood": 0, "fire": 0, "earth": 0, "metal": 0, "water": 0}
	stemEl := []string{"wood", "wood", "fire", "fire", "earth", "earth", "metal", "metal", "water", "water"}
	branchEl := []string{"water", "earth", "wood", "wood", "earth", "fire", "fire", "earth", "metal", "metal", "earth", "water"}
	for _, s := range p {
		if s == "" {
			continue
		}
		r := []rune(s)
		el[stemEl[strings.IndexRune(stemsHanja, r[0])/3]]++
		el[branchEl[strings.IndexRune(branchesHanja, r[1])/3]]++
	}
	conv := func(s string) string {
		if hangul {
			return toHangul(s)
		}
		return s
	}
	pillars := map[string]any{"year": conv(p[0]), "month": conv(p[1]), "day": conv(p[2]), "hour": nil}
	if p[3] != "" {
		pillars["hour"] = conv(p[3])
	}
	doc := map[string]any{"pillars": pillars, "day_master": map[string]any{"stem": conv(string([]rune(p[2])[0]))}, "elements": el,
		"request_id": fmt.Sprint(rand.Int())}
	b, _ := json.Marshal(doc)
	return string(b)
}

func (b genBirth) body() string {
	cal := "solar"
	if b.lunar {
		cal = "lunar"
	}
	tm := ""
	if b.hourKnown {
		tm = fmt.Sprintf("%02d:%02d", b.h, b.mi)
	}
	return fmt.Sprintf(`{"birth_date":"%04d-%02d-%02d","birth_time":%q,"calendar":%q,"gender":"female","city":%q}`, b.y, b.m, b.d, tm, cal, b.city)
}

var genCities = []struct {
	name string
	lon  float64
}{{"Seoul", 126.978}, {"Busan", 129.075}, {"Gwangju", 126.852}, {"", 126.978}}

// genSample draws a birth in 1930–2010 that the given cause may touch
// (near a jie term, around midnight, near an odd hour, in Korea's clock
// history, a lunar date in a month whose new moon is late in the UTC+8 day),
// or anywhere.
func genSample(rng *rand.Rand, cause string) genBirth {
	city := genCities[rng.IntN(len(genCities))]
	b := genBirth{hourKnown: true, city: city.name, lon: city.lon}
	uniform := func(from, to time.Time) time.Time {
		return from.Add(time.Duration(rng.Int64N(int64(to.Sub(from)/time.Minute))) * time.Minute)
	}
	set := func(t time.Time) { b.y, b.m, b.d, b.h, b.mi = t.Year(), int(t.Month()), t.Day(), t.Hour(), t.Minute() }
	span := func() time.Time {
		return uniform(time.Date(1930, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2011, 1, 1, 0, 0, 0, 0, time.UTC))
	}
	nearTerm := func(y int, window time.Duration) time.Time {
		terms := calendar.NewSolarFromYmd(y, 7, 1).GetLunar().GetJieQiTable()
		var jie []time.Time
		for name, s := range terms {
			if _, ok := jieBranch[name]; ok && s.GetYear() == y {
				jie = append(jie, time.Date(y, time.Month(s.GetMonth()), s.GetDay(), s.GetHour(), s.GetMinute(), s.GetSecond(), 0, genUTC8))
			}
		}
		t := jie[rng.IntN(len(jie))].In(genKST) // about the Korean wall clock
		off := time.Duration(rng.Int64N(int64(2*window/time.Minute))) * time.Minute
		w := t.Add(off - window)
		return time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), 0, 0, time.UTC)
	}
	switch cause {
	case CauseSolarTerm:
		set(nearTerm(1930+rng.IntN(81), 3*time.Hour))
	case CauseClockHistory:
		// Summer time and the UTC+8:30 years, near a term half the time.
		years := []int{1948, 1949, 1950, 1951, 1954, 1955, 1956, 1957, 1958, 1959, 1960, 1961, 1987, 1988}
		y := years[rng.IntN(len(years))]
		if rng.IntN(5) != 0 {
			set(nearTerm(y, 90*time.Minute))
		} else {
			set(uniform(time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(y+1, 1, 1, 0, 0, 0, 0, time.UTC)))
		}
	case CauseZiHour, CauseLocalMeanTime:
		set(span())
		switch rng.IntN(3) {
		case 0:
			b.h = 23
		case 1:
			b.h = 0
		default:
			b.h = 1 + 2*rng.IntN(12) // odd hours: the hour branch changes there
			if b.h > 23 {
				b.h = 23
			}
		}
		b.mi = rng.IntN(60)
	case CauseLunarInput:
		b.lunar = true
		for {
			y := 1930 + rng.IntN(80)
			m := 1 + rng.IntN(11)
			lm := calendar.NewLunarYear(y).GetMonth(m)
			if lm == nil {
				continue
			}
			k, ok := koreanMonthStart(lm.GetFirstJulianDay())
			s := calendar.NewSolarFromJulianDay(lm.GetFirstJulianDay())
			if !ok || k.Day() == s.GetDay() {
				continue // the calendars agree on this month
			}
			b.y, b.m, b.d = y, m, 1+rng.IntN(29)
			t := span()
			b.h, b.mi = t.Hour(), t.Minute()
			break
		}
	default:
		set(span())
	}
	if cause != CauseZiHour && cause != CauseLocalMeanTime && rng.IntN(20) == 0 {
		b.hourKnown = false
	}
	return b
}

// genAlt returns c with the cause's convention changed to another value.
func genAlt(rng *rand.Rand, c genConv, cause string) genConv {
	other := func(cur string, vals ...string) string {
		for {
			if v := vals[rng.IntN(len(vals))]; v != cur {
				return v
			}
		}
	}
	switch cause {
	case CauseZiHour:
		c.zi = other(c.zi, "midnight", "23:00", "23:30")
	case CauseLocalMeanTime:
		c.lmt = other(c.lmt, "none", "-30", "-32", "longitude")
	case CauseSolarTerm:
		c.basis = other(c.basis, "utc8", "wall")
	case CauseClockHistory:
		c.clock = other(c.clock, "seoul", "fixed9")
	case CauseLunarInput:
		c.korean = !c.korean
	}
	return c
}

// TestCauseAttributionIndependentPairs: answer pairs computed per
// convention over births from 1930–2010, one side with the usual
// conventions and the other with one of them changed. At least 99% of the
// mismatches carry their true cause, none is unexplained and no pair with
// equal pillars is reported as a mismatch.
func TestCauseAttributionIndependentPairs(t *testing.T) {
	perCause := 200
	if testing.Short() {
		perCause = 100
	}
	runAttribution(t, perCause, false, 0.99)
}

// TestCauseAttributionSharedConventions: as above, but both sides also
// share an unusual choice (e.g. both subtract 32 minutes and differ in the
// zi rule). The attribution prefers the likeliest explanation (fewest
// unusual choices), which is then sometimes another single convention: a
// 00:05 birth read at 23:33 the day before by both sides and differing in
// the zi rule gives exactly the answers of one side applying −32 minutes
// and neither a zi rule; a longitude correction both apply, differing in
// the clock model, looks like one side correcting and the other not. So
// the share is lower by design (about 75–100% per cause); this test holds
// it at 70% and logs the cases.
func TestCauseAttributionSharedConventions(t *testing.T) {
	perCause := 80
	if testing.Short() {
		perCause = 40
	}
	runAttribution(t, perCause, true, 0.70)
}

func runAttribution(t *testing.T, perCause int, shared bool, wantShare float64) {
	rng := rand.New(rand.NewPCG(11, 9))
	// No noise learning: a birth drawn twice under other conventions would
	// teach it that pillars are noise.
	c, err := New(Config{Routes: []RouteRules{{Service: "saju", Route: sajuRoute, Rules: Rules{Kind: KindSaju}}}, RepeatCache: -1})
	if err != nil {
		t.Fatal(err)
	}
	causes := []string{CauseZiHour, CauseLocalMeanTime, CauseSolarTerm, CauseClockHistory, CauseLunarInput}
	type tally struct{ pairs, matches, mismatches, carried, single, unexplained int }
	stats := map[string]*tally{}
	tagSets := map[string]int{}
	for _, cause := range causes {
		st := &tally{}
		stats[cause] = st
		for st.mismatches < perCause {
			b := genSample(rng, cause)
			base := genDefault
			if shared {
				for base == genDefault || genAlt(rng, base, cause) == genDefault {
					base = genAlt(rng, genDefault, causes[rng.IntN(len(causes))])
				}
			}
			alt := genAlt(rng, base, cause)
			lc, cc := base, alt
			if rng.IntN(2) == 0 {
				lc, cc = alt, base
			}
			lp, ok1 := genChart(b, lc)
			cp, ok2 := genChart(b, cc)
			if !ok1 || !ok2 {
				continue
			}
			st.pairs++
			o := c.Compare(result("saju", sajuRoute, b.body(), genDoc(lp, false), genDoc(cp, true)))
			if lp == cp {
				st.matches++
				if o.Verdict != VerdictMatch {
					t.Fatalf("%s: equal pillars %v reported as %s: %+v", b.body(), lp, o.Verdict, o.Diffs)
				}
				continue
			}
			st.mismatches++
			if o.Verdict != VerdictMismatch {
				t.Fatalf("%s: pillars %v vs %v: verdict %s", b.body(), lp, cp, o.Verdict)
			}
			if slices.Contains(o.Causes, cause) {
				st.carried++
			} else {
				t.Logf("%s: %+v vs %+v: pillars %v vs %v: causes %v, true cause %s", b.body(), lc, cc, lp, cp, o.Causes, cause)
			}
			if len(o.Causes) == 1 {
				st.single++
			}
			tagSets[cause+" → "+strings.Join(o.Causes, ",")]++
			if slices.Contains(o.Causes, CauseUnexplained) {
				st.unexplained++
			}
		}
	}
	t.Logf("true cause → tags: %v", tagSets)
	for _, cause := range causes {
		st := stats[cause]
		t.Logf("%-20s pairs %5d  matches %5d  mismatches %4d  carry the true cause %4d (%.1f%%)  single tag %4d  unexplained %d",
			cause, st.pairs, st.matches, st.mismatches, st.carried, 100*float64(st.carried)/float64(st.mismatches), st.single, st.unexplained)
		if float64(st.carried) < wantShare*float64(st.mismatches) {
			t.Errorf("%s: %d of %d mismatches carry their true cause, want ≥ %.0f%%", cause, st.carried, st.mismatches, 100*wantShare)
		}
		if st.unexplained > 0 {
			t.Errorf("%s: %d mismatches unexplained", cause, st.unexplained)
		}
	}
}
