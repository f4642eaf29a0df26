package demo

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/6tail/lunar-go/calendar"
)

// Kinds of generated births.
const (
	KindRealistic = "realistic"      // years 1930–2010, uniform date and minute
	KindJie       = "edge-jie"       // within ±3 h of a jie term (Korean wall clock)
	KindZi        = "edge-zi"        // 23:00–00:59
	KindKST830    = "edge-1954-1961" // Korea on UTC+8:30 (and 1955–60 summer time)
	KindDST1987   = "edge-1987-1988" // the last Korean summer time
)

// GenConfig configures the birth generator. Shares are 0..1.
type GenConfig struct {
	Seed             uint64
	EdgeShare        float64 // share of edge-case births (the four edge kinds equally)
	LunarShare       float64 // share of realistic births entered in the lunar calendar
	UnknownTimeShare float64 // share of realistic births without a birth time
	Users            int     // size of the user population (ids u-000001..)
}

// DefaultGenConfig is the realistic mix: no edge cases, 10% lunar input,
// 5% unknown birth time, 20 000 users.
func DefaultGenConfig() GenConfig {
	return GenConfig{Seed: 1, LunarShare: 0.10, UnknownTimeShare: 0.05, Users: 20000}
}

// Validate checks the shares and the user count.
func (c GenConfig) Validate() error {
	for name, v := range map[string]float64{"edge share": c.EdgeShare, "lunar share": c.LunarShare, "unknown-time share": c.UnknownTimeShare} {
		if v < 0 || v > 1 {
			return fmt.Errorf("%s %v outside 0..1", name, v)
		}
	}
	if c.Users < 1 {
		return fmt.Errorf("users %d: want at least 1", c.Users)
	}
	return nil
}

// Generated is one generated chart request.
type Generated struct {
	Kind    string
	Request ChartRequest
}

// Generator produces realistic chart requests. Not safe for concurrent use.
type Generator struct {
	cfg  GenConfig
	r    *rand.Rand
	zipf *rand.Zipf
	jie  *TermTable
}

var cities = []string{"Seoul", "Seoul", "Seoul", "Busan", "Incheon", "Daegu", "Daejeon", "Gwangju", "Suwon", "Ulsan", "Jeonju", "Jeju", ""}

// NewGenerator returns a generator; the same config yields the same sequence.
func NewGenerator(cfg GenConfig) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("generator: %w", err)
	}
	r := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	g := &Generator{cfg: cfg, r: r, jie: NewTermTable()}
	if cfg.Users > 1 {
		g.zipf = rand.NewZipf(r, 1.1, 100, uint64(cfg.Users-1)) // a long tail of returning users
	}
	return g, nil
}

// Next returns the next request (with user_id set).
func (g *Generator) Next() Generated {
	kind := KindRealistic
	if g.r.Float64() < g.cfg.EdgeShare {
		kind = []string{KindJie, KindZi, KindKST830, KindDST1987}[g.r.IntN(4)]
	}
	var wall time.Time
	switch kind {
	case KindRealistic:
		wall = g.uniform(1930, 2010)
	case KindJie:
		y := 1930 + g.r.IntN(81)
		terms := g.jie.Year(y)
		t := terms[g.r.IntN(len(terms))].In(seoul)
		off := time.Duration(g.r.IntN(361)-180) * time.Minute
		wall = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), 0, 0, time.UTC).Add(off)
	case KindZi:
		d := g.uniform(1930, 2010)
		m := 23*60 + g.r.IntN(120)
		wall = time.Date(d.Year(), d.Month(), d.Day(), 0, m, 0, 0, time.UTC)
	case KindKST830:
		wall = g.uniform(1954, 1961)
	case KindDST1987:
		wall = g.uniform(1987, 1988)
	}
	req := ChartRequest{
		UserID:   fmt.Sprintf("u-%06d", g.user()),
		Calendar: "solar",
		Gender:   []string{"male", "female"}[g.r.IntN(2)],
		City:     cities[g.r.IntN(len(cities))],
	}
	req.BirthDate = wall.Format("2006-01-02")
	t := wall.Format("15:04")
	req.BirthTime = &t
	if kind == KindRealistic {
		if g.r.Float64() < g.cfg.UnknownTimeShare {
			empty := ""
			req.BirthTime = &empty
		}
		if g.r.Float64() < g.cfg.LunarShare {
			l := calendar.NewSolarFromYmd(wall.Year(), int(wall.Month()), wall.Day()).GetLunar()
			m := l.GetMonth()
			req.Calendar = "lunar"
			if m < 0 {
				req.LeapMonth, m = true, -m
			}
			req.BirthDate = fmt.Sprintf("%04d-%02d-%02d", l.GetYear(), m, l.GetDay())
		}
	}
	return Generated{Kind: kind, Request: req}
}

func (g *Generator) user() uint64 {
	if g.zipf == nil {
		return 1
	}
	return g.zipf.Uint64() + 1
}

// uniform is a uniform wall-clock minute in years from..to.
func (g *Generator) uniform(from, to int) time.Time {
	start := time.Date(from, 1, 1, 0, 0, 0, 0, time.UTC)
	end := time.Date(to+1, 1, 1, 0, 0, 0, 0, time.UTC)
	minutes := int64(end.Sub(start) / time.Minute)
	return start.Add(time.Duration(g.r.Int64N(minutes)) * time.Minute)
}
