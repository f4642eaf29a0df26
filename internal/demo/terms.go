package demo

import (
	"slices"
	"sync"
	"time"

	"github.com/6tail/lunar-go/calendar"
)

// jieNames are the 12 "jie" terms that start the saju months, as lunar-go
// names them (simplified Chinese; upper-case keys are the neighbouring
// years' copies in its tables).
var jieNames = map[string]bool{
	"小寒": true, "立春": true, "惊蛰": true, "清明": true, "立夏": true, "芒种": true,
	"小暑": true, "立秋": true, "白露": true, "寒露": true, "立冬": true, "大雪": true,
	"DA_XUE": true, "XIAO_HAN": true, "LI_CHUN": true, "JING_ZHE": true,
}

// JieTerms returns the instants of the 12 jie terms in Gregorian year y
// (MinYear..MaxYear), sorted, as true instants (lunar-go's UTC+8 table).
func JieTerms(y int) []time.Time {
	table := calendar.NewSolarFromYmd(y, 7, 1).GetLunar().GetJieQiTable()
	var out []time.Time
	for name, s := range table {
		if !jieNames[name] || s.GetYear() != y {
			continue
		}
		t := time.Date(s.GetYear(), time.Month(s.GetMonth()), s.GetDay(), s.GetHour(), s.GetMinute(), s.GetSecond(), 0, utc8)
		if !slices.ContainsFunc(out, t.Equal) {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

// TermTable memoises JieTerms per year. Safe for concurrent use.
type TermTable struct {
	mu    sync.Mutex
	years map[int][]time.Time
}

// NewTermTable returns an empty table.
func NewTermTable() *TermTable { return &TermTable{years: map[int][]time.Time{}} }

// Year returns JieTerms(y), computed once.
func (tt *TermTable) Year(y int) []time.Time {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	t, ok := tt.years[y]
	if !ok {
		t = JieTerms(y)
		tt.years[y] = t
	}
	return t
}

// NearJie reports whether the Korean wall-clock time wall (only its clock
// fields count, read as UTC+9) lies within d of a jie term.
func (tt *TermTable) NearJie(wall time.Time, d time.Duration) bool {
	w := time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), wall.Second(), 0, kstFix)
	for _, y := range []int{w.Year() - 1, w.Year(), w.Year() + 1} {
		if y < MinYear || y > MaxYear {
			continue
		}
		for _, t := range tt.Year(y) {
			if diff := w.Sub(t); diff < d && diff > -d {
				return true
			}
		}
	}
	return false
}
