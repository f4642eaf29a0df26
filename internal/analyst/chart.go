package analyst

import (
	"fmt"
	"strings"
)

// chart is a trend chart laid out for the "trend" template: hand-written
// SVG (bars: pairs per hour; line: match rate), so the report needs no
// script, no font download and no chart library.
type chart struct {
	W, H, Left, Right, Bottom int
	Bars                      []chartBar
	Grid                      []chartGrid
	Dots                      []chartDot
	Line                      string
	First, Last               string
	MaxPairs                  int64
}

type chartBar struct {
	X, Y, W, H float64
	Title      string
}

type chartGrid struct {
	Y     float64
	Label string
}

type chartDot struct {
	X, Y  float64
	Title string
}

// trendChart lays out the chart of a route's hours; nil when there is
// nothing to draw.
func trendChart(points []TrendPoint) *chart {
	if len(points) == 0 {
		return nil
	}
	c := &chart{W: 720, H: 180, Left: 40, Right: 710, Bottom: 160}
	top := 16.0
	plotH := float64(c.Bottom) - top
	// Match rates of a good cube sit near 100%: scale the axis from the
	// lowest rate shown (rounded down to 10%) to 100%.
	lo := 1.0
	for _, p := range points {
		if p.Pairs > 0 && p.MatchRate < lo {
			lo = p.MatchRate
		}
		c.MaxPairs = max(c.MaxPairs, p.Pairs)
	}
	lo = float64(int(lo*10)) / 10
	if lo > 0.9 {
		lo = 0.9
	}
	y := func(rate float64) float64 { return top + plotH*(1-(rate-lo)/(1-lo)) }
	n := len(points)
	step := float64(c.Right-c.Left) / float64(n)
	var line []string
	for i, p := range points {
		x := float64(c.Left) + step*float64(i)
		h := 0.0
		if c.MaxPairs > 0 {
			h = plotH * float64(p.Pairs) / float64(c.MaxPairs)
		}
		title := fmt.Sprintf("%s: %d pairs, match rate %.3f%%, %d open", p.Hour.UTC().Format("2006-01-02 15:04"), p.Pairs, 100*p.MatchRate, p.Open)
		c.Bars = append(c.Bars, chartBar{X: x + step*0.1, Y: float64(c.Bottom) - h, W: step * 0.8, H: h, Title: title})
		if p.Pairs > 0 {
			cx, cy := x+step/2, y(p.MatchRate)
			line = append(line, fmt.Sprintf("%.1f,%.1f", cx, cy))
			c.Dots = append(c.Dots, chartDot{X: cx, Y: cy, Title: title})
		}
	}
	c.Line = strings.Join(line, " ")
	for _, r := range []float64{lo, (lo + 1) / 2, 1} {
		c.Grid = append(c.Grid, chartGrid{Y: y(r), Label: fmt.Sprintf("%.0f%%", 100*r)})
	}
	c.First = points[0].Hour.UTC().Format("01-02 15h")
	c.Last = points[n-1].Hour.UTC().Format("01-02 15h")
	return c
}
