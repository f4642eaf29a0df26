package analyst

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

func openStore(t testing.TB) *comparator.Store {
	t.Helper()
	url := testenv.Postgres(t).NewDatabase(t)
	ctx := testenv.Context(t, time.Minute)
	s, err := comparator.OpenStore(ctx, comparator.StoreConfig{DatabaseURL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// seedSpec describes the pairs of one route to store: pairs in all, of
// which open mismatches, accepted mismatches, cube errors, noise-only and
// stale ones; the rest match. AI routes get labelled pairs with the given
// correct counts.
type seedSpec struct {
	service, route, kind string
	at                   time.Time // compared at (spread over hours back from it)
	hours                int       // spread over this many hours (default 1)
	pairs                int
	open                 int
	accepted             int
	errors               int
	noise                int
	skipped              int // the last ones: not replayed (policy "write")
	stale                int
	aiLegacyOK, aiCubeOK int // AI: correct answers of each side among the labelled (= pairs)
	body                 string
}

var seedSeq atomic.Int64

const sajuLegacy = `{"pillars":{"year":"戊辰","month":"甲寅","day":"庚子","hour":"戊子"},"day_master":{"stem":"庚"},"interpretation":"일간이 강한 편입니다"}`
const sajuCube = `{"pillars":{"year":"戊辰","month":"甲寅","day":"辛丑","hour":"戊子"},"day_master":{"stem":"辛"},"interpretation":"일간이 강한 편입니다"}`

// seed stores the pairs of spec through the production write path
// (Store.SaveWithAnswers: pairs, roll-ups, examples).
func seed(t testing.TB, st *comparator.Store, spec seedSpec) {
	t.Helper()
	ctx := testenv.Context(t, 5*time.Minute)
	if spec.hours <= 0 {
		spec.hours = 1
	}
	var outs []*comparator.Outcome
	var answers []*schemas.ShadowResult
	flush := func() {
		if _, err := st.SaveWithAnswers(ctx, outs, answers); err != nil {
			t.Fatal(err)
		}
		outs, answers = outs[:0], answers[:0]
	}
	for i := 0; i < spec.pairs; i++ {
		seq := seedSeq.Add(1)
		at := spec.at.Add(-time.Duration(i%spec.hours) * time.Hour)
		o := &comparator.Outcome{
			RequestID: fmt.Sprintf("req-%06d", seq), Service: spec.service, Route: spec.route, Kind: spec.kind, Method: "POST",
			Path: spec.route, Verdict: comparator.VerdictMatch, Severity: schemas.SeverityInfo,
			LegacyStatus: 200, CubeStatus: 200, LegacyLatency: time.Duration(10+i%10) * time.Millisecond,
			CubeLatency: time.Duration(20+i%20) * time.Millisecond, CapturedAt: at.Add(-time.Second), ReplayedAt: at.Add(-time.Millisecond), ComparedAt: at,
		}
		res := &schemas.ShadowResult{RequestID: o.RequestID, Service: spec.service, Route: spec.route,
			Request: schemas.RequestEvent{Method: "POST", Path: spec.route, Body: []byte(`{"birth":"1988-02-15T23:40"}`),
				Headers: http.Header{"Content-Type": {"application/json"}}},
			Legacy: schemas.HTTPResponse{Status: 200, Body: []byte(sajuLegacy), Headers: http.Header{"Content-Type": {"application/json"}}},
			Cube:   &schemas.HTTPResponse{Status: 200, Body: []byte(sajuCube), Headers: http.Header{"Content-Type": {"application/json"}}}}
		if spec.body != "" {
			res.Cube.Body = []byte(spec.body)
		}
		k := i
		switch {
		case k < spec.open:
			o.Verdict, o.Severity = comparator.VerdictMismatch, schemas.SeverityMajor
			o.Diffs = []schemas.Diff{{Path: "$.pillars.day", Kind: schemas.DiffChanged}, {Path: "$.day_master.stem", Kind: schemas.DiffChanged}}
			o.Causes = []string{comparator.CauseZiHour}
			o.Signature = comparator.Signature(spec.service, spec.route, []string{"$.day_master", "$.pillars.day"}, o.Causes)
		case k < spec.open+spec.accepted:
			o.Verdict, o.Severity, o.Accepted = comparator.VerdictMismatch, schemas.SeverityInfo, true
			o.Diffs = []schemas.Diff{{Path: "$.interpretation", Kind: schemas.DiffChanged}}
			o.Causes = []string{"unexplained"}
			o.Signature = comparator.Signature(spec.service, spec.route, []string{"$.interpretation"}, o.Causes)
		case k < spec.open+spec.accepted+spec.errors:
			o.Verdict, o.Severity, o.CubeError = comparator.VerdictError, schemas.SeverityCritical, "timeout after 2s"
			o.Causes = []string{comparator.CauseCubeError}
			o.Signature = comparator.Signature(spec.service, spec.route, []string{"cube"}, o.Causes)
			res.Cube, res.CubeError = nil, o.CubeError
		case k < spec.open+spec.accepted+spec.errors+spec.noise:
			o.Verdict = comparator.VerdictNoise
			o.NoiseDiffs = []schemas.Diff{{Path: "$.generated_at", Kind: schemas.DiffChanged}}
		}
		if i >= spec.pairs-spec.skipped {
			o.Verdict, o.Skipped, o.Severity = comparator.VerdictSkipped, "write", schemas.SeverityInfo
			res.Skipped, res.Cube = "write", nil
		}
		if i >= spec.pairs-spec.stale {
			o.Stale = true
		}
		if spec.kind == comparator.KindAI {
			o.AI = &comparator.AIPair{Truth: "wood", LegacyLabel: "fire", CubeLabel: "fire"}
			if i < spec.aiLegacyOK {
				o.AI.LegacyLabel = "wood"
			}
			if i < spec.aiCubeOK {
				o.AI.CubeLabel = "wood"
			}
		}
		outs = append(outs, o)
		answers = append(answers, res)
		if len(outs) == 2000 {
			flush()
		}
	}
	flush()
}

func fixedNow(t time.Time) func() time.Time { return func() time.Time { return t } }

func ctxT(t testing.TB) context.Context { return testenv.Context(t, 2*time.Minute) }
