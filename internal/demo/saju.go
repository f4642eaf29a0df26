package demo

import (
	"errors"
	"fmt"
	"time"
	_ "time/tzdata" // Asia/Seoul clock history must not depend on the host's zoneinfo

	"github.com/6tail/lunar-go/calendar"
)

// Birth is a validated birth as a user enters it: a civil date in the solar
// or lunar calendar and the Korean wall-clock time, if known.
type Birth struct {
	Year, Month, Day int
	HourKnown        bool
	Hour, Minute     int
	Lunar            bool // date is a lunar date (Chinese calendar as lunar-go computes it)
	LeapMonth        bool // lunar date is in the leap month
	Male             bool
}

// ZiRule is when the day pillar changes around midnight.
type ZiRule int

const (
	// ZiMidnight keeps the day until 00:00 (야자시: 23:xx is the 子 hour of
	// the next day's stem, but the day pillar stays; lunar-go sect 2). Cube.
	ZiMidnight ZiRule = iota
	// Zi2330 advances the day pillar at 23:30 (a cut-off some engines use
	// between the 23:00 and the midnight schools). Legacy.
	Zi2330
	// Zi2300 advances the day pillar at 23:00 (lunar-go sect 1). Not used by
	// default: it alone touches 1/24 of uniform birth times.
	Zi2300
)

// ParseZiRule reads "midnight", "23:30" or "23:00".
func ParseZiRule(s string) (ZiRule, error) {
	switch s {
	case "midnight", "00:00", "24:00":
		return ZiMidnight, nil
	case "23:30":
		return Zi2330, nil
	case "23:00":
		return Zi2300, nil
	}
	return 0, fmt.Errorf("zi rule %q: want midnight, 23:30 or 23:00", s)
}

// TermBasis is how the birth time is fed to the solar-term table, whose
// instants are in UTC+8.
type TermBasis int

const (
	// BasisUTC8 converts the birth instant to UTC+8 first (correct). Cube.
	BasisUTC8 TermBasis = iota
	// BasisWallClock feeds the Korean wall clock as if it were UTC+8, so
	// every term boundary moves by one hour (more in summer time). Legacy.
	BasisWallClock
)

// ClockModel is how a Korean wall-clock time becomes an instant.
type ClockModel int

const (
	// ClockSeoul uses Asia/Seoul from the time zone database: UTC+8:30 in
	// 1954-03-21..1961-08-10, summer time 1948–51, 1955–60, 1987–88. Cube.
	ClockSeoul ClockModel = iota
	// ClockFixedKST assumes UTC+9 for every date. Legacy.
	ClockFixedKST
)

// Conventions are the implementation choices in which the two saju services
// differ. Everything else (tables, ten gods, element counts, luck) is shared.
type Conventions struct {
	Zi    ZiRule
	Basis TermBasis
	Clock ClockModel
}

// LegacyConventions are the legacy service's choices; CubeConventions the cube's.
var (
	LegacyConventions = Conventions{Zi: Zi2330, Basis: BasisWallClock, Clock: ClockFixedKST}
	CubeConventions   = Conventions{Zi: ZiMidnight, Basis: BasisUTC8, Clock: ClockSeoul}
)

// Chart is a computed saju chart, script-independent.
type Chart struct {
	Year, Month, Day pillar
	Hour             *pillar // nil when the birth hour is unknown
	Forward          bool    // 대운 direction
	StartAge         int     // age (full years, rounded) at which the first luck pillar starts
	Luck             [8]pillar
	SolarDate        time.Time // the civil solar date of birth (lunar input converted), wall clock
}

// FieldError is a bad input; Field names the JSON field ("birth_date", ...).
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, a ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

var (
	seoul  = mustLoadSeoul()
	utc8   = time.FixedZone("UTC+8", 8*3600)
	kstFix = time.FixedZone("KST", 9*3600)
)

func mustLoadSeoul() *time.Location {
	loc, err := time.LoadLocation("Asia/Seoul") // embedded by time/tzdata: cannot fail
	if err != nil {
		panic(fmt.Sprintf("demo: load Asia/Seoul: %v", err))
	}
	return loc
}

// Supported birth years: lunar-go's tables are good well beyond this; the
// limit keeps answers meaningful and the input bounded.
const (
	MinYear = 1900
	MaxYear = 2100
)

// Compute calculates the chart of b under conventions c. It never panics:
// lunar-go panics on bad input are turned into a *FieldError.
func Compute(b Birth, c Conventions) (ch Chart, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fieldErr("birth_date", "cannot compute a chart for this date: %v", r)
		}
	}()
	solar, err := solarDate(b)
	if err != nil {
		return Chart{}, err
	}
	h, m := 12, 0 // unknown hour: the day is still known; noon places it for the terms
	if b.HourKnown {
		h, m = b.Hour, b.Minute
	}
	wall := time.Date(solar.Year(), solar.Month(), solar.Day(), h, m, 0, 0, time.UTC) // wall clock, zone-less

	// Year and month pillars (and the luck) come from the term table, which
	// wants the instant in UTC+8.
	ti := termInput(wall, c)
	termEC := eightChar(ti, 2)

	// Day and hour pillars come from the local wall clock.
	sect := 2
	switch c.Zi {
	case Zi2300:
		sect = 1
	case Zi2330:
		if h == 23 && m >= 30 {
			sect = 1
		}
	}
	localEC := eightChar(wall, sect)

	if ch.Year, err = parsePillar(termEC.GetYear()); err != nil {
		return Chart{}, err
	}
	if ch.Month, err = parsePillar(termEC.GetMonth()); err != nil {
		return Chart{}, err
	}
	if ch.Day, err = parsePillar(localEC.GetDay()); err != nil {
		return Chart{}, err
	}
	if b.HourKnown {
		hp, err := parsePillar(localEC.GetTime())
		if err != nil {
			return Chart{}, err
		}
		ch.Hour = &hp
	}
	gender := 0
	if b.Male {
		gender = 1
	}
	yun := termEC.GetYun(gender)
	ch.Forward = yun.IsForward()
	ch.StartAge = yun.GetStartYear()
	if yun.GetStartMonth() >= 6 {
		ch.StartAge++
	}
	if ch.StartAge < 1 {
		ch.StartAge = 1
	}
	// Luck pillars step from the month pillar, forward or backward.
	mi := sexagenary(ch.Month)
	for i := range ch.Luck {
		step := i + 1
		if !ch.Forward {
			step = -step
		}
		ch.Luck[i] = fromSexagenary(mi + step)
	}
	ch.SolarDate = wall
	return ch, nil
}

// termInput is the clock time handed to lunar-go for the solar terms.
func termInput(wall time.Time, c Conventions) time.Time {
	if c.Basis == BasisWallClock {
		return wall
	}
	loc := kstFix
	if c.Clock == ClockSeoul {
		loc = seoul
	}
	inst := time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), 0, 0, loc)
	t := inst.In(utc8)
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
}

func eightChar(t time.Time, sect int) *calendar.EightChar {
	ec := calendar.NewSolar(t.Year(), int(t.Month()), t.Day(), t.Hour(), t.Minute(), t.Second()).GetLunar().GetEightChar()
	ec.SetSect(sect)
	return ec
}

// solarDate validates b's date and returns the civil solar date.
func solarDate(b Birth) (time.Time, error) {
	if b.Year < MinYear || b.Year > MaxYear {
		return time.Time{}, fieldErr("birth_date", "year %d outside %d..%d", b.Year, MinYear, MaxYear)
	}
	if b.HourKnown && (b.Hour < 0 || b.Hour > 23 || b.Minute < 0 || b.Minute > 59) {
		return time.Time{}, fieldErr("birth_time", "%02d:%02d is not a time of day", b.Hour, b.Minute)
	}
	if b.Month < 1 || b.Month > 12 {
		return time.Time{}, fieldErr("birth_date", "month %d is not 1..12", b.Month)
	}
	if !b.Lunar {
		if b.LeapMonth {
			return time.Time{}, fieldErr("leap_month", "leap_month applies only to the lunar calendar")
		}
		t := time.Date(b.Year, time.Month(b.Month), b.Day, 0, 0, 0, 0, time.UTC)
		if b.Day < 1 || t.Month() != time.Month(b.Month) {
			return time.Time{}, fieldErr("birth_date", "%04d-%02d-%02d does not exist", b.Year, b.Month, b.Day)
		}
		return t, nil
	}
	lm := b.Month
	if b.LeapMonth {
		lm = -lm
	}
	month := calendar.NewLunarYear(b.Year).GetMonth(lm)
	if month == nil {
		if b.LeapMonth {
			return time.Time{}, fieldErr("leap_month", "lunar year %d has no leap month %d", b.Year, b.Month)
		}
		return time.Time{}, fieldErr("birth_date", "lunar month %d of %d does not exist", b.Month, b.Year)
	}
	if b.Day < 1 || b.Day > month.GetDayCount() {
		return time.Time{}, fieldErr("birth_date", "lunar %d-%02d has %d days, not day %d", b.Year, b.Month, month.GetDayCount(), b.Day)
	}
	s := calendar.NewLunarFromYmd(b.Year, lm, b.Day).GetSolar()
	return time.Date(s.GetYear(), time.Month(s.GetMonth()), s.GetDay(), 0, 0, 0, 0, time.UTC), nil
}

func sexagenary(p pillar) int {
	// index i has stem i%10 and branch i%12.
	for i := 0; i < 60; i++ {
		if i%10 == p.Stem && i%12 == p.Branch {
			return i
		}
	}
	return 0
}

func fromSexagenary(i int) pillar {
	i = ((i % 60) + 60) % 60
	return pillar{i % 10, i % 12}
}

// Elements counts the five elements over the chart's characters (eight, or
// six when the hour is unknown), in elementNames order.
func (ch Chart) Elements() [5]int {
	var n [5]int
	for _, p := range ch.pillars() {
		n[stemElement(p.Stem)]++
		n[branchElement[p.Branch]]++
	}
	return n
}

func (ch Chart) pillars() []pillar {
	ps := []pillar{ch.Year, ch.Month, ch.Day}
	if ch.Hour != nil {
		ps = append(ps, *ch.Hour)
	}
	return ps
}

// errIsField reports whether err is a *FieldError.
func errIsField(err error) (*FieldError, bool) {
	var fe *FieldError
	ok := errors.As(err, &fe)
	return fe, ok
}
