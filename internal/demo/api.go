package demo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ChartRequest is the body of POST /api/saju/chart.
type ChartRequest struct {
	UserID    string  `json:"user_id,omitempty"`
	BirthDate string  `json:"birth_date"`           // YYYY-MM-DD in the given calendar
	BirthTime *string `json:"birth_time,omitempty"` // HH:MM Korean wall clock; "" or absent = unknown hour
	Calendar  string  `json:"calendar,omitempty"`   // "solar" (default) or "lunar"
	LeapMonth bool    `json:"leap_month,omitempty"` // lunar only: the date is in the leap month
	Gender    string  `json:"gender"`               // "male" or "female"
	City      string  `json:"city,omitempty"`       // informational; neither service corrects for longitude
}

// PillarsDoc are the four pillars as printed (Hanja by legacy, Hangul by the cube).
type PillarsDoc struct {
	Year  string  `json:"year"`
	Month string  `json:"month"`
	Day   string  `json:"day"`
	Hour  *string `json:"hour"`
}

// DayMasterDoc is the day stem (일간).
type DayMasterDoc struct {
	Stem    string `json:"stem"`
	Element string `json:"element"`
	YinYang string `json:"yin_yang"`
}

// ElementsDoc counts the five elements over the chart's characters.
type ElementsDoc struct {
	Wood  int `json:"wood"`
	Fire  int `json:"fire"`
	Earth int `json:"earth"`
	Metal int `json:"metal"`
	Water int `json:"water"`
}

// TenGodsDoc are the ten gods (십신) of the year, month and hour stems.
type TenGodsDoc struct {
	Year  string  `json:"year"`
	Month string  `json:"month"`
	Hour  *string `json:"hour"`
}

// LuckDoc is the 대운: direction, start age and the first eight luck pillars.
type LuckDoc struct {
	Direction string   `json:"direction"` // "forward" or "backward"
	StartAge  int      `json:"start_age"`
	Pillars   []string `json:"pillars"`
}

// ChartResponse is the answer of POST /api/saju/chart and GET /api/saju/chart/{id}.
// ID is 0 when the chart was not stored (dry-run). Luck is null on GET: the
// stored record has neither the gender nor the birth minute it needs.
type ChartResponse struct {
	ID             int64        `json:"id"`
	RequestID      string       `json:"request_id"`
	GeneratedAt    string       `json:"generated_at"`
	Pillars        PillarsDoc   `json:"pillars"`
	DayMaster      DayMasterDoc `json:"day_master"`
	Elements       ElementsDoc  `json:"elements"`
	TenGods        TenGodsDoc   `json:"ten_gods"`
	Luck           *LuckDoc     `json:"luck"`
	Interpretation string       `json:"interpretation"`
}

// ErrorResponse is every 4xx/5xx body.
type ErrorResponse struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// ParseBirth validates a request into a Birth; errors are *FieldError.
func (r ChartRequest) ParseBirth() (Birth, error) {
	var b Birth
	parts := strings.Split(strings.TrimSpace(r.BirthDate), "-")
	if len(parts) != 3 || len(parts[0]) != 4 || len(parts[1]) != 2 || len(parts[2]) != 2 {
		return b, fieldErr("birth_date", "%q is not YYYY-MM-DD", r.BirthDate)
	}
	var nums [3]int
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return b, fieldErr("birth_date", "%q is not YYYY-MM-DD", r.BirthDate)
		}
		nums[i] = n
	}
	b.Year, b.Month, b.Day = nums[0], nums[1], nums[2]
	if r.BirthTime != nil && strings.TrimSpace(*r.BirthTime) != "" {
		t := strings.TrimSpace(*r.BirthTime)
		hh, mm, ok := strings.Cut(t, ":")
		h, err1 := strconv.Atoi(hh)
		m, err2 := strconv.Atoi(mm)
		if !ok || err1 != nil || err2 != nil || len(mm) != 2 || h < 0 || h > 23 || m < 0 || m > 59 {
			return b, fieldErr("birth_time", "%q is not HH:MM (00:00..23:59) or empty for an unknown hour", t)
		}
		b.HourKnown, b.Hour, b.Minute = true, h, m
	}
	switch strings.ToLower(strings.TrimSpace(r.Calendar)) {
	case "", "solar":
	case "lunar":
		b.Lunar = true
	default:
		return b, fieldErr("calendar", "%q is not solar or lunar", r.Calendar)
	}
	b.LeapMonth = r.LeapMonth
	switch strings.ToLower(strings.TrimSpace(r.Gender)) {
	case "male", "m":
		b.Male = true
	case "female", "f":
	default:
		return b, fieldErr("gender", "%q is not male or female", r.Gender)
	}
	if _, err := solarDate(b); err != nil {
		return b, err
	}
	return b, nil
}

// Document renders a chart in the given script. Luck is included when withLuck.
func (ch Chart) Document(s Script, withLuck bool) ChartResponse {
	var d ChartResponse
	d.Pillars = PillarsDoc{Year: ch.Year.text(s), Month: ch.Month.text(s), Day: ch.Day.text(s)}
	dm := ch.Day.Stem
	stem := stemsHanja[dm]
	if s == Hangul {
		stem = stemsHangul[dm]
	}
	yy := "yang"
	if dm%2 == 1 {
		yy = "yin"
	}
	d.DayMaster = DayMasterDoc{Stem: stem, Element: elementNames[stemElement(dm)], YinYang: yy}
	n := ch.Elements()
	d.Elements = ElementsDoc{Wood: n[0], Fire: n[1], Earth: n[2], Metal: n[3], Water: n[4]}
	d.TenGods = TenGodsDoc{Year: tenGod(dm, ch.Year.Stem), Month: tenGod(dm, ch.Month.Stem)}
	if ch.Hour != nil {
		h := ch.Hour.text(s)
		d.Pillars.Hour = &h
		g := tenGod(dm, ch.Hour.Stem)
		d.TenGods.Hour = &g
	}
	if withLuck {
		l := &LuckDoc{Direction: "backward", StartAge: ch.StartAge}
		if ch.Forward {
			l.Direction = "forward"
		}
		for _, p := range ch.Luck {
			l.Pillars = append(l.Pillars, p.text(s))
		}
		d.Luck = l
	}
	return d
}

// ChartFromPillars rebuilds a chart (without luck) from printed pillars in
// Hanja or Hangul; hour may be "" for an unknown hour. Errors name the field
// as "pillars.<name>".
func ChartFromPillars(year, month, day, hour string) (Chart, error) {
	var ch Chart
	var err error
	for _, f := range []struct {
		name string
		v    string
		p    *pillar
	}{{"year", year, &ch.Year}, {"month", month, &ch.Month}, {"day", day, &ch.Day}} {
		if *f.p, err = parsePillar(f.v); err != nil {
			return Chart{}, &FieldError{Field: "pillars." + f.name, Msg: err.Error()}
		}
	}
	if strings.TrimSpace(hour) != "" {
		hp, err := parsePillar(hour)
		if err != nil {
			return Chart{}, &FieldError{Field: "pillars.hour", Msg: err.Error()}
		}
		ch.Hour = &hp
	}
	return ch, nil
}

// interpretation writes the narrative text; the two services phrase it
// differently on purpose (narrative is never compared as text).
func interpretation(ch Chart, s Script) string {
	n := ch.Elements()
	total := 0
	for _, v := range n {
		total += v
	}
	dom := dominant(ch)
	dm := ch.Day.Stem
	if s == Hangul {
		return fmt.Sprintf("일간 %s(%s)의 명식입니다. %d자 중 %s 기운이 %d자로 가장 강하고, 월지는 %s입니다.",
			stemsHangul[dm], elementNames[stemElement(dm)], total, elementNames[dom], n[dom], branchesHangul[ch.Month.Branch])
	}
	return fmt.Sprintf("Day master %s (%s). The strongest element is %s with %d of %d characters; born in the %s month.",
		stemsHanja[dm], elementNames[stemElement(dm)], elementNames[dom], n[dom], total, branchesHanja[ch.Month.Branch])
}

func nowRFC3339(now func() time.Time) string { return now().UTC().Format(time.RFC3339) }

// decodeJSON decodes one JSON value; trailing data is an error.
func decodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}
