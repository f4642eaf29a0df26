package analyst

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// gateService seeds one service that passes every default criterion,
// changed by mod, with its sync watermarks (lag) and reconcile result.
type gateService struct {
	name     string
	saju     seedSpec
	ai       seedSpec
	lag      time.Duration
	recAge   time.Duration
	recDiffs int64
}

func passing(name string, now time.Time) gateService {
	return gateService{
		name: name,
		// 9000 pairs, none open: the upper end of the Wilson interval of
		// 0/8990 is 0.043% ≤ 0.05%. Accepted mismatches do not count.
		saju: seedSpec{service: name, route: "/api/saju/chart", kind: comparator.KindSaju, at: now, hours: 3, pairs: 9000, accepted: 40, errors: 10, stale: 10},
		ai: seedSpec{service: name, route: "/api/ai/analyze", kind: comparator.KindAI, at: now, hours: 3, pairs: 1200,
			aiLegacyOK: 1080, aiCubeOK: 1068},
		lag: time.Second, recAge: time.Hour,
	}
}

func putWatermarks(t *testing.T, js jetstream.JetStream, target string, lag time.Duration, now time.Time) {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	kv, err := natsx.KVForReader(ctx, js, natsx.SharedKVConfig())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		ct := now.Add(-time.Duration(3-i) * time.Minute)
		w := schemas.Watermark{V: schemas.Version, Target: target, Slot: "shadowcube", CommitTime: ct, AppliedAt: ct.Add(lag)}
		data, err := w.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, schemas.WatermarkKey(target), data); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGate: a store that passes every criterion is go; for each criterion
// a service that fails on it alone is no-go and names it (too few pairs:
// "not enough samples"); an empty store is never go.
func TestGate(t *testing.T) {
	st := openStore(t)
	nats := testenv.StartNATS(t)
	_, js := nats.Connect(t)
	now := time.Now().UTC()
	ctx := testenv.Context(t, 5*time.Minute)

	services := []struct {
		svc  gateService
		fail string // criterion expected to fail alone ("" = go)
	}{
		{passing("pass", now), ""},
		{func() gateService {
			s := passing("few", now)
			s.ai.pairs, s.ai.aiLegacyOK, s.ai.aiCubeOK = 900, 810, 801
			return s
		}(), CritMinPairs},
		{func() gateService { s := passing("open", now); s.saju.open = 5; return s }(), CritOpenMismatch},
		{func() gateService { s := passing("aidrop", now); s.ai.aiCubeOK = 900; return s }(), CritAIAccuracy},
		{func() gateService { s := passing("lag", now); s.lag = 90 * time.Second; return s }(), CritSyncLag},
		{func() gateService { s := passing("recdirty", now); s.recDiffs = 3; return s }(), CritReconcile},
		{func() gateService { s := passing("recold", now); s.recAge = 48 * time.Hour; return s }(), CritReconcile},
		{func() gateService { s := passing("stale", now); s.saju.stale = 200; return s }(), CritStale},
		{func() gateService { s := passing("errors", now); s.saju.errors = 100; return s }(), CritCubeErrors},
	}
	// A route shadow never replays (writes) has nothing to judge.
	seed(t, st, seedSpec{service: "pass", route: "/api/saju/save", kind: comparator.KindSaju, at: now, pairs: 30, skipped: 30})
	for _, s := range services {
		seed(t, st, s.svc.saju)
		seed(t, st, s.svc.ai)
		putWatermarks(t, js, s.svc.name+"-cube", s.svc.lag, now)
		if err := RecordReconcile(ctx, st, ReconcileRun{Target: s.svc.name + "-cube", FinishedAt: now.Add(-s.svc.recAge),
			Clean: s.svc.recDiffs == 0, Differences: s.svc.recDiffs, Tables: 1}); err != nil {
			t.Fatal(err)
		}
	}
	q := Query{Since: now.Add(-24 * time.Hour)}
	for _, s := range services {
		t.Run(s.svc.name, func(t *testing.T) {
			q := q
			q.Service = s.svc.name
			g, err := Evaluate(ctx, st, q, DefaultCriteria(), GateInputs{JS: js}, now)
			if err != nil {
				t.Fatal(err)
			}
			v := g.Services[0]
			var text strings.Builder
			if err := g.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			t.Logf("gate --service %s:\n%s", s.svc.name, text.String())
			if n := strings.Count(text.String(), "\n"); n < len(v.Checks)+2 {
				t.Errorf("text output has %d lines for %d checks", n, len(v.Checks))
			}
			var failed []string
			for _, ch := range v.Checks {
				if ch.Result != Pass {
					failed = append(failed, ch.Criterion+" "+ch.Subject+": "+ch.Result+" "+ch.Shown+" "+ch.Detail)
				}
			}
			if s.fail == "" {
				if !g.Go || !v.Go || v.Verdict != "go" || len(failed) > 0 {
					t.Fatalf("passing store: verdict %q, failed checks %v", v.Verdict, failed)
				}
				for _, gs := range v.Groups {
					if gs.Result != Pass || gs.Score != 100 {
						t.Errorf("group %+v: want pass 100", gs)
					}
				}
				if len(v.Groups) != 4 {
					t.Errorf("groups %+v: want volume, correctness, sync, health", v.Groups)
				}
				return
			}
			if g.Go || v.Go {
				t.Fatalf("store failing %s: verdict %q", s.fail, v.Verdict)
			}
			if len(failed) != 1 || !strings.HasPrefix(failed[0], s.fail+" ") || !strings.Contains(failed[0], ": fail") {
				t.Fatalf("store failing %s alone: failed checks %v", s.fail, failed)
			}
			want := "no-go: " + s.fail
			if s.fail == CritMinPairs {
				want = "no-go: not enough samples"
			}
			if v.Verdict != want {
				t.Fatalf("verdict %q, want %q", v.Verdict, want)
			}
			for _, gs := range v.Groups {
				if gs.Group == Groups[s.fail] && gs.Result == Pass {
					t.Errorf("group %s scored pass with %s failing: %+v", gs.Group, s.fail, gs)
				}
			}
		})
	}

	t.Run("dlq", func(t *testing.T) {
		// The passing service, but a dead letter waits on dlq.sync.
		other := testenv.StartNATS(t)
		_, js2 := other.Connect(t)
		putWatermarks(t, js2, "pass-cube", time.Second, now)
		cfg, err := natsx.DLQStreamConfig()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js2.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		if _, err := js2.Publish(ctx, schemas.DLQSubject("sync"), []byte(`{"stage":"sync"}`)); err != nil {
			t.Fatal(err)
		}
		q := q
		q.Service = "pass"
		g, err := Evaluate(ctx, st, q, DefaultCriteria(), GateInputs{JS: js2}, now)
		if err != nil {
			t.Fatal(err)
		}
		v := g.Services[0]
		if g.Go || v.Verdict != "no-go: dlq" {
			t.Fatalf("verdict %q, want no-go: dlq (checks %+v)", v.Verdict, v.Checks)
		}
	})

	t.Run("no NATS is not enough data", func(t *testing.T) {
		q := q
		q.Service = "pass"
		g, err := Evaluate(ctx, st, q, DefaultCriteria(), GateInputs{}, now)
		if err != nil {
			t.Fatal(err)
		}
		if g.Go || g.Services[0].Verdict != "no-go: not enough samples" {
			t.Fatalf("without NATS: %q, want no-go: not enough samples", g.Services[0].Verdict)
		}
		// Turned off, the NATS criteria no longer block.
		c := DefaultCriteria()
		off := false
		c.SyncLag.Enabled, c.DLQ.Enabled = &off, &off
		g, err = Evaluate(ctx, st, q, c, GateInputs{}, now)
		if err != nil {
			t.Fatal(err)
		}
		if !g.Go {
			t.Fatalf("NATS criteria off: %q, want go", g.Services[0].Verdict)
		}
	})

	t.Run("empty store and unknown service", func(t *testing.T) {
		empty := openStore(t)
		for _, q := range []Query{{}, {Service: "saju"}} {
			g, err := Evaluate(ctx, empty, q, DefaultCriteria(), GateInputs{JS: js}, now)
			if err != nil {
				t.Fatal(err)
			}
			if g.Go || len(g.Services) != 1 || g.Services[0].Verdict != "no-go: not enough samples" {
				t.Fatalf("empty store %+v: %+v", q, g.Services)
			}
		}
	})
}

// TestParseCriteria: a file changes only what it names, can turn a
// criterion off, and bad values are errors naming file, line and field.
func TestParseCriteria(t *testing.T) {
	c, err := ParseCriteria("gate.yaml", []byte("version: 1\nmin_pairs: {min: 5000}\ndlq: {enabled: false}\nsync_lag: {max_p99: 1m}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.MinPairs.Min != 5000 || c.DLQ.On() || !c.Stale.On() || c.SyncLag.MaxP99 != time.Minute || c.OpenMismatch.MaxRate != 0.0005 {
		t.Fatalf("criteria %+v", c)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"version", "version: 2\n", "gate.yaml:1: version"},
		{"rate", "version: 1\nopen_mismatch: {max_rate: 5}\n", "gate.yaml:2: open_mismatch.max_rate"},
		{"unknown", "version: 1\nmin_pair: {min: 1}\n", "gate.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCriteria("gate.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to name %q", err, tc.want)
			}
		})
	}
}
