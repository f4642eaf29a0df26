package comparator

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // Korea's clock history must not depend on the host's zoneinfo

	"github.com/6tail/lunar-go/calendar"
)

// Cause tags of a saju mismatch (SAJU.md, "Where real implementations
// legitimately disagree"), in the order they are listed.
const (
	CauseLunarInput     = "lunar-input"
	CauseClockHistory   = "clock-history"
	CauseZiHour         = "zi-hour"
	CauseSolarTerm      = "solar-term-boundary"
	CauseLocalMeanTime  = "local-mean-time"
	CauseTable          = "table-convention"
	CauseUnexplained    = "unexplained"
	CauseCubeError      = "cube-error"
	CauseStatus         = "status"
	CauseAILabel        = "ai-label"
	CauseStaleCube      = "stale-cube"     // the freshness wait expired: the cube's data may lag
	CauseTruncated      = "body-truncated" // a body was cut at the capture cap: not comparable as JSON
	causeOrderUnknown   = 100
	defaultTermWindow   = 3 * time.Hour
	defaultLMTWindow    = 35 * time.Minute
	defaultMidnightSpan = 35 * time.Minute
)

var causeRank = map[string]int{
	CauseCubeError: 0, CauseStatus: 1, CauseLunarInput: 2, CauseClockHistory: 3, CauseZiHour: 4,
	CauseSolarTerm: 5, CauseLocalMeanTime: 6, CauseTable: 7, CauseAILabel: 8, CauseStaleCube: 9, CauseTruncated: 10, CauseUnexplained: 11,
}

// SajuConfig tunes the cause tagging. Zero values take the defaults.
type SajuConfig struct {
	TermWindow time.Duration // births this close to a jie term instant may flip year/month (default 3h)
	LMTWindow  time.Duration // minutes after an odd hour (and after midnight) a longitude correction moves (default 35m)
}

func (c SajuConfig) withDefaults() SajuConfig {
	if c.TermWindow <= 0 {
		c.TermWindow = defaultTermWindow
	}
	if c.LMTWindow <= 0 {
		c.LMTWindow = defaultLMTWindow
	}
	return c
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

// BirthFacts is what the birth data says about the conventions that can
// change a chart. Computed once per request, independent of the answers.
type BirthFacts struct {
	Valid        bool
	Lunar        bool
	HourKnown    bool
	Local        time.Time     // Korean wall clock in Asia/Seoul (solar date)
	Offset       time.Duration // UTC offset in force at that wall-clock time
	ZiHour       bool          // 23:00–00:59
	LMT          bool          // within LMTWindow after an odd hour or after midnight
	Midnight     bool          // within LMTWindow after midnight or before it (day pillar under a longitude shift)
	ClockHistory bool          // offset is not the standard UTC+9
	Term         string        // nearest jie term
	TermDistance time.Duration // |birth instant − term instant|
	TermOffset   time.Duration // birth instant − term instant (negative: before the term)
	NearTerm     bool          // TermDistance ≤ TermWindow
	Err          string        // why the facts are not valid
}

var (
	seoul = mustLocation("Asia/Seoul")
	utc8  = time.FixedZone("UTC+8", 8*3600)
)

func mustLocation(name string) *time.Location {
	loc, err := time.LoadLocation(name) // embedded by time/tzdata
	if err != nil {
		panic(fmt.Sprintf("comparator: load %s: %v", name, err))
	}
	return loc
}

// birthFacts parses the request body of a saju chart request and computes
// the facts. lunar-go panics on impossible dates; that becomes Err.
func birthFacts(body []byte, cfg SajuConfig, withTerms bool) (f BirthFacts) {
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
	f.Lunar = strings.EqualFold(strings.TrimSpace(req.Calendar), "lunar")
	if f.Lunar {
		lm := m
		if req.LeapMonth {
			lm = -m
		}
		s := calendar.NewLunarFromYmd(y, lm, d).GetSolar()
		y, m, d = s.GetYear(), s.GetMonth(), s.GetDay()
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
	f.Local = time.Date(y, time.Month(m), d, h, mi, 0, 0, seoul)
	if f.Local.Day() != d {
		return BirthFacts{Err: fmt.Sprintf("birth_date %q does not exist", req.BirthDate)}
	}
	_, off := f.Local.Zone()
	f.Offset = time.Duration(off) * time.Second
	f.ClockHistory = f.Offset != 9*time.Hour
	sinceHour := time.Duration(mi) * time.Minute
	if f.HourKnown {
		f.ZiHour = h == 23 || h == 0
		f.LMT = (h%2 == 1 || h == 0) && sinceHour < cfg.LMTWindow
		f.Midnight = h == 0 && sinceHour < cfg.LMTWindow || h == 23 && sinceHour >= 60*time.Minute-cfg.LMTWindow
	}

	f.Valid = true
	if !withTerms {
		return f // only year, month and luck differences need the terms (costly)
	}
	// Jie term instants: lunar-go's table is in UTC+8.
	inst := f.Local.In(utc8)
	lunar := calendar.NewSolar(inst.Year(), int(inst.Month()), inst.Day(), inst.Hour(), inst.Minute(), inst.Second()).GetLunar()
	best := time.Duration(-1)
	for _, jq := range []*calendar.JieQi{lunar.GetPrevJie(), lunar.GetNextJie()} {
		if jq == nil || jq.GetSolar() == nil {
			continue
		}
		s := jq.GetSolar()
		at := time.Date(s.GetYear(), time.Month(s.GetMonth()), s.GetDay(), s.GetHour(), s.GetMinute(), s.GetSecond(), 0, utc8)
		signed := inst.Sub(at)
		dist := absDur(signed)
		if best < 0 || dist < best {
			best, f.Term, f.TermOffset = dist, jq.GetName(), signed
		}
	}
	f.TermDistance = best
	window := cfg.TermWindow
	if !f.HourKnown {
		window += 12 * time.Hour // the day is known, the hour is not
	}
	f.NearTerm = best >= 0 && best <= window
	return f
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

// yearMonthCause explains a year or month pillar difference. Feeding the
// Korean wall clock to the UTC+8 term table (or any time-basis or precision
// difference) flips births close to a term: solar-term-boundary. Under summer
// time the wall clock runs ahead of standard time by offset − 9h, so a flip
// of a birth in that stretch before the term comes from the clock, not the
// basis: clock-history (e.g. 1987-08-08 11:00 KDT, 29 minutes before 立秋).
func (f BirthFacts) yearMonthCause() string {
	ahead := f.Offset - 9*time.Hour
	switch {
	case f.HourKnown && ahead > 0 && f.TermOffset < 0 && -f.TermOffset <= ahead+time.Minute:
		return CauseClockHistory
	case f.NearTerm:
		return CauseSolarTerm
	case f.ClockHistory:
		return CauseClockHistory
	case f.Lunar:
		return CauseLunarInput
	}
	return ""
}

func (f BirthFacts) dayCause() string {
	switch {
	case f.ZiHour:
		return CauseZiHour
	case f.Midnight:
		return CauseLocalMeanTime
	case f.ClockHistory && f.HourKnown:
		return CauseClockHistory
	case f.Lunar:
		return CauseLunarInput // the calendars put the date on another day
	}
	return ""
}

func (f BirthFacts) hourCause() string {
	switch {
	case f.ZiHour:
		return CauseZiHour
	case f.ClockHistory && f.HourKnown:
		return CauseClockHistory
	case f.LMT:
		return CauseLocalMeanTime
	case f.Lunar:
		return CauseLunarInput
	}
	return ""
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// explainSaju tags the differing paths of one saju pair with the causes that
// explain them. Pillars are the primary fields; day master, ten gods,
// element counts and luck derive from them and take their pillar's cause.
// A difference no convention explains is "unexplained".
func explainSaju(paths []string, f BirthFacts) []string {
	pillar := map[string]bool{}
	for _, p := range paths {
		if k, ok := strings.CutPrefix(p, "$.pillars."); ok {
			pillar[k] = true
		}
	}
	causes := map[string]bool{}
	add := func(c string) bool {
		if c == "" {
			return false
		}
		causes[c] = true
		return true
	}
	pillarCause := func(k string) string {
		if !f.Valid {
			return ""
		}
		switch k {
		case "year", "month":
			return f.yearMonthCause()
		case "day":
			return f.dayCause()
		case "hour":
			return f.hourCause()
		}
		return ""
	}
	explained := func(srcs ...string) bool {
		ok := false
		for _, s := range srcs {
			if pillar[s] && pillarCause(s) != "" {
				ok = true
			}
		}
		return ok
	}
	unexplained := false
	for _, p := range paths {
		switch {
		case strings.HasPrefix(p, "$.pillars."):
			k := strings.TrimPrefix(p, "$.pillars.")
			if k == "hour" && pillar["day"] && pillarCause("day") != "" {
				add(pillarCause("day")) // the hour stem follows the day stem
				continue
			}
			if !add(pillarCause(k)) {
				unexplained = true
			}
		case strings.HasPrefix(p, "$.day_master"):
			unexplained = unexplained || !explained("day")
		case strings.HasPrefix(p, "$.ten_gods."):
			k := strings.TrimPrefix(p, "$.ten_gods.")
			unexplained = unexplained || !explained("day", k)
		case strings.HasPrefix(p, "$.elements"):
			unexplained = unexplained || !explained("year", "month", "day", "hour")
		case p == "$.luck.start_age":
			if !explained("year", "month") {
				add(CauseTable)
			}
		case strings.HasPrefix(p, "$.luck"):
			unexplained = unexplained || !explained("year", "month")
		default:
			unexplained = true
		}
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
