package webui

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// The seeded store: two services over six hours, written through the
// comparator and the store's real write path (Compare, SaveWithAnswers).
const (
	chartRoute = "/api/saju/chart"
	byIDRoute  = "/api/saju/chart/{id}"
	aiRoute    = "/api/ai/analyze"
	hours      = 6
	// pwned is the legacy interpretation of one example: it must render as
	// text and never run.
	pwned = `<script>window.__pwned=1</script>`
)

// seedCounts are the seeded pairs by kind, so tests derive every expected
// figure from what they wrote.
type seedCounts struct {
	chartMatch, chartDay, chartLuck, chartScript, chartErr int
	byIDMatch, byIDStatus                                  int
	aiPairs                                                int
	sigDay, sigLuck, sigScript, sigStatus                  string
}

func (c seedCounts) sajuPairs() int {
	return c.chartMatch + c.chartDay + c.chartLuck + c.chartScript + c.chartErr + c.byIDMatch + c.byIDStatus
}

func (c seedCounts) chartPairs() int {
	return c.chartMatch + c.chartDay + c.chartLuck + c.chartScript + c.chartErr
}

func chartDoc(id int, day, dayKo string, startAge int, interp string) string {
	return fmt.Sprintf(`{"request_id":"r%d","name":"홍길동","pillars":{"year":"戊辰","month":"甲寅","day":%q,"hour":"戊子"},"pillars_ko":{"day":%q},`+
		`"elements":{"wood":1,"fire":0,"earth":3,"metal":2,"water":2},"luck":{"direction":"forward","start_age":%d},"interpretation":%q}`,
		id, day, dayKo, startAge, interp)
}

// seed fills a fresh store and returns it with the counts written.
func seed(t testing.TB) (*comparator.Store, seedCounts) {
	t.Helper()
	url := testenv.Postgres(t).NewDatabase(t)
	ctx := testenv.Context(t, 2*time.Minute)
	st, err := comparator.OpenStore(ctx, comparator.StoreConfig{DatabaseURL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	base := time.Now().UTC().Truncate(time.Hour).Add(-(hours - 1) * time.Hour)
	var clock time.Time
	cmp, err := comparator.New(comparator.Config{
		Routes: []comparator.RouteRules{
			{Service: "saju", Route: chartRoute, Rules: comparator.Rules{Kind: comparator.KindJSON, Ignore: []string{"$.request_id"}}},
			{Service: "saju", Route: byIDRoute, Rules: comparator.Rules{Kind: comparator.KindJSON}},
			{Service: "ai", Route: aiRoute, Rules: comparator.Rules{Kind: comparator.KindAI}},
		},
		Noise:       comparator.NoiseConfig{Disabled: true},
		RepeatCache: -1,
		Now:         func() time.Time { return clock },
	})
	if err != nil {
		t.Fatal(err)
	}
	c := seedCounts{chartMatch: 90, chartDay: 12, chartLuck: 6, chartScript: 1, chartErr: 3, byIDMatch: 40, byIDStatus: 2, aiPairs: 60}
	var outs []*comparator.Outcome
	var results []*schemas.ShadowResult
	n := 0
	add := func(service, route, method, path, req, legacy string, legacyStatus int, cube string, cubeStatus int, cubeErr string, hdr map[string][]string) *comparator.Outcome {
		n++
		clock = base.Add(time.Duration(n%hours)*time.Hour + time.Duration(n)*time.Second)
		res := &schemas.ShadowResult{
			V: schemas.Version, RequestID: fmt.Sprintf("req-%04d", n), Service: service, Route: route,
			Request: schemas.RequestEvent{V: schemas.Version, Service: service, Route: route, Method: method, Path: path,
				Headers: hdr, Body: []byte(req), CapturedAt: clock.Add(-time.Second), Source: schemas.SourceImport},
			Legacy:     schemas.HTTPResponse{Status: legacyStatus, Body: []byte(legacy), Latency: time.Duration(8+n%5) * time.Millisecond},
			ReplayedAt: clock.Add(-time.Second / 2),
		}
		if cubeErr != "" {
			res.CubeError = cubeErr
		} else {
			res.Cube = &schemas.HTTPResponse{Status: cubeStatus, Body: []byte(cube), Latency: time.Duration(5+n%7) * time.Millisecond}
		}
		o := cmp.Compare(res)
		outs, results = append(outs, o), append(results, res)
		return o
	}
	birth := func(i int) string {
		return fmt.Sprintf(`{"birth_date":"1988-02-%02d","birth_time":"23:40","calendar":"solar"}`, 1+i%28)
	}
	for i := range c.chartMatch {
		d := chartDoc(i, "庚子", "경자", 7, "평온한 하루")
		add("saju", chartRoute, "POST", chartRoute, birth(i), d, 200, d, 200, "", nil)
	}
	for i := range c.chartDay {
		o := add("saju", chartRoute, "POST", chartRoute, birth(i), chartDoc(i, "庚子", "경자", 7, "평온한 하루"), 200,
			chartDoc(i, "辛丑", "신축", 7, "평온한 하루"), 200, "", nil)
		c.sigDay = o.Signature
	}
	for i := range c.chartLuck {
		o := add("saju", chartRoute, "POST", chartRoute, birth(i), chartDoc(i, "庚子", "경자", 7, "평온한 하루"), 200,
			chartDoc(i, "庚子", "경자", 8, "평온한 하루"), 200, "", nil)
		c.sigLuck = o.Signature
	}
	for i := range c.chartScript {
		o := add("saju", chartRoute, "POST", chartRoute, birth(i), chartDoc(i, "庚子", "경자", 7, pwned), 200,
			chartDoc(i, "庚子", "경자", 7, "평온한 하루"), 200, "", nil)
		c.sigScript = o.Signature
	}
	for i := range c.chartErr {
		d := chartDoc(i, "庚子", "경자", 7, "평온한 하루")
		add("saju", chartRoute, "POST", chartRoute, birth(i), d, 200, "", 0, "timeout after 2s", nil)
	}
	for i := range c.byIDMatch {
		d := fmt.Sprintf(`{"id":%d,"day":"庚子"}`, i)
		add("saju", byIDRoute, "GET", fmt.Sprintf("/api/saju/chart/%d", i), "", d, 200, d, 200, "", nil)
	}
	for i := range c.byIDStatus {
		o := add("saju", byIDRoute, "GET", fmt.Sprintf("/api/saju/chart/%d", 900+i), "", fmt.Sprintf(`{"id":%d,"day":"庚子"}`, 900+i), 200,
			`{"error":"not found"}`, 404, "", nil)
		c.sigStatus = o.Signature
	}
	labels := []string{"wood", "fire", "earth", "metal", "water"}
	for i := range c.aiPairs {
		truth := labels[i%5]
		legacy, cube := truth, truth
		if i%20 == 3 {
			legacy = labels[(i+1)%5]
		}
		if i%10 == 7 {
			cube = labels[(i+2)%5]
		}
		add("ai", aiRoute, "POST", aiRoute, fmt.Sprintf(`{"chart":%d}`, i),
			fmt.Sprintf(`{"label":%q,"confidence":0.9}`, legacy), 200, fmt.Sprintf(`{"label":%q,"confidence":0.8}`, cube), 200, "",
			map[string][]string{"X-Truth-Label": {truth}})
	}
	for i := 0; i < len(outs); i += 50 {
		j := min(i+50, len(outs))
		saved, err := st.SaveWithAnswers(ctx, outs[i:j], results[i:j])
		if err != nil || saved != j-i {
			t.Fatalf("seed: saved %d of %d: %v", saved, j-i, err)
		}
	}
	for _, s := range []string{c.sigDay, c.sigLuck, c.sigScript, c.sigStatus} {
		if s == "" {
			t.Fatalf("seed: a mismatch kind produced no signature: %+v", c)
		}
	}
	return st, c
}

// startUI serves the UI of st on a free loopback port.
func startUI(t testing.TB, st *comparator.Store, cfg Config) *Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	srv, err := Start(context.Background(), cfg, Deps{Store: st, Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("close web UI: %v", err)
		}
	})
	return srv
}
