//go:build faults

// This file builds only with -tags faults (make test-faults): the distributed
// proof reproduces an open data loss on a replicated CDC stream (an event lost
// in a leader election is stored after later ones and sync skips it; see
// cdc/fence.go), so it cannot be part of make test until that is fixed.

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/cdc"
	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/demo"
	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/internal/wiring"
	"github.com/heal7/shadowcube/publisher"
	"github.com/heal7/shadowcube/schemas"
	"github.com/heal7/shadowcube/shadow"
)

// clusterBirthsEnv raises the load of TestClusterPipelineSurvivesNodeLoss
// (make test-faults); each birth makes two requests (saju chart, AI).
// clusterRateEnv sets the births per second (default 8).
const (
	clusterBirthsEnv = "SHADOWCUBE_TEST_CLUSTER_BIRTHS"
	clusterRateEnv   = "SHADOWCUBE_TEST_CLUSTER_RATE"
)

// syncWriter serializes a log buffer shared by many goroutines.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestClusterPipelineSurvivesNodeLoss is the distributed proof: the whole
// pipeline (two taps, cdc → sync, two shadow and two compare processes
// sharing their durables, each with its own NATS connection to all three
// nodes) runs under load on a 3-node JetStream cluster with every stream and
// bucket at R3. Mid-run the node leading LEGACY_REQUESTS is stopped (while
// traffic flows) and brought back; later a second node is restarted.
// Afterwards every captured request has exactly one comparison row, the
// cube's database equals the legacy one, the CDC stream holds each
// committed change once, and every consumer has nothing pending or unacked.
func TestClusterPipelineSurvivesNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node NATS cluster and PostgreSQL")
	}
	births, rate := 150, 8.0
	if v := os.Getenv(clusterBirthsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 {
			t.Fatalf("%s=%q: want a number of births ≥ 10", clusterBirthsEnv, v)
		}
		births = n
	}
	if v := os.Getenv(clusterRateEnv); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r < 1 || r > 1000 {
			t.Fatalf("%s=%q: want births per second in 1..1000", clusterRateEnv, v)
		}
		rate = r
	}
	pg := testenv.Postgres(t)
	cl := testenv.StartNATSCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute+time.Duration(births)*200*time.Millisecond)
	t.Cleanup(cancel)

	logs := &syncWriter{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// One supervisor for the stages (wiring.Group): a failing stage stops
	// the others, and everything stops in order at the end.
	st := wiring.NewGroup(ctx)
	defer func() {
		cancel()
		st.Stop()
		if t.Failed() {
			t.Logf("stage logs (warn and above):\n%s", logs.String())
		}
	}()

	// R3 everywhere: the shared DLQ and KV bucket via the shared settings,
	// each owned stream through its owner's settings.
	r3 := natsx.StreamSettings{Replicas: 3}
	if err := natsx.SetSharedSettings(natsx.KVSettings{Replicas: 3}, r3); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { natsx.SetSharedSettings(natsx.KVSettings{}, natsx.StreamSettings{}) })

	connect := func(name string) *natsx.Conn {
		c, err := natsx.Connect(ctx, natsx.Config{URL: cl.URL, Name: name}, log.With("conn", name))
		if err != nil {
			t.Fatal(err)
		}
		st.OnStop(c.Close)
		return c
	}
	watch := connect("test-watch")
	js := watch.JS

	// Leader elections after set-up, from JetStream's advisories.
	var elections atomic.Int64
	var counting atomic.Bool
	sub, err := watch.NC.Subscribe("$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.>", func(*nats.Msg) {
		if counting.Load() {
			elections.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	sys, err := wiring.StartDemoSystems(ctx, st, log, io.Discard, pg.AdminURL(), 2)
	if err != nil {
		t.Fatal(err)
	}
	rf, err := routes.Parse("demo-routes.yaml", []byte(fmt.Sprintf(wiring.DemoRoutes, sys.SajuCube, sys.AICube)))
	if err != nil {
		t.Fatal(err)
	}

	// cdc and sync: one each (one reader per slot, one ordered applier per cube).
	cdcConn := connect("cdc")
	reader, err := cdc.New(cdc.Config{DatabaseURL: sys.LegacyDB, Slot: "shadowcube_demo", Publication: "shadowcube_demo", Stream: r3},
		cdc.Deps{JetStream: cdcConn.JS, Logger: log.With("stage", "cdc"), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	st.Go("cdc", reader.Run)
	mapping, err := consumers.ParseMapping("demo-mapping.yaml", []byte(wiring.DemoMapping))
	if err != nil {
		t.Fatal(err)
	}
	syncConn := connect("sync")
	syncer, err := consumers.New(consumers.Config{Mapping: mapping, SourceURL: sys.LegacyDB, TargetURLs: map[string]string{"saju-cube": sys.CubeDB}},
		consumers.Deps{JetStream: syncConn.JS, Logger: log.With("stage", "sync"), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	st.OnStop(func() { syncer.Close() })
	st.Go("sync", syncer.Run)

	// taps (the owner of LEGACY_REQUESTS), each with its spill so that a
	// capture NATS did not take during an election is kept and re-published.
	tapConn := connect("tap")
	if err := publisher.EnsureStream(ctx, tapConn.JS, r3); err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	var capturers []*publisher.Capturer
	tapURL := map[string]string{}
	for _, s := range []struct{ name, upstream string }{{"saju", sys.LegacySaju}, {"ai", sys.LegacyAI}} {
		routesOf, _ := rf.Service(s.name)
		c, err := publisher.New(publisher.Config{Service: s.name, Routes: routesOf, Privacy: publisher.PrivacyConfig{Secret: secret},
			Spill: publisher.SpillConfig{Dir: t.TempDir(), MaxBytes: 64 << 20}},
			publisher.Deps{Conn: tapConn.NC, Logger: log.With("stage", "tap", "service", s.name), Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		st.OnStop(func() { c.Close() })
		go c.Run(context.WithoutCancel(ctx)) // stopped (drained) by c.Close
		capturers = append(capturers, c)
		tap, err := publisher.NewTap(c, publisher.TapConfig{Upstream: s.upstream})
		if err != nil {
			t.Fatal(err)
		}
		st.OnStop(func() { tap.Close() })
		if tapURL[s.name], err = st.ServeLoopback(tap); err != nil {
			t.Fatal(err)
		}
	}

	// two shadow and two compare processes sharing their durables.
	for i := range 2 {
		c := connect(fmt.Sprintf("shadow-%d", i))
		rep, err := shadow.New(shadow.Config{Routes: rf, LookupEnv: os.LookupEnv, Results: r3},
			shadow.Deps{JetStream: c.JS, Logger: log.With("stage", "shadow", "process", i), Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		st.OnStop(func() { rep.Close() })
		st.Go(fmt.Sprintf("shadow-%d", i), rep.Run)
	}
	for i := range 2 {
		c := connect(fmt.Sprintf("compare-%d", i))
		cmpr, err := comparator.New(comparator.Config{Routes: wiring.RouteRules(rf)})
		if err != nil {
			t.Fatal(err)
		}
		s, err := comparator.OpenStore(ctx, comparator.StoreConfig{DatabaseURL: sys.StoreDB})
		if err != nil {
			t.Fatal(err)
		}
		st.OnStop(func() { s.Close() })
		cons, err := comparator.NewConsumer(comparator.ConsumerConfig{},
			comparator.Deps{JetStream: c.JS, Comparator: cmpr, Store: s, Logger: log.With("stage", "compare", "process", i), Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		st.Go(fmt.Sprintf("compare-%d", i), cons.Run)
	}
	storeConn := testenv.Connect(t, sys.StoreDB)
	pairs := func() (rows, distinct int64) {
		t.Helper()
		if err := storeConn.QueryRow(ctx, `SELECT count(*), count(DISTINCT request_id) FROM shadowcube_compare.pairs`).Scan(&rows, &distinct); err != nil {
			t.Fatalf("count pairs: %v", err)
		}
		return rows, distinct
	}
	streams := []string{schemas.StreamLegacyRequests, schemas.StreamCDC, schemas.StreamShadowResults}
	for _, name := range streams {
		if _, err := testenv.StreamLeader(ctx, js, name); err != nil {
			t.Fatal(err)
		}
	}
	counting.Store(true)

	// traffic, spread over time so that the faults land while it flows.
	gen := demo.DefaultGenConfig()
	gen.EdgeShare = 0.2
	type loadResult struct {
		sum *demo.Summary
		err error
	}
	loadDone := make(chan loadResult, 1)
	var loadFinished atomic.Bool
	go func() {
		sum, err := demo.RunLoad(ctx, demo.LoadConfig{SajuURL: tapURL["saju"], AIURL: tapURL["ai"], Count: births, Rate: rate, Concurrency: 4, Gen: gen})
		loadFinished.Store(true)
		loadDone <- loadResult{sum, err}
	}()
	// apiCtx bounds one JetStream API call, so a call lost in an election
	// is retried by the wait around it.
	apiCtx := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 5*time.Second) }
	streamInfo := func(name string) *jetstream.StreamInfo {
		actx, acancel := apiCtx()
		defer acancel()
		s, err := js.Stream(actx, name)
		if err != nil {
			return nil
		}
		return s.CachedInfo()
	}
	captured := func() uint64 {
		if info := streamInfo(schemas.StreamLegacyRequests); info != nil {
			return info.State.Msgs
		}
		return 0
	}
	waitFor := func(what string, timeout time.Duration, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !ok() {
			if err := st.Err(); err != nil {
				t.Fatalf("waiting for %s: a stage failed: %v", what, err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s", what, timeout)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	streamLeader := func(name string) string {
		if info := streamInfo(name); info != nil && info.Cluster != nil {
			return info.Cluster.Leader
		}
		return ""
	}
	owned := append(slices.Clone(streams), "KV_"+schemas.KVBucket)
	allCurrent := func() {
		t.Helper()
		cctx, ccancel := context.WithTimeout(ctx, 90*time.Second)
		defer ccancel()
		for _, name := range append(slices.Clone(owned), schemas.StreamDLQ) {
			if name == schemas.StreamDLQ && streamInfo(name) == nil {
				continue // nothing dead-lettered
			}
			if _, err := testenv.StreamLeader(cctx, js, name); err != nil {
				t.Fatal(err)
			}
		}
	}
	// progress waits until captures and comparisons both move on by 10
	// (or, when strict is false, until the load is over and all compared).
	progress := func(what string, strict bool) {
		t.Helper()
		cb := captured()
		pb, _ := pairs()
		waitFor(what, 2*time.Minute, func() bool {
			n, _ := pairs()
			if !strict && loadFinished.Load() {
				return n >= int64(captured())
			}
			return captured() > cb+10 && n > pb+10
		})
	}

	// Fault rounds. Short run: one round; with SHADOWCUBE_TEST_CLUSTER_BIRTHS
	// (make test-faults), rounds go on while the load runs.
	waitFor("first comparisons", 2*time.Minute, func() bool { n, _ := pairs(); return n >= 10 })
	long := os.Getenv(clusterBirthsEnv) != ""
	var stopsDuringLoad int
	for round := 0; ; round++ {
		// 1. Every stream led by one node; stop that node while requests flow.
		names := make([]string, 0, len(cl.Nodes))
		for _, nd := range cl.Nodes {
			names = append(names, nd.Name)
		}
		target := names[round%len(names)]
		mctx, mcancel := context.WithTimeout(ctx, time.Minute)
		for _, name := range owned {
			if err := testenv.MoveStreamLeader(mctx, watch.NC, js, name, target); err != nil {
				t.Fatal(err)
			}
		}
		mcancel()
		if round == 0 && loadFinished.Load() {
			t.Fatal("the load finished before the first fault: raise the births or lower the rate")
		}
		if !loadFinished.Load() {
			stopsDuringLoad++
		}
		cb, pb := captured(), int64(0)
		pb, _ = pairs()
		cl.Node(target).Stop()
		t.Logf("round %d: stopped %s, leader of %v, at %d captured, %d compared", round, target, owned, cb, pb)
		for _, name := range owned {
			waitFor("a new leader of "+name, time.Minute, func() bool {
				l := streamLeader(name)
				return l != "" && l != target
			})
		}
		// The pipeline works on two nodes: captures and comparisons go on.
		progress("progress with "+target+" down", round == 0)
		cl.Node(target).Start(t)
		allCurrent()
		t.Logf("round %d: %s back, every stream current", round, target)

		// 2. Restart another node (stop, wait for new leaders, start).
		progress("progress after restarting "+target, round == 0)
		second := names[(round+1)%len(names)]
		if !loadFinished.Load() {
			stopsDuringLoad++
		}
		var led []string
		for _, name := range owned {
			if streamLeader(name) == second {
				led = append(led, name)
			}
		}
		cl.Node(second).Stop()
		t.Logf("round %d: stopped %s, leader of %v", round, second, led)
		for _, name := range led {
			waitFor("a new leader of "+name, time.Minute, func() bool {
				l := streamLeader(name)
				return l != "" && l != second
			})
		}
		cl.Node(second).Start(t)
		allCurrent()
		if !long || loadFinished.Load() || round >= 20 {
			break
		}
		progress(fmt.Sprintf("progress after round %d", round), false)
	}

	// Drain: every captured request compared, once.
	var load loadResult
	select {
	case load = <-loadDone:
	case <-ctx.Done():
		t.Fatal("load did not finish")
	}
	if load.err != nil {
		t.Fatalf("load: %v", load.err)
	}
	sent := uint64(0)
	for _, r := range load.sum.Routes {
		sent += uint64(r.Sent)
	}
	for _, c := range capturers {
		fctx, fcancel := context.WithTimeout(ctx, time.Minute)
		c.Flush(fctx)
		fcancel()
	}
	tapDrops := func() (n int64) {
		for _, c := range capturers {
			n += c.Stats().Dropped
		}
		return n
	}
	waitFor(fmt.Sprintf("every sent request captured (sent %d; the taps dropped %d so far)", sent, tapDrops()), 2*time.Minute,
		func() bool { return captured() >= sent })
	want := int64(captured())
	waitFor("every captured request compared", 3*time.Minute, func() bool { n, _ := pairs(); return n >= want })

	// Nothing pending or unacked on any consumer of any stream.
	var consumerNames []string
	waitFor("every consumer drained and acked", 2*time.Minute, func() bool {
		consumerNames = consumerNames[:0]
		for _, name := range streams {
			s, err := js.Stream(ctx, name)
			if err != nil {
				return false
			}
			lister := s.ListConsumers(ctx)
			for ci := range lister.Info() {
				consumerNames = append(consumerNames, name+"/"+ci.Name)
				if ci.NumAckPending != 0 || ci.NumPending != 0 {
					return false
				}
			}
			if lister.Err() != nil {
				return false
			}
		}
		return true
	})

	// Exactly one comparison row per captured request.
	ids := map[string]bool{}
	lr, err := js.Stream(ctx, schemas.StreamLegacyRequests)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); ; seq++ {
		m, err := lr.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ev, err := schemas.DecodeRequestEvent(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if ids[ev.ID] {
			t.Errorf("request %s captured twice", ev.ID)
		}
		ids[ev.ID] = true
	}
	rows, distinct := pairs()
	missing := 0
	prs, err := storeConn.Query(ctx, `SELECT request_id FROM shadowcube_compare.pairs`)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for prs.Next() {
		var id string
		if err := prs.Scan(&id); err != nil {
			t.Fatal(err)
		}
		seen[id] = true
		if !ids[id] {
			t.Errorf("comparison row for request %s that was never captured", id)
		}
	}
	prs.Close()
	for id := range ids {
		if !seen[id] {
			missing++
		}
	}
	if uint64(len(ids)) != sent || rows != int64(len(ids)) || distinct != rows || missing != 0 {
		t.Errorf("sent %d, captured %d, comparison rows %d (distinct requests %d), captured without a row %d: want all equal, none missing",
			sent, len(ids), rows, distinct, missing)
	}
	if drops := tapDrops(); drops != 0 {
		t.Errorf("the taps dropped %d captures", drops)
	}

	// The CDC stream holds every committed change once.
	legacy := testenv.Connect(t, sys.LegacyDB)
	var legacyRows int64
	if err := legacy.QueryRow(ctx, `SELECT count(*) FROM public.saju_records`).Scan(&legacyRows); err != nil {
		t.Fatal(err)
	}
	cs, err := js.Stream(ctx, schemas.StreamCDC)
	if err != nil {
		t.Fatal(err)
	}
	msgIDs := map[string]bool{}
	inserts := map[string]int{}
	var newest schemas.LSN
	outOfOrder := 0 // events stored after an event of a later transaction
	for seq := uint64(1); ; seq++ {
		m, err := cs.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		id := m.Header.Get(jetstream.MsgIDHeader)
		if id == "" || msgIDs[id] {
			t.Errorf("CDC message %d: Nats-Msg-Id %q missing or stored twice", seq, id)
		}
		msgIDs[id] = true
		ev, err := schemas.DecodeChangeEvent(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Op != schemas.OpSnapshot {
			if ev.CommitLSN < newest {
				outOfOrder++
			}
			newest = max(newest, ev.CommitLSN)
		}
		if ev.Table == "saju_records" && (ev.Op == schemas.OpInsert || ev.Op == schemas.OpSnapshot) {
			id := ev.New["id"]
			if id == nil {
				t.Fatalf("CDC message %d: saju_records %s without an id", seq, ev.Op)
			}
			inserts[*id]++
		}
	}
	for k, n := range inserts {
		if n != 1 {
			t.Errorf("saju_records row %s: %d insert events in CDC, want 1", k, n)
		}
	}
	if int64(len(inserts)) != legacyRows {
		t.Errorf("CDC holds %d saju_records inserts, the legacy table %d rows", len(inserts), legacyRows)
	}

	// reconcile: the cube's database equals the legacy one.
	m := &wiring.Mapping{Mapping: mapping, SourceURL: sys.LegacyDB, TargetURLs: map[string]string{"saju-cube": sys.CubeDB}}
	reports, err := wiring.Reconcile(ctx, &wiring.Process{Log: log, Base: log}, m, []wiring.ReconcileTarget{{Target: m.Target("saju-cube")}},
		consumers.ReconcileConfig{Settle: 20 * time.Second}, "")
	if err != nil {
		t.Fatal(err)
	}
	cubeLost := int64(0)
	for _, r := range reports {
		cubeLost += max(r.SourceRows-r.TargetRows, 0)
		if r.Differences != 0 || r.SourceRows != r.TargetRows || r.SourceRows != legacyRows {
			t.Errorf("reconcile %s → %s: source %d, target %d rows, %d differences (the CDC stream holds %d events stored after a later transaction's)",
				r.Source, r.Table, r.SourceRows, r.TargetRows, r.Differences, outOfOrder)
		}
	}
	var dead uint64
	if s, err := js.Stream(ctx, schemas.StreamDLQ); err == nil {
		dead = s.CachedInfo().State.Msgs
	}
	if dead != 0 {
		t.Errorf("%d dead letters", dead)
	}
	if err := st.Err(); err != nil {
		t.Errorf("a stage failed: %v", err)
	}
	if elections.Load() == 0 {
		t.Error("no stream leader election seen: the faults did not hit")
	}
	losses := int64(sent) - rows + cubeLost
	t.Logf("cluster summary: requests %d, captured %d, comparisons %d, CDC changes %d (rows %d, stored out of order %d), leader changes %d, node stops during load %d, consumers %v, dead letters %d, losses = %d (requests %d, cube rows %d)",
		sent, len(ids), rows, len(msgIDs), legacyRows, outOfOrder, elections.Load(), stopsDuringLoad, consumerNames, dead, losses, int64(sent)-rows, cubeLost)
}
