package comparator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
	"github.com/heal7/shadowcube/shadow"
)

// TestFusedReplayCompare: a live replayer with the Fused sink (`shadow
// --compare`) stores one verdict per captured request in the store itself
// (the planted mismatches found), acknowledges every request, and still
// publishes one result per pair to SHADOW_RESULTS with the request id as
// Nats-Msg-Id; a separate comparator consumer reading those results into the
// same store (as a `compare` process would) adds no pair twice.
func TestFusedReplayCompare(t *testing.T) {
	const n = 120
	ctx := testenv.Context(t, 3*time.Minute)
	store := openStore(t)
	nsrv := testenv.StartNATS(t)
	_, js := nsrv.Connect(t)
	reqCfg, _ := natsx.StreamConfig(schemas.StreamLegacyRequests, natsx.StreamSettings{})
	if _, err := natsx.EnsureStream(ctx, js, reqCfg); err != nil {
		t.Fatal(err)
	}
	cube := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		id := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		if strings.HasSuffix(id, "7") { // 12 of 120 differ
			fmt.Fprintf(w, `{"id":%q,"v":-1}`, id)
			return
		}
		fmt.Fprintf(w, `{"id":%q,"v":1}`, id)
	}))
	defer cube.Close()
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
	testenv.PublishBacklog(t, js, n, func(i int) (string, []byte) {
		ev := schemas.RequestEvent{V: schemas.Version, ID: fmt.Sprintf("f-%03d", i), Service: "svc", Route: "/r/{id}",
			Method: "GET", Path: fmt.Sprintf("/r/%03d", i), CapturedAt: time.Now().UTC(), Source: schemas.SourceTap,
			Response: schemas.HTTPResponse{Status: 200, Headers: http.Header{"Content-Type": {"application/json"}},
				Body: []byte(fmt.Sprintf(`{"id":"%03d","v":1}`, i))}}
		return schemas.RequestSubject(ev.Service, ev.Route), schemas.AppendRequestEvent(nil, &ev)
	})
	cmp, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	fused, err := NewFused(FusedConfig{Batch: 16}, Deps{JetStream: js, Comparator: cmp, Store: store, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	m := fused.metrics
	rep, err := shadow.New(shadow.Config{Routes: rf, Sink: fused}, shadow.Deps{JetStream: js, Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	repDone := make(chan error, 1)
	go func() { repDone <- rep.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			rep.Close()
			if err := <-repDone; err != nil {
				t.Error(err)
			}
			fused.Close()
		}
	}
	defer stop()
	compared := func() int {
		s := 0.0
		for _, v := range []Verdict{VerdictMatch, VerdictMismatch, VerdictNoise, VerdictError} {
			s += testutil.ToFloat64(m.compared.WithLabelValues("svc", "/r/{id}", string(v)))
		}
		return int(s)
	}
	waitFor(t, func() error { // the durable appears once Run set up
		reqCons, err := js.Consumer(ctx, schemas.StreamLegacyRequests, shadow.DurableName(shadow.DefaultDurable, "svc"))
		if err != nil {
			return err
		}
		info, err := reqCons.Info(ctx)
		if err != nil {
			return err
		}
		if c := compared(); c != n || info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("%d of %d compared; requests pending %d, unacknowledged %d", c, n, info.NumPending, info.NumAckPending)
		}
		return nil
	})
	stop()
	pairs := func() (all, mismatches int) {
		t.Helper()
		if err := store.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE verdict = 'mismatch') FROM shadowcube_compare.pairs`).Scan(&all, &mismatches); err != nil {
			t.Fatal(err)
		}
		return all, mismatches
	}
	if all, mm := pairs(); all != n || mm != 12 {
		t.Fatalf("store holds %d pairs, %d mismatches; want %d, 12", all, mm, n)
	}
	if f := fused.PublishFailures(); f != 0 {
		t.Errorf("%d result publishes failed", f)
	}
	// One result per pair in SHADOW_RESULTS, Nats-Msg-Id = request id.
	st, err := js.Stream(ctx, schemas.StreamShadowResults)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := oc.Fetch(n+1, jetstream.FetchMaxWait(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for msg := range batch.Messages() {
		res, err := schemas.DecodeShadowResult(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		if id := msg.Headers().Get(jetstream.MsgIDHeader); id != res.RequestID || seen[id] {
			t.Errorf("result %s: Nats-Msg-Id %q (seen before: %v)", res.RequestID, id, seen[id])
		}
		seen[res.RequestID] = true
	}
	if len(seen) != n {
		t.Fatalf("%d results in %s, want %d", len(seen), schemas.StreamShadowResults, n)
	}
	// A separate compare process on the same store: every result is a
	// pair already stored.
	cons, err := NewConsumer(ConsumerConfig{Durable: "separate"}, Deps{JetStream: js, Comparator: cmp, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cons.Run(runCtx) }()
	waitFor(t, func() error { // the durable appears once Run set up
		c, err := js.Consumer(ctx, schemas.StreamShadowResults, "separate")
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.AckFloor.Stream != uint64(n) {
			return fmt.Errorf("separate compare acknowledged up to %d of %d", info.AckFloor.Stream, n)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if all, _ := pairs(); all != n {
		t.Errorf("after a separate compare of the same results the store holds %d pairs, want %d", all, n)
	}
}

func waitFor(t *testing.T, f func() error) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not reached in 90s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
