package comparator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
	"github.com/heal7/shadowcube/shadow"
)

// ackLosingSink is a Fused sink whose report for one request is lost once:
// the pair's transaction committed (Fused called done(nil), which the
// sink records), but the replayer never hears of it, so the request is not
// acknowledged, as when the process is killed between the commit and the
// ack.
type ackLosingSink struct {
	*Fused
	victim    string
	once      sync.Once
	committed chan struct{} // closed once the victim's pair committed
}

func (s *ackLosingSink) Put(res *schemas.ShadowResult, msgID string, done func(error)) {
	if res.RequestID == s.victim {
		lost := false
		s.once.Do(func() { lost = true })
		if lost {
			s.Fused.Put(res, msgID, func(err error) {
				if err == nil {
					close(s.committed) // and the ack is never sent
				}
			})
			return
		}
	}
	s.Fused.Put(res, msgID, done)
}

// TestFusedLiveRedeliveryStoredOnce: in fused live mode a request whose
// pair committed but whose ack was lost (the replayer killed in between)
// is redelivered and replayed again, and its live pair is still stored
// once (the redelivered replay is skipped, roll-ups count it once, the
// request is acknowledged); a window replay of the same request then adds
// its own pair; a separate comparator reading every published result into
// the same store adds nothing.
func TestFusedLiveRedeliveryStoredOnce(t *testing.T) {
	const n = 8
	const victim = "lost-ack-003"
	ctx := testenv.Context(t, 3*time.Minute)
	store := openStore(t)
	nsrv := testenv.StartNATS(t)
	_, js := nsrv.Connect(t)
	reqCfg, _ := natsx.StreamConfig(schemas.StreamLegacyRequests, natsx.StreamSettings{})
	if _, err := natsx.EnsureStream(ctx, js, reqCfg); err != nil {
		t.Fatal(err)
	}
	var hitsMu sync.Mutex
	hits := map[string]int{}
	cube := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		id := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		hitsMu.Lock()
		hits[id]++
		hitsMu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"v":1}`, id)
	}))
	defer cube.Close()
	cubeHits := func(id string) int {
		hitsMu.Lock()
		defer hitsMu.Unlock()
		return hits[id]
	}
	rf, err := routes.Parse("routes.yaml", []byte(fmt.Sprintf(`
services:
  - name: svc
    cube_url: %s
    routes:
      - route: /r/{id}
`, cube.URL)))
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now().UTC().Add(-time.Second)
	testenv.PublishBacklog(t, js, n, func(i int) (string, []byte) {
		id := fmt.Sprintf("lost-ack-%03d", i)
		ev := schemas.RequestEvent{V: schemas.Version, ID: id, Service: "svc", Route: "/r/{id}",
			Method: "GET", Path: "/r/" + id, CapturedAt: time.Now().UTC(), Source: schemas.SourceTap,
			Response: schemas.HTTPResponse{Status: 200, Headers: http.Header{"Content-Type": {"application/json"}},
				Body: []byte(fmt.Sprintf(`{"id":%q,"v":1}`, id))}}
		return schemas.RequestSubject(ev.Service, ev.Route), schemas.AppendRequestEvent(nil, &ev)
	})
	cmp, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	newFused := func() *Fused {
		t.Helper()
		f, err := NewFused(FusedConfig{Batch: 4, MaxWait: 5 * time.Millisecond}, Deps{JetStream: js, Comparator: cmp, Store: store, Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	// A short ack wait: the lost ack's request comes back within seconds.
	const ackWait = 2 * time.Second
	startLive := func(sink shadow.Sink) (stop func()) {
		t.Helper()
		rep, err := shadow.New(shadow.Config{Routes: rf, Sink: sink, AckWait: ackWait},
			shadow.Deps{JetStream: js, Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- rep.Run(ctx) }()
		var once sync.Once
		return func() {
			once.Do(func() {
				rep.Close()
				if err := <-done; err != nil {
					t.Error(err)
				}
			})
		}
	}
	requests := func() (*jetstream.ConsumerInfo, error) {
		c, err := js.Consumer(ctx, schemas.StreamLegacyRequests, shadow.DurableName(shadow.DefaultDurable, "svc"))
		if err != nil {
			return nil, err
		}
		return c.Info(ctx)
	}
	// pairs: the victim's live and window pairs, all of its pairs, all pairs.
	pairs := func(id string) (live, window, its, all int) {
		t.Helper()
		if err := store.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE request_id = $1 AND run = 'live'),
			count(*) FILTER (WHERE request_id = $1 AND run = 'window'), count(*) FILTER (WHERE request_id = $1),
			count(*) FROM shadowcube_compare.pairs`, id).Scan(&live, &window, &its, &all); err != nil {
			t.Fatal(err)
		}
		return live, window, its, all
	}
	rolledUp := func() int {
		t.Helper()
		var v int
		if err := store.pool.QueryRow(ctx, `SELECT coalesce(sum(pairs), 0) FROM shadowcube_compare.rollup_hourly`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}

	// 1. The first replayer stores every pair; the victim's ack is lost.
	fusedA := newFused()
	sinkA := &ackLosingSink{Fused: fusedA, victim: victim, committed: make(chan struct{})}
	stopA := startLive(sinkA)
	select {
	case <-sinkA.committed:
	case <-ctx.Done():
		t.Fatal("the victim's pair never committed")
	}
	waitFor(t, func() error {
		info, err := requests()
		if err != nil {
			return err
		}
		if _, _, _, all := pairs(victim); all != n || info.NumPending != 0 || info.NumAckPending != 1 {
			return fmt.Errorf("%d of %d pairs stored; requests pending %d, unacknowledged %d (want 0, 1: the victim)", all, n, info.NumPending, info.NumAckPending)
		}
		return nil
	})
	// The window is hit: the victim's pair is committed, its request is not acknowledged.
	if _, _, its, _ := pairs(victim); its != 1 {
		t.Fatalf("victim has %d pairs after its commit, want 1", its)
	}
	stopA() // killed: the lost ack is never sent
	fusedA.Close()

	// 2. A new replayer (the restarted process) gets the victim again once
	// its ack wait ran out, replays it again, and acknowledges it.
	fusedB := newFused()
	stopB := startLive(fusedB)
	waitFor(t, func() error {
		info, err := requests()
		if err != nil {
			return err
		}
		if h := cubeHits(victim); h != 2 || info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("victim replayed %d times (want 2); requests pending %d, unacknowledged %d", h, info.NumPending, info.NumAckPending)
		}
		return nil
	})
	stopB()
	fusedB.Close()
	if live, window, its, all := pairs(victim); its != 1 || live != 1 || window != 0 || all != n {
		t.Fatalf("after the redelivery: victim has %d pairs (%d live, %d window), store %d pairs; want 1 (1 live), %d", its, live, window, all, n)
	}
	if r := rolledUp(); r != n {
		t.Fatalf("roll-ups count %d pairs, want %d (the skipped replay is not rolled up)", r, n)
	}

	// 3. A window replay of the same requests adds one pair each.
	fusedC := newFused()
	win, err := shadow.New(shadow.Config{Routes: rf, Sink: fusedC}, shadow.Deps{JetStream: js, Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := win.ReplayWindow(ctx, shadow.Window{Since: since, Until: time.Now().UTC()}, nil)
	win.Close()
	fusedC.Close()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Replayed != n {
		t.Fatalf("window replay: %s; want %d replayed", sum, n)
	}
	if live, window, its, all := pairs(victim); its != 2 || live != 1 || window != 1 || all != 2*n {
		t.Fatalf("after a window replay: victim has %d pairs (%d live, %d window), store %d pairs; want 2 (1 live, 1 window), %d", its, live, window, all, 2*n)
	}

	// 4. A separate comparator reading every published result (live ones,
	// the redelivered one de-duplicated by Nats-Msg-Id, window ones) into
	// the same store adds nothing.
	cons, err := NewConsumer(ConsumerConfig{Durable: "separate"}, Deps{JetStream: js, Comparator: cmp, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cons.Run(runCtx) }()
	st, err := js.Stream(ctx, schemas.StreamShadowResults)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2*n {
		t.Errorf("%s holds %d results, want %d (the redelivered live result de-duplicated)", schemas.StreamShadowResults, info.State.Msgs, 2*n)
	}
	waitFor(t, func() error {
		c, err := js.Consumer(ctx, schemas.StreamShadowResults, "separate")
		if err != nil {
			return err
		}
		ci, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if ci.AckFloor.Stream != info.State.LastSeq {
			return fmt.Errorf("separate compare acknowledged up to %d of %d", ci.AckFloor.Stream, info.State.LastSeq)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if live, window, its, all := pairs(victim); its != 2 || live != 1 || window != 1 || all != 2*n {
		t.Fatalf("after a separate compare: victim has %d pairs (%d live, %d window), store %d pairs; want 2 (1 live, 1 window), %d", its, live, window, all, 2*n)
	}
	if r := rolledUp(); r != 2*n {
		t.Fatalf("roll-ups count %d pairs, want %d", r, 2*n)
	}
}

// TestConsumerLiveResultOncePerRequest: in separate-stage mode a live
// result published again after JetStream's de-duplication window (a
// second live replay of the same request, Nats-Msg-Id = request id, new
// replay time) is skipped like a redelivery, while a window replay's
// result of the same request adds a pair.
func TestConsumerLiveResultOncePerRequest(t *testing.T) {
	s := openStore(t)
	srv := testenv.StartNATS(t)
	_, js := srv.Connect(t)
	ctx := testenv.Context(t, 2*time.Minute)
	// A short de-duplication window, so the second live publish is stored.
	resCfg, err := natsx.StreamConfig(schemas.StreamShadowResults, natsx.StreamSettings{Duplicates: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := natsx.EnsureStream(ctx, js, resCfg); err != nil {
		t.Fatal(err)
	}
	c := sajuComparator(t)
	l := sajuDoc(1, "x", "戊辰", "甲寅", "辛丑", "戊子", "辛", "편인", 7, false)
	publish := func(at time.Time, msgID string) *jetstream.PubAck {
		t.Helper()
		r := result("saju", sajuRoute, birth("1988-02-15", "10:00", "solar"), l, l)
		r.RequestID, r.ReplayedAt = "req-live", at
		ack, err := js.Publish(ctx, schemas.ShadowResultSubject(r.Service, r.Route), schemas.AppendShadowResult(nil, r), jetstream.WithMsgID(msgID))
		if err != nil {
			t.Fatal(err)
		}
		return ack
	}
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	publish(t0, "req-live")
	// The same live replay again: de-duplicated by JetStream.
	if ack := publish(t0, "req-live"); !ack.Duplicate {
		t.Fatal("second publish within the de-duplication window was stored")
	}
	// A second live replay once the window passed (retried until stored:
	// the window's end is JetStream's to tell).
	waitFor(t, func() error {
		if ack := publish(t0.Add(time.Second), "req-live"); ack.Duplicate {
			return fmt.Errorf("still within the de-duplication window")
		}
		return nil
	})
	publish(t0.Add(2*time.Second), schemas.WindowResultMsgID("req-live", t0.Add(2*time.Second)))
	cons, err := NewConsumer(ConsumerConfig{Batch: 1, MaxWait: 10 * time.Millisecond}, Deps{JetStream: js, Comparator: c, Store: s})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cons.Run(runCtx) }()
	waitFor(t, func() error {
		info, err := consumerInfo(ctx, js, cons.cfg.Durable)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 || info.AckFloor.Stream != 3 {
			return fmt.Errorf("results pending %d, unacknowledged %d, acknowledged up to %d of 3", info.NumPending, info.NumAckPending, info.AckFloor.Stream)
		}
		return nil
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, err := s.Pairs(ctx, "req-live")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Run != string(RunLive) || !got[0].ReplayedAt.Equal(t0) || got[1].Run != string(RunWindow) {
		t.Fatalf("stored pairs %+v; want the first live replay and the window replay", got)
	}
}
