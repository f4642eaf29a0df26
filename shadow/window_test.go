package shadow

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/schemas"
)

func TestParsePace(t *testing.T) {
	for in, want := range map[string]float64{"recorded": 1, "max": 0, "10x": 10, "0.5x": 0.5} {
		p, err := ParsePace(in)
		if err != nil || p.Speed != want {
			t.Errorf("ParsePace(%q) = %v, %v; want speed %v", in, p, err, want)
		}
		if back, err := ParsePace(p.String()); err != nil || back != p {
			t.Errorf("ParsePace(%q.String() = %q) = %v, %v", in, p.String(), back, err)
		}
	}
	for _, bad := range []string{"", "fast", "0x", "-2x", "x", "10"} {
		if _, err := ParsePace(bad); err == nil || !strings.Contains(err.Error(), strconv.Quote(bad)) {
			t.Errorf("ParsePace(%q): error %v, want one naming the value", bad, err)
		}
	}
}

// newWindowReplayer builds a replayer for ReplayWindow (not started).
func (h *harness) newWindowReplayer(cfg Config) *Replayer {
	h.t.Helper()
	r, err := New(cfg, Deps{JetStream: h.js, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: prometheus.NewRegistry()})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { r.Close() })
	return r
}

// windowResults reads SHADOW_RESULTS: Nats-Msg-Id → request id.
func (h *harness) windowResults(n int) map[string]string {
	h.t.Helper()
	eventually(h.t, 30*time.Second, func() error {
		if c := h.resultCount(); c != uint64(n) {
			return fmt.Errorf("%d results stored, want %d", c, n)
		}
		return nil
	})
	s, err := h.js.Stream(h.ctx, schemas.StreamShadowResults)
	if err != nil {
		h.t.Fatal(err)
	}
	c, err := s.OrderedConsumer(h.ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		h.t.Fatal(err)
	}
	batch, err := c.Fetch(n, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]string{}
	for m := range batch.Messages() {
		res, err := schemas.DecodeShadowResult(m.Data())
		if err != nil {
			h.t.Fatal(err)
		}
		out[m.Headers().Get(jetstream.MsgIDHeader)] = res.RequestID
	}
	if len(out) != n {
		h.t.Fatalf("read %d results with distinct Nats-Msg-Ids, want %d", len(out), n)
	}
	return out
}

// TestWindowReplaysExactlyItsRequests: traffic captured before, inside and
// after a window; the window replay replays exactly the reads captured in
// it, per user in capture order, counts the writes the policy skips,
// starts reading at the window's start time (the earlier traffic is never
// read), stops by itself at the first message after it, and leaves the
// live replayer's durable alone.
func TestWindowReplaysExactlyItsRequests(t *testing.T) {
	h := newHarness(t)
	cube := newCube(t, "cube")
	rf := h.routes(`
services:
  - name: svc
    cube_url: {{cube}}
    routes:
      - route: /r/{id}
`, "{{cube}}", cube.URL)
	// The live replayer's durable exists (as when `shadow` runs) but is idle.
	live, err := natsx.EnsureConsumer(h.ctx, h.js, schemas.StreamLegacyRequests, jetstream.ConsumerConfig{
		Durable: DurableName(DefaultDurable, "svc"), AckPolicy: jetstream.AckExplicitPolicy,
		FilterSubject: schemas.PrefixLegacyRequest + ".svc.>",
	})
	if err != nil {
		t.Fatal(err)
	}
	const users = 5
	batch := func(prefix string, n, writes int) []schemas.RequestEvent {
		var evs []schemas.RequestEvent
		for i := range n {
			ev := event(fmt.Sprintf("%s-%03d", prefix, i), "svc", "/r/{id}", "GET", fmt.Sprintf("/r/%s-%03d", prefix, i))
			ev.UserKey = fmt.Sprintf("hmac-sha256:user%d", i%users)
			if i < writes {
				ev.Method = "POST"
			}
			evs = append(evs, ev)
			h.publish(ev)
		}
		return evs
	}
	after := func(t0 time.Time) { // the clock has moved past t0
		for !time.Now().After(t0) {
			time.Sleep(time.Millisecond)
		}
	}
	batch("before", 20, 0)
	since := time.Now()
	after(since)
	inside := batch("inside", 62, 2)
	until := time.Now()
	after(until)
	batch("after", 20, 0)

	r := h.newWindowReplayer(Config{Routes: rf})
	var passes []Summary
	sum, err := r.ReplayWindow(h.ctx, Window{Since: since, Until: until, Pace: Pace{}, Skew: time.Nanosecond},
		func(s Summary) { passes = append(passes, s) })
	if err != nil {
		t.Fatal(err)
	}
	t.Log(sum)
	if len(passes) != 1 || sum.Passes != 1 {
		t.Errorf("%d passes reported, summary %d; want 1", len(passes), sum.Passes)
	}
	if sum.Scanned != 62 || sum.Outside != 0 || sum.Replayed != 60 || sum.Skipped[SkipWrite] != 2 || sum.SkippedTotal() != 2 || sum.CubeErrors != 0 || sum.Failed != 0 {
		t.Errorf("summary %s: want 62 scanned (nothing before the window read, nothing after it), 60 replayed, 2 writes skipped", sum)
	}
	// The cube saw exactly the window's reads, each user's in capture order.
	got := cube.requests()
	var want []string
	for _, ev := range inside {
		if ev.Method == "GET" {
			want = append(want, ev.Path)
		}
	}
	paths := make([]string, len(got))
	for i, s := range got {
		paths[i] = s.Path
	}
	if !slices.Equal(slices.Sorted(slices.Values(paths)), want) {
		t.Fatalf("cube received %v, want exactly %v", paths, want)
	}
	for u := range users {
		var order []string
		for _, p := range paths {
			if i, _ := strconv.Atoi(p[len(p)-3:]); i%users == u {
				order = append(order, p)
			}
		}
		if !slices.IsSorted(order) {
			t.Errorf("user %d: replayed in order %v, want capture order", u, order)
		}
	}
	// One result each, with a replay's own Nats-Msg-Id.
	for msgID, id := range h.windowResults(60) {
		if !strings.HasPrefix(id, "inside-") || !strings.HasPrefix(msgID, id+"@") {
			t.Errorf("result %s stored with Nats-Msg-Id %q", id, msgID)
		}
	}
	info, err := live.Info(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Stream != 0 || info.NumAckPending != 0 || info.NumPending != 102 {
		t.Errorf("live durable touched: delivered %d, ack pending %d, pending %d (want 0, 0, 102)", info.Delivered.Stream, info.NumAckPending, info.NumPending)
	}

	// By capture time: with the default skew the pass reads from a minute
	// before the window, drops what was captured outside it and ends at
	// the stream's end.
	r2 := h.newWindowReplayer(Config{Routes: rf})
	sum2, err := r2.ReplayWindow(h.ctx, Window{Since: since, Until: until, Pace: Pace{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum2.Scanned != 102 || sum2.Outside != 40 || sum2.Replayed != 60 || sum2.SkippedTotal() != 2 {
		t.Errorf("summary %s: want 102 scanned, 40 outside the window, 60 replayed, 2 skipped", sum2)
	}
	h.windowResults(120)
}

// TestWindowPaceTenfold: a 120 s recorded span replayed at 10× against a
// fast cube takes 12 s, within 5% (long enough that scheduling noise on a
// loaded machine stays well inside), and --loop repeats the window until
// stopped.
func TestWindowPaceTenfold(t *testing.T) {
	h := newHarness(t)
	cube := newCube(t, "cube")
	rf := h.routes(`
services:
  - name: svc
    cube_url: {{cube}}
    routes:
      - route: /r/{id}
`, "{{cube}}", cube.URL)
	const n, gap = 1201, 100 * time.Millisecond
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	for i := range n {
		ev := event(fmt.Sprintf("p-%04d", i), "svc", "/r/{id}", "GET", fmt.Sprintf("/r/%d", i))
		ev.UserKey = fmt.Sprintf("hmac-sha256:user%d", i)
		ev.CapturedAt = base.Add(time.Duration(i) * gap)
		h.publish(ev)
	}
	span := time.Duration(n-1) * gap
	r := h.newWindowReplayer(Config{Routes: rf})
	// The captures are an hour old but stored now (as an import does):
	// the skew covers that.
	sum, err := r.ReplayWindow(h.ctx, Window{Since: base, Until: base.Add(span), Pace: Pace{Speed: 10}, Skew: 2 * time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(sum)
	if sum.Replayed != n || sum.Span != span {
		t.Fatalf("summary %s: want %d replayed over a %v span", sum, n, span)
	}
	want := span / 10
	if rel := math.Abs(float64(sum.Duration-want)) / float64(want); rel > 0.05 {
		t.Errorf("10× of a %v span took %v (relative error %.3f, want ≤ 0.05)", span, sum.Duration, rel)
	}
	if rel := math.Abs(sum.Achieved()-sum.Asked()) / sum.Asked(); rel > 0.05 {
		t.Errorf("achieved %.1f req/s, asked %.1f", sum.Achieved(), sum.Asked())
	}

	// --loop, as fast as possible, until stopped after the second pass.
	ctx, stop := context.WithCancel(h.ctx)
	defer stop()
	passes := 0
	r2 := h.newWindowReplayer(Config{Routes: rf})
	total, err := r2.ReplayWindow(ctx, Window{Since: base, Until: base.Add(span), Loop: true, Skew: 2 * time.Hour}, func(s Summary) {
		if s.Replayed != n {
			t.Errorf("loop pass %d replayed %d, want %d", passes+1, s.Replayed, n)
		}
		if passes++; passes == 2 {
			stop()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if passes < 2 || total.Replayed < 2*n {
		t.Errorf("loop: %d passes, %d replayed; want at least 2 full passes", passes, total.Replayed)
	}
}

// TestWindowEmpty: a window nothing was captured in ends at once with
// nothing replayed; looping over it is an error, not a spin.
func TestWindowEmpty(t *testing.T) {
	h := newHarness(t)
	cube := newCube(t, "cube")
	rf := h.routes(`
services:
  - name: svc
    cube_url: {{cube}}
    routes:
      - route: /r/{id}
`, "{{cube}}", cube.URL)
	h.publish(event("old", "svc", "/r/{id}", "GET", "/r/1"))
	since := time.Now().Add(time.Hour)
	sum, err := h.newWindowReplayer(Config{Routes: rf}).ReplayWindow(h.ctx, Window{Since: since, Until: since.Add(time.Hour)}, nil)
	if err != nil || sum.Replayed != 0 || sum.Scanned != 0 || sum.Passes != 1 {
		t.Errorf("empty window: %s, %v; want one pass, nothing read", sum, err)
	}
	_, err = h.newWindowReplayer(Config{Routes: rf}).ReplayWindow(h.ctx, Window{Since: since, Until: since.Add(time.Hour), Loop: true}, nil)
	if err == nil || !strings.Contains(err.Error(), "no request captured") {
		t.Errorf("loop over an empty window: %v, want an error", err)
	}
	if len(cube.requests()) != 0 {
		t.Errorf("cube received %d requests", len(cube.requests()))
	}
}
