package demo

import (
	"fmt"
	"slices"
)

// Cause tags of the planted divergences (the comparator's cause names).
const (
	CauseZiHour       = "zi-hour"
	CauseSolarTerm    = "solar-term-boundary"
	CauseClockHistory = "clock-history"
)

// Divergence describes one planted difference between the legacy saju
// service and the saju cube: what each does, which births it touches, which
// answer fields then differ, and an example birth with both answers.
type Divergence struct {
	Cause  string // CauseZiHour, CauseSolarTerm, CauseClockHistory
	Legacy string // the legacy service's convention
	Cube   string // the cube's convention
	Zone   string // which births differ
	Fields []string
	// Rate is the expected share of a realistic mix (uniform times, years
	// 1930–2010) this divergence touches, as measured by TestMismatchRate.
	Rate    string
	Example ChartRequest
	// LegacyPillars and CubePillars are the example's pillars (year, month,
	// day, hour), both in Hanja; tests check the services answer exactly these.
	LegacyPillars [4]string
	CubePillars   [4]string
}

func strp(s string) *string { return &s }

// Divergences lists every planted divergence. Births outside all their
// zones get identical pillars, day master, elements, ten gods and luck
// (direction and pillars) from both services; luck start_age may differ by
// one year on births whose term distance rounds differently (same causes).
//
// The zi-hour divergence touches only the day pillar (and what derives from
// it: day master, elements, ten gods); the other two only the year and month
// pillars and the luck. A birth that is both in 23:30–23:59 and within the
// hour of a jie term (about 0.003% of realistic traffic, 0.7% of the
// mismatches of pure edge-case traffic) therefore has two causes, one per
// differing pillar: attribute by field, pillars.day → zi-hour,
// pillars.year/month and luck → solar-term-boundary or clock-history.
var Divergences = []Divergence{
	{
		Cause:  CauseZiHour,
		Legacy: "the day pillar advances at 23:30 (23:30 cut-off); 23:00-23:29 keeps the day",
		Cube:   "the day pillar advances at midnight (야자시, lunar-go sect 2)",
		Zone:   "known birth time 23:30-23:59 (Korean wall clock); the 子 hour pillar is the same in both",
		Fields: []string{"pillars.day", "day_master", "elements", "ten_gods"},
		Rate:   "about 2.0% (30 of 1440 minutes)",
		// docs/saju.md reference vector 2 (sect 2): the cube answers it; legacy does not.
		Example:       ChartRequest{BirthDate: "1988-02-15", BirthTime: strp("23:30"), Calendar: "solar", Gender: "male"},
		LegacyPillars: [4]string{"戊辰", "甲寅", "辛丑", "戊子"},
		CubePillars:   [4]string{"戊辰", "甲寅", "庚子", "戊子"},
	},
	{
		Cause:  CauseSolarTerm,
		Legacy: "feeds the Korean wall clock to lunar-go's term table as if it were UTC+8",
		Cube:   "converts the birth instant to UTC+8 before the term table",
		Zone: "births in the hour before a jie term (立春 惊蛰 清明 立夏 芒种 小暑 立秋 白露 寒露 立冬 大雪 小寒) in Korean standard time: " +
			"the legacy already counts the new month (and at 立春 the new year); in 1954-03-21..1961-08-10 (UTC+8:30) only the half hour before",
		Fields: []string{"pillars.month", "pillars.year (at 立春)", "elements", "ten_gods", "luck (pillars; direction at 立春)"},
		Rate:   "about 0.14% (12 hours a year)",
		// 立春 2000 is 2000-02-04 20:40:24 UTC+8 = 21:40 KST.
		Example:       ChartRequest{BirthDate: "2000-02-04", BirthTime: strp("21:10"), Calendar: "solar", Gender: "male"},
		LegacyPillars: [4]string{"庚辰", "戊寅", "壬辰", "辛亥"},
		CubePillars:   [4]string{"己卯", "丁丑", "壬辰", "辛亥"},
	},
	{
		Cause:  CauseClockHistory,
		Legacy: "assumes UTC+9 for every date",
		Cube:   "uses Asia/Seoul from the time zone database (UTC+8:30 1954-1961, summer time 1948-51, 1955-60, 1987-88)",
		Zone: "births in Korean summer time within the first hour after a jie term in standard time " +
			"(the wall clock shows one hour more, which the legacy takes at face value on top of its UTC+8 error)",
		Fields: []string{"pillars.month", "elements", "ten_gods", "luck (pillars)"},
		Rate:   "about 0.01% (summer-time births next to 立夏 芒种 小暑 立秋 白露 寒露)",
		// 立秋 1987 is 1987-08-08 09:29:13 UTC+8 = 11:29 KDT (UTC+10) wall clock.
		Example:       ChartRequest{BirthDate: "1987-08-08", BirthTime: strp("11:00"), Calendar: "solar", Gender: "female"},
		LegacyPillars: [4]string{"丁卯", "戊申", "己丑", "庚午"},
		CubePillars:   [4]string{"丁卯", "丁未", "己丑", "庚午"},
	},
}

// ClockHistory1957Example is a second clock-history birth, in the UTC+8:30
// period with summer time (UTC+9:30): 立秋 1957 is 1957-08-08 03:32 UTC+8.
var ClockHistory1957Example = ChartRequest{BirthDate: "1957-08-08", BirthTime: strp("04:45"), Calendar: "solar", Gender: "male"}

// Key is the part of a chart the services must agree on outside the
// divergence zones: the eight characters and the luck direction and pillars
// (day master, elements and ten gods follow from the characters).
type Key struct {
	Pillars [4]string // Hanja; hour "" when unknown
	Forward bool
	Luck    [8]string
}

// KeyOf extracts the comparable key of a chart.
func KeyOf(ch Chart) Key {
	k := Key{Pillars: [4]string{ch.Year.hanja(), ch.Month.hanja(), ch.Day.hanja(), ""}, Forward: ch.Forward}
	if ch.Hour != nil {
		k.Pillars[3] = ch.Hour.hanja()
	}
	for i, p := range ch.Luck {
		k.Luck[i] = p.hanja()
	}
	return k
}

// attributionPath turns the legacy conventions into the cube's one choice at
// a time, in this order: zi-hour rule, term basis (with the legacy's fixed
// +9), clock model.
var attributionPath = []struct {
	cause string
	apply func(*Conventions)
}{
	{CauseZiHour, func(c *Conventions) { c.Zi = CubeConventions.Zi }},
	{CauseSolarTerm, func(c *Conventions) { c.Basis = CubeConventions.Basis }},
	{CauseClockHistory, func(c *Conventions) { c.Clock = CubeConventions.Clock }},
}

// Attribute explains why the legacy and cube charts of b differ: it walks
// from the legacy conventions to the cube's one choice at a time and returns
// the causes of the steps that changed the chart key. Nil means the two
// agree. A mismatch is "attributable to one cause" when exactly one is
// returned.
func Attribute(b Birth) ([]string, error) {
	conv := LegacyConventions
	prev, err := Compute(b, conv)
	if err != nil {
		return nil, err
	}
	first := KeyOf(prev)
	last := first
	var causes []string
	for _, step := range attributionPath {
		step.apply(&conv)
		ch, err := Compute(b, conv)
		if err != nil {
			return nil, err
		}
		k := KeyOf(ch)
		if k != last {
			causes = append(causes, step.cause)
		}
		last = k
	}
	if conv != CubeConventions {
		return nil, fmt.Errorf("attribution path does not end at the cube conventions: %+v", conv)
	}
	if last == first {
		return nil, nil
	}
	slices.Sort(causes)
	return slices.Compact(causes), nil
}
