package analyst

import (
	"sync"
	"testing"
	"time"

	"github.com/heal7/shadowcube/comparator"
)

// TestFilters: each filter narrows the figures to the pairs it names.
func TestFilters(t *testing.T) {
	st := openStore(t)
	now := time.Now().UTC()
	seed(t, st, seedSpec{service: "saju", route: "/api/saju/chart", kind: comparator.KindSaju, at: now, hours: 2, pairs: 100, open: 6, accepted: 3, errors: 2, noise: 4})
	seed(t, st, seedSpec{service: "saju", route: "/api/saju/daily", kind: comparator.KindSaju, at: now, pairs: 50, open: 1})
	seed(t, st, seedSpec{service: "ai", route: "/api/ai/analyze", kind: comparator.KindAI, at: now, pairs: 40, aiLegacyOK: 30, aiCubeOK: 30})
	ziHour := comparator.Signature("saju", "/api/saju/chart", []string{"$.day_master", "$.pillars.day"}, []string{comparator.CauseZiHour})
	cases := []struct {
		name     string
		q        Query
		services int
		pairs    int64 // of the first route
		routes   int
	}{
		{"all", Query{}, 2, 40, 1},
		{"service", Query{Service: "saju"}, 1, 100, 2},
		{"route", Query{Route: "/api/saju/daily"}, 1, 50, 1},
		{"cause", Query{Cause: comparator.CauseZiHour}, 1, 6, 2},
		{"signature", Query{Signature: ziHour}, 1, 6, 1},
		{"verdict", Query{Service: "saju", Verdict: "noise"}, 1, 4, 1},
		{"window", Query{Since: now.Add(2 * time.Hour)}, 0, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Build(ctxT(t), st, tc.q, Options{Now: fixedNow(now)})
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Services) != tc.services {
				t.Fatalf("%d services, want %d", len(f.Services), tc.services)
			}
			if tc.services == 0 {
				return
			}
			r := f.Services[0].Routes
			if len(r) != tc.routes || r[0].Stats.Pairs != tc.pairs {
				t.Fatalf("%d routes, first with %d pairs; want %d, %d", len(r), r[0].Stats.Pairs, tc.routes, tc.pairs)
			}
			if tc.q.Cause != "" {
				for _, c := range r[0].Causes {
					if c.Cause != tc.q.Cause {
						t.Errorf("cause %s under a %s filter", c.Cause, tc.q.Cause)
					}
				}
				if len(r[0].Paths) != 2 {
					t.Errorf("paths %+v: want the zi-hour ones", r[0].Paths)
				}
			}
		})
	}
	// Acceptance decided now: accepting zi-hour by route and cause clears
	// its open mismatches; an empty accepted file re-opens the ones accepted
	// at compare time.
	acc, err := comparator.ParseAccepted("accepted.yaml", []byte("version: 1\naccepted:\n  - route: /api/saju/chart\n    cause: zi-hour\n    reason: the cube keeps the day until midnight\n"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := Build(ctxT(t), st, Query{Route: "/api/saju/chart"}, Options{Now: fixedNow(now), Accepted: acc})
	if err != nil {
		t.Fatal(err)
	}
	r := f.Services[0].Routes[0]
	if r.Stats.Open != 3 || r.Stats.Accepted != 6 || len(r.Accepted) != 1 || r.Accepted[0].Reason == "" {
		t.Fatalf("with zi-hour accepted now: open %d, accepted %d, accepted signatures %+v; want 3 (the unexplained ones), 6", r.Stats.Open, r.Stats.Accepted, r.Accepted)
	}
	var trendOpen int64
	for _, p := range r.Trend {
		trendOpen += p.Open
	}
	if trendOpen != r.Stats.Open || len(r.Trend) != 2 {
		t.Fatalf("trend %+v: open per hour sums to %d, want %d over 2 hours", r.Trend, trendOpen, r.Stats.Open)
	}
}

// TestConcurrentWriters: comparators saving batches that share roll-up
// rows (the same hours, verdicts and signatures) at once lose no count:
// the upserts add under the row locks. (Save also locks the rows in key
// order, so such writers cannot deadlock; this test does not prove that.)
func TestConcurrentWriters(t *testing.T) {
	st := openStore(t)
	now := time.Now().UTC()
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Every writer touches the same hours, verdicts and signatures.
			for range 8 {
				seed(t, st, seedSpec{service: "saju", route: "/api/saju/chart", kind: comparator.KindSaju, at: now, hours: 24, pairs: 96, open: 24, accepted: 24, errors: 24})
			}
		}()
	}
	wg.Wait()
	f, err := Build(ctxT(t), st, Query{}, Options{Now: fixedNow(now)})
	if err != nil {
		t.Fatal(err)
	}
	s := f.Services[0].Routes[0].Stats
	if s.Pairs != 6*8*96 || s.Open != 6*8*24 || s.Errors != 6*8*24 {
		t.Fatalf("pairs %d open %d errors %d; want %d %d %d", s.Pairs, s.Open, s.Errors, 6*8*96, 6*8*24, 6*8*24)
	}
}
