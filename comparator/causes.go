package comparator

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // Korea's clock history must not depend on the host's zoneinfo

	"github.com/6tail/lunar-go/calendar"
)

// Cause tags of a mismatch. The first five are the saju conventions of
// docs/saju.md ("Where real implementations legitimately disagree").
const (
	CauseLunarInput    = "lunar-input"
	CauseClockHistory  = "clock-history"
	CauseZiHour        = "zi-hour"
	CauseSolarTerm     = "solar-term-boundary"
	CauseLocalMeanTime = "local-mean-time"
	CauseTable         = "table-convention"
	CauseUnexplained   = "unexplained"
	CauseCubeError     = "cube-error"
	CauseStatus        = "status"
	CauseAILabel       = "ai-label"
	CauseStaleCube     = "stale-cube"     // the freshness wait expired: the cube's data may lag
	CauseTruncated     = "body-truncated" // a body was cut at the capture cap: not comparable as JSON
	CauseMovedOn       = "moved-on"       // legacy asked again at replay time gives the cube's answer
	causeOrderUnknown  = 100
)

var causeRank = map[string]int{
	CauseCubeError: 0, CauseStatus: 1, CauseLunarInput: 2, CauseClockHistory: 3, CauseZiHour: 4,
	CauseSolarTerm: 5, CauseLocalMeanTime: 6, CauseTable: 7, CauseAILabel: 8, CauseMovedOn: 9, CauseStaleCube: 10,
	CauseTruncated: 11, CauseUnexplained: 12,
}

// Seoul's longitude: local mean time is UTC + longitude/15 h.
const seoulLongitude = 126.978

// SajuConfig tunes the saju cause attribution. Zero values take the defaults.
type SajuConfig struct {
	// Longitude (degrees east) for the local-mean-time convention when the
	// request names no known city (default Seoul, 126.978).
	Longitude float64
}

func (c SajuConfig) withDefaults() SajuConfig {
	if c.Longitude == 0 {
		c.Longitude = seoulLongitude
	}
	return c
}

func (c SajuConfig) validate() error {
	if c.Longitude < -180 || c.Longitude > 180 || math.IsNaN(c.Longitude) {
		return fmt.Errorf("Saju.Longitude %v: want -180..180 degrees east", c.Longitude)
	}
	return nil
}

// cityLongitude are the cities a request may name (lower case, Korean or
// English), for the per-city local-mean-time convention.
var cityLongitude = map[string]float64{
	"seoul": 126.978, "서울": 126.978, "busan": 129.075, "부산": 129.075, "incheon": 126.705, "인천": 126.705,
	"daegu": 128.601, "대구": 128.601, "daejeon": 127.385, "대전": 127.385, "gwangju": 126.852, "광주": 126.852,
	"ulsan": 129.311, "울산": 129.311, "jeju": 126.531, "제주": 126.531, "suwon": 127.029, "수원": 127.029,
}

// sajuRequest is the birth data of POST /api/saju/chart.
type sajuRequest struct {
	BirthDate string `json:"birth_date"`
	BirthTime string `json:"birth_time"`
	Calendar  string `json:"calendar"`
	LeapMonth bool   `json:"leap_month"`
	Gender    string `json:"gender"`
	City      string `json:"city"`
}

// BirthFacts is the birth data of a saju request as the attribution reads it.
type BirthFacts struct {
	Valid     bool
	Lunar     bool
	HourKnown bool
	Local     time.Time     // Korean wall clock in Asia/Seoul (solar date as lunar-go converts a lunar one)
	Offset    time.Duration // UTC offset in force at that wall-clock time (Asia/Seoul)
	Longitude float64       // degrees east, for local mean time
	// Dates are the solar dates the birth date may stand for: [0] as given
	// (or as lunar-go converts a lunar date), then, for a lunar date, the
	// readings of other lunar calendars (new moon a day off, leap month
	// placed elsewhere).
	Dates []civilDate
	Err   string // why the facts are not valid
}

type civilDate struct{ y, m, d int }

var (
	seoul = mustLocation("Asia/Seoul")
	utc8  = time.FixedZone("UTC+8", 8*3600)
	kst9  = time.FixedZone("UTC+9", 9*3600)
)

func mustLocation(name string) *time.Location {
	loc, err := time.LoadLocation(name) // embedded by time/tzdata
	if err != nil {
		panic(fmt.Sprintf("comparator: load %s: %v", name, err))
	}
	return loc
}

// birthFacts parses the request body of a saju chart request. lunar-go
// panics on impossible dates; that becomes Err.
func birthFacts(body []byte, cfg SajuConfig) (f BirthFacts) {
	defer func() {
		if r := recover(); r != nil {
			f = BirthFacts{Err: fmt.Sprintf("lunar-go: %v", r)}
		}
	}()
	var req sajuRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return BirthFacts{Err: fmt.Sprintf("request body: %v", err)}
	}
	y, m, d, err := parseDate(req.BirthDate)
	if err != nil {
		return BirthFacts{Err: err.Error()}
	}
	f.Longitude = cfg.withDefaults().Longitude
	if lon, ok := cityLongitude[strings.ToLower(strings.TrimSpace(req.City))]; ok {
		f.Longitude = lon
	}
	f.Lunar = strings.EqualFold(strings.TrimSpace(req.Calendar), "lunar")
	if f.Lunar {
		dates, err := lunarReadings(y, m, d, req.LeapMonth)
		if err != nil {
			return BirthFacts{Err: err.Error()}
		}
		f.Dates = dates
		y, m, d = dates[0].y, dates[0].m, dates[0].d
	} else {
		f.Dates = []civilDate{{y, m, d}}
	}
	h, mi := 12, 0
	if t := strings.TrimSpace(req.BirthTime); t != "" {
		hh, mm, ok := strings.Cut(t, ":")
		h1, e1 := strconv.Atoi(hh)
		m1, e2 := strconv.Atoi(mm)
		if !ok || e1 != nil || e2 != nil || h1 < 0 || h1 > 23 || m1 < 0 || m1 > 59 {
			return BirthFacts{Err: fmt.Sprintf("birth_time %q is not HH:MM", t)}
		}
		h, mi, f.HourKnown = h1, m1, true
	}
	if t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC); t.Day() != d {
		return BirthFacts{Err: fmt.Sprintf("birth_date %q does not exist", req.BirthDate)}
	}
	f.Local = time.Date(y, time.Month(m), d, h, mi, 0, 0, seoul)
	_, off := f.Local.Zone()
	f.Offset = time.Duration(off) * time.Second
	f.Valid = true
	return f
}

// lunarReadings converts a lunar date with lunar-go (Chinese calendar) and
// adds the solar dates other lunar calendars give it: the Korean calendar
// (KASI, new moons in UTC+9) starts a month a day later when the new moon
// falls in the last hour of the UTC+8 day, and places leap months
// differently in some years (2017: Korean leap 5th month, Chinese leap 6th),
// which moves a date by a month. So: the same day of the previous and the
// next month of lunar-go's month sequence, each a day either side.
func lunarReadings(y, m, d int, leap bool) ([]civilDate, error) {
	lm := m
	if leap {
		lm = -m
	}
	var months []*calendar.LunarMonth
	for _, yy := range []int{y - 1, y, y + 1} {
		for e := calendar.NewLunarYear(yy).GetMonthsInYear().Front(); e != nil; e = e.Next() {
			months = append(months, e.Value.(*calendar.LunarMonth))
		}
	}
	at := -1
	for i, mo := range months {
		if mo.GetYear() == y && mo.GetMonth() == lm {
			at = i
			break
		}
	}
	if at < 0 {
		if leap {
			return nil, fmt.Errorf("lunar year %d has no leap month %d (lunar-go)", y, m)
		}
		return nil, fmt.Errorf("lunar month %d of %d does not exist (lunar-go)", m, y)
	}
	if d < 1 || d > 30 {
		return nil, fmt.Errorf("lunar day %d is not 1..30", d)
	}
	start := func(i int) time.Time {
		s := calendar.NewSolarFromJulianDay(months[i].GetFirstJulianDay())
		return time.Date(s.GetYear(), time.Month(s.GetMonth()), s.GetDay(), 0, 0, 0, 0, time.UTC)
	}
	if d > months[at].GetDayCount() {
		return nil, fmt.Errorf("lunar %d-%02d has %d days, not day %d (lunar-go)", y, m, months[at].GetDayCount(), d)
	}
	var out []civilDate
	add := func(t time.Time) {
		c := civilDate{t.Year(), int(t.Month()), t.Day()}
		for _, o := range out {
			if o == c {
				return
			}
		}
		out = append(out, c)
	}
	base := start(at).AddDate(0, 0, d-1)
	add(base)
	add(base.AddDate(0, 0, -1))
	add(base.AddDate(0, 0, 1))
	for _, i := range []int{at - 1, at + 1} {
		if i < 0 || i >= len(months) {
			continue
		}
		t := start(i).AddDate(0, 0, d-1)
		add(t)
		add(t.AddDate(0, 0, -1))
		add(t.AddDate(0, 0, 1))
	}
	return out, nil
}

func parseDate(s string) (y, m, d int, err error) {
	parts := strings.Split(strings.TrimSpace(s), "-")
	if len(parts) != 3 {
		return 0, 0, 0, fmt.Errorf("birth_date %q is not YYYY-MM-DD", s)
	}
	var n [3]int
	for i, p := range parts {
		if n[i], err = strconv.Atoi(p); err != nil {
			return 0, 0, 0, fmt.Errorf("birth_date %q is not YYYY-MM-DD", s)
		}
	}
	if n[1] < 1 || n[1] > 12 || n[2] < 1 || n[2] > 31 || n[0] < 1 || n[0] > 9999 {
		return 0, 0, 0, fmt.Errorf("birth_date %q is out of range", s)
	}
	return n[0], n[1], n[2], nil
}

// The convention space of the counter-factual attribution. Each dimension
// is one cause; value 0 is the usual (Korean, correct) choice.
const (
	dimZi    = iota // 0 midnight (야자시, lunar-go sect 2), 1 the day changes at 23:00 (sect 1), 2 at 23:30
	dimLMT          // 0 wall clock, 1 wall − 30 min, 2 wall − 32 min, 3 true local mean time of the instant (longitude)
	dimBasis        // 0 the instant in UTC+8 to the term table, 1 the wall clock read as UTC+8; unknown hour: 2 the day's start, 3 its end
	dimClock        // 0 Asia/Seoul history (UTC+8:30 1954–61, summer time), 1 a fixed UTC+9
	dimLunar        // index into BirthFacts.Dates
	nDims
)

var dimCause = [nDims]string{CauseZiHour, CauseLocalMeanTime, CauseSolarTerm, CauseClockHistory, CauseLunarInput}

type conv [nDims]int8

// chartKey is a chart's four pillars as sexagenary indices (hour −1 when unknown).
type chartKey [4]int8

// attribute explains a difference between the legacy's and the cube's
// pillars by recomputing the chart under every combination of conventions:
// it finds the convention sets that reproduce each side's pillars, takes
// the pairs (one per side) that differ in the fewest conventions (then, of
// those, the ones with the fewest unusual choices) and returns the causes of
// the conventions in which they differ: one cause when one convention's
// change reproduces the cube's answer, several when several do (each alone,
// or only together). Nil when no combination reproduces both.
func attribute(f BirthFacts, legacy, cube chartKey) []string {
	if !f.Valid || legacy == cube {
		return nil
	}
	var sl, sc []conv
	forEachChart(f, func(v conv, k chartKey) {
		if k == legacy {
			sl = append(sl, v)
		}
		if k == cube {
			sc = append(sc, v)
		}
	})
	if len(sl) == 0 || len(sc) == 0 {
		return nil
	}
	// The fewest differing conventions, and the fewest unusual choices
	// among those; every pair that close counts (a summer-time birth an
	// hour before a term flips under a fixed UTC+9 clock and under the wall
	// clock read as UTC+8 alike: both are reported).
	best, bestUnusual := nDims+1, 2*nDims+1
	for _, a := range sl {
		for _, b := range sc {
			d, u := distance(a, b)
			if d < best || d == best && u < bestUnusual {
				best, bestUnusual = d, u
			}
		}
	}
	var tags [nDims]bool
	for _, a := range sl {
		for _, b := range sc {
			if d, u := distance(a, b); d == best && u == bestUnusual {
				for i := range a {
					if a[i] != b[i] {
						tags[i] = true
					}
				}
			}
		}
	}
	var out []string
	for i, on := range tags {
		if on {
			out = append(out, dimCause[i])
		}
	}
	return out
}

// distance is the number of conventions in which a and b differ and the
// number of unusual (non-zero) choices they make, each side counted: if
// every implementation makes each unusual choice independently and rarely,
// the pair with the fewest is the likeliest.
func distance(a, b conv) (d, u int) {
	for i := range a {
		if a[i] != b[i] {
			d++
		}
		if a[i] != 0 {
			u++
		}
		if b[i] != 0 {
			u++
		}
	}
	return d, u
}

// forEachChart computes the pillars under every convention combination.
// Year and month depend on the term-table input (basis, clock, date), day
// and hour on the local clock (local mean time, clock, date) and the zi
// rule; each part is computed once.
func forEachChart(f BirthFacts, fn func(conv, chartKey)) {
	h, mi := f.Local.Hour(), f.Local.Minute()
	nBasis := int8(2)
	if !f.HourKnown {
		nBasis = 4
	}
	for li, dt := range f.Dates {
		var ym [4][2]chartKey // [basis][clock] → year, month in [0], [1]
		for b := int8(0); b < nBasis; b++ {
			for c := int8(0); c < 2; c++ {
				t := termInput(dt, h, mi, b, c)
				y, m := yearMonth(t)
				ym[b][c] = chartKey{y, m}
			}
		}
		for lmt := int8(0); lmt < 4; lmt++ {
			for c := int8(0); c < 2; c++ {
				if lmt != 3 && c == 1 {
					continue // only the longitude correction reads the clock model
				}
				local := localClock(dt, h, mi, lmt, c, f.Longitude)
				for zi := int8(0); zi < 3; zi++ {
					d, hr := dayHour(local, zi, f.HourKnown)
					for b := int8(0); b < nBasis; b++ {
						for cc := int8(0); cc < 2; cc++ {
							if lmt == 3 && cc != c {
								continue
							}
							k := chartKey{ym[b][cc][0], ym[b][cc][1], d, hr}
							fn(conv{zi, lmt, b, cc, int8(li)}, k)
						}
					}
				}
			}
		}
	}
}

// wallTime is a Korean wall-clock time without a zone (its fields only).
type wallTime struct {
	y, mo, d, h, mi, s int
}

func fields(t time.Time) wallTime {
	return wallTime{t.Year(), int(t.Month()), t.Day(), t.Hour(), t.Minute(), t.Second()}
}

func (dt civilDate) at(h, mi int, loc *time.Location) time.Time {
	return time.Date(dt.y, time.Month(dt.m), dt.d, h, mi, 0, 0, loc)
}

// instant is the birth instant under a clock model.
func instant(dt civilDate, h, mi int, clock int8) time.Time {
	if clock == 1 {
		return dt.at(h, mi, kst9)
	}
	return dt.at(h, mi, seoul)
}

// termInput is the time handed to the (UTC+8) term table.
func termInput(dt civilDate, h, mi int, basis, clock int8) time.Time {
	switch basis {
	case 1:
		return dt.at(h, mi, utc8) // the wall clock read as UTC+8
	case 2:
		return instant(dt, 0, 0, clock).In(utc8)
	case 3:
		return instant(dt, 23, 59, clock).In(utc8)
	}
	return instant(dt, h, mi, clock).In(utc8)
}

// localClock is the clock the day and hour pillars are read from.
func localClock(dt civilDate, h, mi int, lmt, clock int8, lon float64) wallTime {
	w := dt.at(h, mi, time.UTC)
	switch lmt {
	case 1:
		w = w.Add(-30 * time.Minute)
	case 2:
		w = w.Add(-32 * time.Minute)
	case 3:
		off := time.Duration(lon * 4 * float64(time.Minute)).Round(time.Second)
		w = instant(dt, h, mi, clock).UTC().Add(off)
	}
	return fields(w)
}

// dayHour computes the day pillar (the zi rule decides whether 23:xx
// already counts as the next day) and the hour pillar, whose stem always
// follows the next day's stem from 23:00 (lunar-go's rule under both sects).
func dayHour(w wallTime, zi int8, hourKnown bool) (day, hour int8) {
	jdn := julianDayNumber(w.y, w.mo, w.d)
	dayJ := jdn
	if hourKnown && w.h == 23 && (zi == 1 || zi == 2 && w.mi >= 30) {
		dayJ++
	}
	day = int8(mod(dayJ-11, 60))
	if !hourKnown {
		return day, -1
	}
	stemJ := jdn
	if w.h == 23 {
		stemJ++
	}
	branch := ((w.h + 1) / 2) % 12
	stem := (2*(mod(stemJ-11, 60)%10%5) + branch) % 10
	return day, int8(sexagenaryOf(stem, branch))
}

func julianDayNumber(y, m, d int) int {
	a := (14 - m) / 12
	yy := y + 4800 - a
	mm := m + 12*a - 3
	return d + (153*mm+2)/5 + 365*yy + yy/4 - yy/100 + yy/400 - 32045
}

func mod(a, n int) int { return ((a % n) + n) % n }

// sexagenaryOf is the cycle index (0 = 甲子) with the given stem and branch.
func sexagenaryOf(stem, branch int) int {
	for i := stem; i < 60; i += 10 {
		if i%12 == branch {
			return i
		}
	}
	return -1
}

// yearMonth reads the year and month pillars of a UTC+8 time from
// lunar-go's jie term instants (the year changes at 立春, the month at every
// jie, at or after the term's second).
func yearMonth(t time.Time) (year, month int8) {
	w := fields(t)
	at := time.Date(w.y, time.Month(w.mo), w.d, w.h, w.mi, w.s, 0, utc8)
	var last jieTerm
	found := false
	for _, y := range []int{w.y - 1, w.y} {
		for _, j := range jieTerms(y) {
			if !j.at.After(at) {
				last, found = j, true
			}
		}
	}
	if !found {
		return -1, -1
	}
	// The saju year of the month: the year of the 立春 at or before it.
	sajuYear := last.at.Year()
	if last.branch == 0 || last.branch == 1 { // 子 (大雪, December) and 丑 (小寒, January)
		if last.at.Month() == time.January {
			sajuYear--
		}
	}
	ys := mod(sajuYear-4, 60)
	yinStem := (2*(ys%10%5) + 2) % 10
	k := mod(last.branch-2, 12) // months since 寅
	return int8(ys), int8(sexagenaryOf((yinStem+k)%10, last.branch))
}

type jieTerm struct {
	at     time.Time
	branch int
}

// jieBranch maps lunar-go's jie names (simplified Chinese; upper-case keys
// are neighbouring years' copies) to the branch of the month they start.
var jieBranch = map[string]int{
	"小寒": 1, "立春": 2, "惊蛰": 3, "清明": 4, "立夏": 5, "芒种": 6, "小暑": 7, "立秋": 8, "白露": 9, "寒露": 10, "立冬": 11, "大雪": 0,
	"XIAO_HAN": 1, "LI_CHUN": 2, "JING_ZHE": 3, "DA_XUE": 0,
}

var jieCache sync.Map // year → []jieTerm

// jieTerms returns the 12 jie instants of Gregorian year y, sorted, from
// lunar-go's table (UTC+8), computed once per year.
func jieTerms(y int) []jieTerm {
	if v, ok := jieCache.Load(y); ok {
		return v.([]jieTerm)
	}
	var out []jieTerm
	func() {
		defer func() { _ = recover() }() // lunar-go panics outside its range: no terms
		table := calendar.NewSolarFromYmd(y, 7, 1).GetLunar().GetJieQiTable()
		for name, s := range table {
			br, ok := jieBranch[name]
			if !ok || s.GetYear() != y {
				continue
			}
			t := time.Date(s.GetYear(), time.Month(s.GetMonth()), s.GetDay(), s.GetHour(), s.GetMinute(), s.GetSecond(), 0, utc8)
			dup := false
			for _, o := range out {
				dup = dup || o.at.Equal(t)
			}
			if !dup {
				out = append(out, jieTerm{t, br})
			}
		}
	}()
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].at.Before(out[j-1].at); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	if y >= 1 && y <= 9999 {
		jieCache.Store(y, out)
	}
	return out
}

// pillarKey reads the four pillars of a normalised saju answer.
func pillarKey(doc any) (chartKey, bool) {
	m, _ := doc.(map[string]any)
	p, _ := m["pillars"].(map[string]any)
	if p == nil {
		return chartKey{}, false
	}
	var k chartKey
	for i, name := range []string{"year", "month", "day", "hour"} {
		s, _ := p[name].(string)
		if s == "" && name == "hour" {
			k[i] = -1
			continue
		}
		x := ganjiIndex(s)
		if x < 0 {
			return chartKey{}, false
		}
		k[i] = int8(x)
	}
	return k, true
}

// ganjiIndex is the cycle index of a Hanja pillar (−1 when not one).
func ganjiIndex(s string) int {
	r := []rune(s)
	if len(r) != 2 {
		return -1
	}
	st, br := strings.IndexRune(stemsHanja, r[0]), strings.IndexRune(branchesHanja, r[1])
	if st < 0 || br < 0 {
		return -1
	}
	return sexagenaryOf(len([]rune(stemsHanja[:st])), len([]rune(branchesHanja[:br])))
}

// explainSaju tags the differing paths of one saju pair. The pillars'
// difference is attributed by recomputation (attribute); day master, ten
// gods, element counts and luck derive from the pillars and are explained
// when a pillar they derive from differs. A luck start age alone is a
// table convention (rounding, counted age). What nothing explains is
// "unexplained".
func explainSaju(paths []string, f BirthFacts, lv, cv any) []string {
	pillar := map[string]bool{}
	for _, p := range paths {
		if k, ok := strings.CutPrefix(p, "$.pillars."); ok {
			pillar[k] = true
		}
	}
	causes := map[string]bool{}
	var pillarCauses []string
	if len(pillar) > 0 {
		lk, lok := pillarKey(lv)
		ck, cok := pillarKey(cv)
		if lok && cok {
			pillarCauses = attribute(f, lk, ck)
		}
	}
	explained := func(srcs ...string) bool {
		for _, s := range srcs {
			if pillar[s] && len(pillarCauses) > 0 {
				return true
			}
		}
		return false
	}
	unexplained := false
	for _, p := range paths {
		switch {
		case strings.HasPrefix(p, "$.pillars."):
			unexplained = unexplained || len(pillarCauses) == 0
		case strings.HasPrefix(p, "$.day_master"):
			unexplained = unexplained || !explained("day")
		case strings.HasPrefix(p, "$.ten_gods."):
			k := strings.TrimPrefix(p, "$.ten_gods.")
			unexplained = unexplained || !explained("day", k)
		case strings.HasPrefix(p, "$.elements"):
			unexplained = unexplained || !explained("year", "month", "day", "hour")
		case p == "$.luck.start_age":
			if !explained("year", "month") {
				causes[CauseTable] = true
			}
		case strings.HasPrefix(p, "$.luck"):
			unexplained = unexplained || !explained("year", "month")
		default:
			unexplained = true
		}
	}
	for _, c := range pillarCauses {
		causes[c] = true
	}
	if unexplained {
		causes[CauseUnexplained] = true
	}
	return sortedCauses(causes)
}

func sortedCauses(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	rank := func(c string) int {
		if r, ok := causeRank[c]; ok {
			return r
		}
		return causeOrderUnknown
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && (rank(out[j]) < rank(out[j-1]) || rank(out[j]) == rank(out[j-1]) && out[j] < out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
