package comparator

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/pgcluster"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

func openStore(t *testing.T) *Store {
	t.Helper()
	url := testenv.Postgres(t).NewDatabase(t)
	ctx := testenv.Context(t, time.Minute)
	s, err := OpenStore(ctx, StoreConfig{DatabaseURL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// A second open applies nothing and succeeds (idempotent migrations).
	s2, err := OpenStore(ctx, StoreConfig{DatabaseURL: url})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	s2.Close()
	s2.Close()
	return s
}

// TestStoreRoundTrip: outcomes survive the store with their diffs, causes,
// flags and AI labels; a redelivered pair is skipped; noise counters reload
// into a fresh comparator; the summary groups by route, cause and signature.
// ownResults creates the SHADOW_RESULTS stream as its owner (shadow) does,
// so a test can publish before the consumer's Run sets up.
func ownResults(t *testing.T, ctx context.Context, js jetstream.JetStream) {
	t.Helper()
	if _, err := natsx.StreamForReader(ctx, js, schemas.StreamShadowResults); err != nil {
		t.Fatal(err)
	}
}

// consumerInfo reads the durable consumer's state (an error until Run has
// created it).
func consumerInfo(ctx context.Context, js jetstream.JetStream, durable string) (*jetstream.ConsumerInfo, error) {
	c, err := js.Consumer(ctx, schemas.StreamShadowResults, durable)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

func TestStoreRoundTrip(t *testing.T) {
	s := openStore(t)
	ctx := testenv.Context(t, time.Minute)
	c := sajuComparator(t, RouteRules{Service: "ai", Route: "/api/ai/analyze", Rules: Rules{Kind: KindAI}})
	l := sajuDoc(1, "x", "戊辰", "甲寅", "辛丑", "戊子", "辛", "편인", 7, false)
	cu := sajuDoc(1, "x", "戊辰", "甲寅", "庚子", "戊子", "庚", "편인", 7, true)
	mis := c.Compare(result("saju", sajuRoute, birth("1988-02-15", "23:40", "solar"), l, cu))
	match := c.Compare(result("saju", sajuRoute, birth("1988-02-15", "10:00", "solar"), l, l))
	errRes := result("saju", sajuRoute, birth("1988-02-15", "10:00", "solar"), l, l)
	errRes.Cube, errRes.CubeError = nil, "timeout after 2s"
	errRes.Freshness.Stale = true
	cubeErr := c.Compare(errRes)
	aiRes := result("ai", "/api/ai/analyze", `{"u":1}`, aiDoc("wood", 0.9), aiDoc("fire", 0.6))
	aiRes.Request.Headers = map[string][]string{"X-Truth-Label": {"wood"}}
	ai := c.Compare(aiRes)
	n, err := s.Save(ctx, []*Outcome{mis, match, cubeErr, ai})
	if err != nil || n != 4 {
		t.Fatalf("save: %d %v", n, err)
	}
	if n, err := s.Save(ctx, []*Outcome{mis}); err != nil || n != 0 {
		t.Fatalf("redelivered pair: saved %d, %v; want 0", n, err)
	}
	var diffs []byte
	var causes []string
	var verdict, sig string
	if err := s.pool.QueryRow(ctx, `SELECT diffs, causes, verdict, signature FROM shadowcube_compare.pairs WHERE request_id = $1`, mis.RequestID).
		Scan(&diffs, &causes, &verdict, &sig); err != nil {
		t.Fatal(err)
	}
	var got []schemas.Diff
	if err := json.Unmarshal(diffs, &got); err != nil || len(got) != len(mis.Diffs) || got[0].Path != mis.Diffs[0].Path {
		t.Fatalf("diffs %s (%v), want %+v", diffs, err, mis.Diffs)
	}
	if verdict != "mismatch" || sig != mis.Signature || len(causes) != 1 || causes[0] != CauseZiHour {
		t.Fatalf("stored %s %s %v", verdict, sig, causes)
	}
	sum, err := s.Summary(ctx, 10, AIConfig{}, NoiseConfig{})
	if err != nil {
		t.Fatal(err)
	}
	text := sum.String()
	t.Logf("summary:\n%s", text)
	var saju RouteSummary
	for _, r := range sum.Routes {
		if r.Route == sajuRoute {
			saju = r
		}
	}
	if saju.Pairs != 3 || saju.Matches != 1 || saju.Mismatches != 1 || saju.Errors != 1 || saju.Stale != 1 {
		t.Fatalf("route summary %+v", saju)
	}
	if len(sum.AI) != 1 || sum.AI[0].Labelled != 1 || sum.AI[0].LegacyCorrect != 1 || sum.AI[0].CubeCorrect != 0 {
		t.Fatalf("AI summary %+v", sum.AI)
	}
	for _, want := range []string{"zi-hour", mis.Signature, "cube-error", "accuracy legacy 100.0%"} {
		if !strings.Contains(text, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	noise, err := s.LoadNoise(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if nc := noise[RouteID{"saju", sajuRoute}]; nc.Requests != 2 || nc.Raw["$.pillars.day"] != 1 {
		t.Fatalf("noise counts %+v", nc)
	}
	fresh := sajuComparator(t, RouteRules{Service: "ai", Route: "/api/ai/analyze", Rules: Rules{Kind: KindAI}})
	if err := s.Seed(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	if req, _, _ := fresh.NoiseState("saju", sajuRoute); req != 2 {
		t.Fatalf("seeded requests %d, want 2", req)
	}
	if r := fresh.AIReport("ai", "/api/ai/analyze"); r.Labelled != 1 {
		t.Fatalf("seeded AI %+v", r)
	}
}

// TestConsumerEndToEnd: results published on SHADOW_RESULTS (embedded
// JetStream) are compared, stored in PostgreSQL and acknowledged; a
// poison message lands in the DLQ; metrics count the verdicts.
func TestConsumerEndToEnd(t *testing.T) {
	testenv.Postgres(t) // the package's shared cluster (and its goroutines) outlives this test
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { testenv.VerifyNone(t, ignore) }) // runs last: after NATS, pool and consumer stopped
	s := openStore(t)
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	ctx := testenv.Context(t, 2*time.Minute)
	reg := prometheus.NewRegistry()
	c := sajuComparator(t)
	cons, err := NewConsumer(ConsumerConfig{Batch: 50, MaxWait: 100 * time.Millisecond}, Deps{JetStream: js, Comparator: c, Store: s, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	m := cons.metrics
	ownResults(t, ctx, js)
	const n = 300
	l := sajuDoc(1, "x", "戊辰", "甲寅", "辛丑", "戊子", "辛", "편인", 7, false)
	cu := sajuDoc(1, "x", "戊辰", "甲寅", "庚子", "戊子", "庚", "편인", 7, true)
	for i := 0; i < n; i++ {
		var r *schemas.ShadowResult
		if i%10 == 0 {
			r = result("saju", sajuRoute, birth("1988-02-15", "23:40", "solar"), l, cu)
		} else {
			r = result("saju", sajuRoute, birth("1988-02-15", "10:00", "solar"), l, strings.Replace(l, `"id":1`, `"id":2`, 1))
		}
		r.RequestID = fmt.Sprintf("req-%04d", i)
		data, _ := json.Marshal(r)
		if _, err := js.Publish(ctx, schemas.ShadowResultSubject(r.Service, r.Route), data); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Publish(ctx, schemas.ShadowResultSubject("saju", sajuRoute), []byte(`{"v":"1.0","oops":`)); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cons.Run(runCtx) }()
	deadline := time.Now().Add(time.Minute)
	var stored int
	for time.Now().Before(deadline) {
		_ = s.pool.QueryRow(ctx, `SELECT count(*) FROM shadowcube_compare.pairs`).Scan(&stored)
		info, err := consumerInfo(ctx, js, cons.cfg.Durable)
		if err == nil && stored == n && info.NumPending == 0 && info.NumAckPending == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if stored != n {
		t.Fatalf("stored %d pairs, want %d", stored, n)
	}
	info, err := consumerInfo(ctx, js, cons.cfg.Durable)
	if err != nil || info.NumPending != 0 || info.NumAckPending != 0 {
		t.Fatalf("consumer not drained: %+v %v", info, err)
	}
	dlq, err := js.Stream(ctx, schemas.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	if msg, err := dlq.GetLastMsgForSubject(ctx, schemas.DLQSubject("compare")); err != nil {
		t.Fatalf("DLQ: %v", err)
	} else if d, err := schemas.DecodeDeadLetter(msg.Data); err != nil || !strings.Contains(string(d.Payload), "oops") {
		t.Fatalf("DLQ entry %s: %v", msg.Data, err)
	}
	if got := testutil.ToFloat64(m.compared.WithLabelValues("saju", sajuRoute, "mismatch")); got != n/10 {
		t.Errorf("mismatch counter %v, want %d", got, n/10)
	}
	if got := testutil.ToFloat64(m.mismatches.WithLabelValues("saju", sajuRoute, CauseZiHour)); got != n/10 {
		t.Errorf("zi-hour counter %v, want %d", got, n/10)
	}
	if got := testutil.ToFloat64(m.matchRatio.WithLabelValues("saju", sajuRoute)); got != 0.9 {
		t.Errorf("match ratio %v, want 0.9", got)
	}
	if got := testutil.ToFloat64(m.badMsgs.WithLabelValues("decode")); got != 1 {
		t.Errorf("dead letters %v", got)
	}
	if got := testutil.ToFloat64(m.compared.WithLabelValues("saju", sajuRoute, "match")); got != n-n/10 {
		t.Errorf("match counter %v, want %d", got, n-n/10)
	}
	sig := "saju:/api/saju/chart:$.day_master,$.pillars.day:zi-hour"
	if got := testutil.ToFloat64(m.signatures.WithLabelValues(sig, "false")); got != n/10 {
		t.Errorf("signature %s counter %v, want %d", sig, got, n/10)
	}
	for name, c := range map[string]prometheus.Collector{"accepted": m.accepted, "stale": m.stale, "noise pairs": m.noisePairs, "cube errors": m.cubeErrors} {
		if got := testutil.CollectAndCount(c); got != 0 {
			t.Errorf("%s: %d series, want none", name, got)
		}
	}
	if got := testutil.CollectAndCount(m.latency); got != 2 {
		t.Errorf("latency series %d, want 2 (legacy, cube)", got)
	}
}

// TestConsumerStoreOutage: while the mismatch store is down nothing is
// acknowledged; when it returns every pair is stored exactly once (the ack
// follows the commit, redeliveries are skipped).
func TestConsumerStoreOutage(t *testing.T) {
	pg := testenv.StartCluster(t, pgcluster.Options{})
	ctx := testenv.Context(t, 2*time.Minute)
	s, err := OpenStore(ctx, StoreConfig{DatabaseURL: pg.Cluster.URL("postgres")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	c := sajuComparator(t)
	logs := &testenv.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cons, err := NewConsumer(ConsumerConfig{Batch: 20, MaxWait: 100 * time.Millisecond, AckWait: 2 * time.Second}, Deps{JetStream: js, Comparator: c, Store: s, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	pg.Cluster.Stop()
	ownResults(t, ctx, js)
	const n = 60
	l := sajuDoc(1, "x", "戊辰", "甲寅", "庚子", "戊子", "庚", "편인", 7, false)
	for i := 0; i < n; i++ {
		r := result("saju", sajuRoute, birth("1988-02-15", fmt.Sprintf("10:%02d", i%60), "solar"), l, l)
		r.RequestID = fmt.Sprintf("out-%03d", i)
		data, _ := json.Marshal(r)
		if _, err := js.Publish(ctx, schemas.ShadowResultSubject(r.Service, r.Route), data); err != nil {
			t.Fatal(err)
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cons.Run(runCtx) }()
	testenv.WaitConsumer(t, ctx, js, schemas.StreamShadowResults, cons.cfg.Durable)
	// Positive progress first: the consumer has fetched pairs and failed
	// to store them at least twice (so it had every chance to ack wrongly)
	// and messages were redelivered; only then does "nothing acknowledged"
	// mean something.
	const failed = "store verdicts; batch will be redelivered"
	var info *jetstream.ConsumerInfo
	for {
		info, err = consumerInfo(ctx, js, cons.cfg.Durable)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(logs.String(), failed) >= 2 && info.Delivered.Consumer > 0 && info.NumRedelivered > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the consumer never tried to store while the store was down: %+v\n%s", info, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if info.AckFloor.Consumer != 0 {
		t.Fatalf("acknowledged while the store was down: %+v", info.AckFloor)
	}
	if err := pg.Cluster.Start(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	var stored int
	for time.Now().Before(deadline) {
		_ = s.pool.QueryRow(ctx, `SELECT count(*) FROM shadowcube_compare.pairs`).Scan(&stored)
		info, err = consumerInfo(ctx, js, cons.cfg.Durable)
		if err == nil && stored == n && info.NumPending == 0 && info.NumAckPending == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var distinct int
	if err := s.pool.QueryRow(ctx, `SELECT count(DISTINCT request_id) FROM shadowcube_compare.pairs`).Scan(&distinct); err != nil {
		t.Fatal(err)
	}
	if stored != n || distinct != n || info.NumPending != 0 || info.NumAckPending != 0 {
		t.Fatalf("after recovery: %d rows, %d distinct, want %d; consumer %+v", stored, distinct, n, info)
	}
}

// TestConsumerHandsBackOnStop: a comparator stopped mid-backlog hands back
// the messages it had buffered (nak), so a second process on the same
// durable stores everything well before the ack wait would have redelivered
// them, and nothing is stored twice.
func TestConsumerHandsBackOnStop(t *testing.T) {
	s := openStore(t)
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	ctx := testenv.Context(t, 2*time.Minute)
	const n, ackWait = 2000, time.Minute
	l := sajuDoc(1, "x", "戊辰", "甲寅", "庚子", "戊子", "庚", "편인", 7, false)
	newConsumer := func() *Consumer {
		cons, err := NewConsumer(ConsumerConfig{Batch: 50, MaxWait: 50 * time.Millisecond, AckWait: ackWait}, Deps{JetStream: js, Comparator: sajuComparator(t), Store: s})
		if err != nil {
			t.Fatal(err)
		}
		return cons
	}
	a := newConsumer()
	ownResults(t, ctx, js)
	testenv.PublishBacklog(t, js, n, func(i int) (string, []byte) {
		r := result("saju", sajuRoute, birth("1988-02-15", "10:00", "solar"), l, l)
		r.RequestID = fmt.Sprintf("stop-%04d", i)
		data, _ := json.Marshal(r)
		return schemas.ShadowResultSubject(r.Service, r.Route), data
	})
	stored := func() (n int) {
		_ = s.pool.QueryRow(ctx, `SELECT count(*) FROM shadowcube_compare.pairs`).Scan(&n)
		return n
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	for stored() < 100 {
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := stored(); got >= n {
		t.Fatalf("the first process stored all %d pairs before it was stopped; the test needs a larger backlog", got)
	}
	b := newConsumer()
	runCtx, stop = context.WithCancel(ctx)
	go func() { done <- b.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	start := time.Now()
	for stored() < n {
		if time.Since(start) > ackWait/2 {
			t.Fatalf("only %d of %d pairs stored %s after the first process stopped: its buffered messages were not handed back", stored(), n, time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	var distinct int
	if err := s.pool.QueryRow(ctx, `SELECT count(DISTINCT request_id) FROM shadowcube_compare.pairs`).Scan(&distinct); err != nil || distinct != n {
		t.Fatalf("%d distinct pairs, want %d (%v)", distinct, n, err)
	}
}
