package rollout

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heal7/shadowcube/internal/demo"
	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/publisher"
)

const sajuRoutes = `
services:
  - name: saju
    cube_url: %s
    routes:
      - route: /api/saju/chart
        methods: [POST]
        replay: dry-run
        compare: {kind: saju}
`

// saju is the demo's saju pair behind a tap that follows the rollout flag
// and reports its in-flight count, as in production.
type saju struct {
	tapURL  string
	watcher *publisher.FlagWatcher
	flags   *publisher.Flags
}

func (w *world) startSaju() *saju {
	t := w.t
	pool := func(url string) *pgxpool.Pool {
		p, err := pgxpool.New(w.ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	legacy, err := demo.NewLegacySaju(demo.SajuConfig{DB: pool(w.legacyURL)})
	if err != nil {
		t.Fatal(err)
	}
	cube, err := demo.NewSajuCube(demo.SajuConfig{DB: pool(w.cubeURL)})
	if err != nil {
		t.Fatal(err)
	}
	ls, cs := httptest.NewServer(legacy), httptest.NewServer(cube)
	t.Cleanup(ls.Close)
	t.Cleanup(cs.Close)
	rf, err := routes.Parse("routes.yaml", []byte(fmt.Sprintf(sajuRoutes, cs.URL)))
	if err != nil {
		t.Fatal(err)
	}
	if err := publisher.EnsureStream(w.ctx, w.js, natsx.StreamSettings{}); err != nil {
		t.Fatal(err)
	}
	svc, _ := rf.Service("saju")
	secret := make([]byte, 32)
	rand.Read(secret)
	c, err := publisher.New(publisher.Config{Service: "saju", Routes: svc, Privacy: publisher.PrivacyConfig{Secret: secret}},
		publisher.Deps{Conn: w.nc, Logger: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	cctx, stopCapture := context.WithCancel(context.Background())
	capDone := make(chan struct{})
	go func() { defer close(capDone); c.Run(cctx) }()
	t.Cleanup(func() { stopCapture(); <-capDone; c.Close() })
	flags, err := publisher.OpenFlags(w.ctx, w.js)
	if err != nil {
		t.Fatal(err)
	}
	fw, err := publisher.WatchFlag(w.ctx, flags.KV(), "saju", testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fw.Close() })
	tap, err := publisher.NewTap(c, publisher.TapConfig{Upstream: ls.URL, Rollout: fw})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(tap)
	rctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); publisher.ReportTap(rctx, flags.KV(), tap, "saju", "test-tap", 0, nil) }()
	t.Cleanup(func() { cancel(); wg.Wait(); ts.Close(); tap.Close() })
	return &saju{tapURL: ts.URL, watcher: fw, flags: flags}
}

// traffic posts charts for new users through the tap until stopped.
type traffic struct {
	stop chan struct{}
	wg   sync.WaitGroup
	ok   atomic.Int64
	bad  atomic.Int64
}

func (s *saju) startTraffic(pause time.Duration) *traffic {
	tr := &traffic{stop: make(chan struct{})}
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		for i := 0; ; i++ {
			select {
			case <-tr.stop:
				return
			case <-time.After(pause):
			}
			hour := fmt.Sprintf("%02d:%02d", i%24, i%60)
			body, _ := json.Marshal(demo.ChartRequest{BirthDate: fmt.Sprintf("%d-%02d-%02d", 1950+i%60, 1+i%12, 1+i%28), BirthTime: &hour, Gender: "female"})
			req, _ := http.NewRequest("POST", s.tapURL+"/api/saju/chart", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-User-Id", fmt.Sprintf("user-%d", i))
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode/100 != 2 {
				tr.bad.Add(1)
				if resp != nil {
					resp.Body.Close()
				}
				continue
			}
			resp.Body.Close()
			tr.ok.Add(1)
		}
	}()
	return tr
}

func (tr *traffic) end() { close(tr.stop); tr.wg.Wait() }

// checkCubeChartsInLegacy compares every chart the cube created with its
// copy in legacy, decoding each schema on its own (jsonb documents in the
// cube, flat columns in legacy).
func (w *world) checkCubeChartsInLegacy() int {
	t := w.t
	rows, err := w.cube.Query(w.ctx, `SELECT id, user_id, birth_info::text, saju_chart::text, interpretation, created_at FROM cube.saju_charts WHERE id >= $1 ORDER BY id`, demo.CubeOwnIDStart)
	if err != nil {
		t.Fatal(err)
	}
	type doc struct {
		id                   int64
		user, bi, sc, interp string
		created              time.Time
	}
	var docs []doc
	for rows.Next() {
		var d doc
		if err := rows.Scan(&d.id, &d.user, &d.bi, &d.sc, &d.interp, &d.created); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	for _, d := range docs {
		var bi struct {
			Year, Month, Day int
			Hour             *int
			Solar            bool `json:"solar_calendar"`
		}
		var sc struct {
			Y string  `json:"year_pillar"`
			M string  `json:"month_pillar"`
			D string  `json:"day_pillar"`
			H *string `json:"hour_pillar"`
		}
		if err := json.Unmarshal([]byte(d.bi), &bi); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(d.sc), &sc); err != nil {
			t.Fatal(err)
		}
		var user, interp, yp, mp, dp string
		var hp *string
		var y, m, day int
		var h *int
		var solar bool
		var created time.Time
		err := w.legacy.QueryRow(w.ctx, `SELECT user_id, birth_year, birth_month, birth_day, birth_hour, is_solar, year_pillar, month_pillar, day_pillar,
  hour_pillar, interpretation, created_at FROM saju_records WHERE id = $1`, d.id).Scan(&user, &y, &m, &day, &h, &solar, &yp, &mp, &dp, &hp, &interp, &created)
		if err != nil {
			t.Fatalf("cube chart %d in legacy: %v", d.id, err)
		}
		same := user == d.user && y == bi.Year && m == bi.Month && day == bi.Day && eqPtr(h, bi.Hour) && solar == bi.Solar &&
			yp == sc.Y && mp == sc.M && dp == sc.D && eqPtr(hp, sc.H) && interp == d.interp && created.Equal(d.created)
		if !same {
			t.Errorf("chart %d: legacy row (%s %d-%d-%d %v %v %s %s %s %v) differs from the cube's document %s %s", d.id, user, y, m, day, h, solar, yp, mp, dp, hp, d.bi, d.sc)
		}
	}
	return len(docs)
}

func eqPtr[T comparable](a, b *T) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

// TestTwoWayDemoRolloutAndDrill ramps the demo's saju service to 25% behind
// a tap: rolled-out users' charts are written by the cube to its own
// database and appear in legacy with the right values, the other users'
// charts keep reaching the cube; then the rollback drill runs under load and
// must be clean, and the CDC stream proves no change looped.
func TestTwoWayDemoRolloutAndDrill(t *testing.T) {
	w := newWorld(t, worldOpts{})
	w.startAll()
	s := w.startSaju()
	if _, err := s.flags.Ramp(w.ctx, "saju", 25, 5, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	w.waitFor(30*time.Second, "the tap at 25%", func() bool { return s.watcher.Percent() == 25 })
	tr := s.startTraffic(10 * time.Millisecond)
	w.waitFor(2*time.Minute, "charts of both sides synced the other way", func() bool {
		return w.count(w.legacy, `SELECT count(*) FROM saju_records WHERE id >= $1`, demo.CubeOwnIDStart) >= 10 &&
			w.count(w.cube, `SELECT count(*) FROM cube.saju_charts WHERE id < $1`, demo.CubeOwnIDStart) >= 30
	})
	st, err := Status(w.ctx, w.config())
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	st.WriteText(&sb)
	t.Logf("status:\n%s", sb.String())
	if st.Percent != 25 || len(st.Taps) != 1 || st.Reverse.Watermark.IsZero() || st.Forward.Watermark.IsZero() {
		t.Errorf("status: %+v", st)
	}
	// the drill, with requests still coming
	d, err := Rollback(w.ctx, w.config(), nil)
	if err != nil {
		t.Fatal(err)
	}
	sb.Reset()
	d.WriteText(&sb)
	t.Logf("rollback drill under load:\n%s", sb.String())
	if !d.Clean() || d.CaughtUp <= 0 {
		t.Fatalf("drill not clean")
	}
	// after the drill every new chart is legacy's
	cubeAfter := w.count(w.cube, `SELECT count(*) FROM cube.saju_charts WHERE id >= $1`, demo.CubeOwnIDStart)
	before := tr.ok.Load()
	w.waitFor(time.Minute, "more requests after the drill", func() bool { return tr.ok.Load() >= before+20 })
	tr.end()
	if n := w.count(w.cube, `SELECT count(*) FROM cube.saju_charts WHERE id >= $1`, demo.CubeOwnIDStart); n != cubeAfter {
		t.Errorf("the cube created %d charts after the rollback", n-cubeAfter)
	}
	if tr.bad.Load() != 0 {
		t.Errorf("%d requests failed", tr.bad.Load())
	}
	legacyOwn := w.count(w.legacy, `SELECT count(*) FROM saju_records WHERE id < $1`, demo.CubeOwnIDStart)
	w.converged(legacyOwn+cubeAfter, 2*time.Minute)
	if n := w.checkCubeChartsInLegacy(); n != int(cubeAfter) || n == 0 {
		t.Errorf("compared %d cube charts, want %d", n, cubeAfter)
	}
	w.checkNoLoop(int(legacyOwn), int(cubeAfter))
	w.reconcileBoth()
	t.Logf("%d requests answered: %d charts by legacy, %d by the cube", tr.ok.Load(), legacyOwn, cubeAfter)
}

func (w *world) config() Config {
	return Config{Service: "saju", JS: w.js, Forward: w.fwd, Reverse: w.rev, LegacyURL: w.legacyURL, CubeURL: w.cubeURL,
		Settle: 30 * time.Second, CatchUpWait: 90 * time.Second}
}
