package publisher

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// TestTapNATSOutage stops NATS mid-load: users see no error, drops are
// counted, the queue stays bounded, and capture resumes (with the spill
// re-published) once NATS is back.
func TestTapNATSOutage(t *testing.T) {
	for _, withSpill := range []bool{false, true} {
		t.Run(fmt.Sprintf("spill=%v", withSpill), func(t *testing.T) {
			up := httptest.NewServer(legacyHandler(nil))
			defer up.Close()
			cfg := Config{Routes: testService(t), QueueSize: 256, QueueBytes: 1 << 20, MaxPending: 256, AckTimeout: time.Second}
			if withSpill {
				cfg.Spill = SpillConfig{Dir: t.TempDir(), MaxBytes: 4 << 20}
			}
			e := newEnv(t, cfg)
			tap, err := NewTap(e.c, TapConfig{Upstream: up.URL})
			if err != nil {
				t.Fatal(err)
			}
			defer tap.Close()
			srv := httptest.NewServer(tap)
			defer srv.Close()

			var userErrors, sent atomic.Int64
			load := func(d time.Duration) {
				var wg sync.WaitGroup
				deadline := time.Now().Add(d)
				for w := 0; w < 8; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; time.Now().Before(deadline); i++ {
							body := bytes.Repeat([]byte("x"), 2048)
							resp, err := http.Post(srv.URL+"/api/saju/chart", "application/json", bytes.NewReader(body))
							sent.Add(1)
							if err != nil {
								userErrors.Add(1)
								continue
							}
							got, _ := io.ReadAll(resp.Body)
							resp.Body.Close()
							if resp.StatusCode != http.StatusCreated || !bytes.Equal(got, bytes.ToUpper(body)) {
								userErrors.Add(1)
							}
						}
					}()
				}
				wg.Wait()
			}
			load(300 * time.Millisecond)
			e.flush(t)
			before := len(messages(t, e.js))
			if before == 0 {
				t.Fatal("nothing captured before the outage")
			}

			e.nats.Shutdown()
			var peakQueue atomic.Int64
			stopWatch := make(chan struct{})
			go func() {
				for {
					select {
					case <-stopWatch:
						return
					case <-time.After(5 * time.Millisecond):
						if q := e.c.queueBytes.Load(); q > peakQueue.Load() {
							peakQueue.Store(q)
						}
					}
				}
			}()
			var ms runtime.MemStats
			load(1500 * time.Millisecond)
			close(stopWatch)
			runtime.GC()
			runtime.ReadMemStats(&ms)
			if userErrors.Load() != 0 {
				t.Fatalf("%d of %d user requests failed during the outage", userErrors.Load(), sent.Load())
			}
			if peakQueue.Load() > cfg.QueueBytes {
				t.Errorf("queue held %d bytes, limit %d", peakQueue.Load(), cfg.QueueBytes)
			}
			if ms.HeapAlloc > 256<<20 {
				t.Errorf("heap %d MiB during the outage", ms.HeapAlloc>>20)
			}
			st := e.c.Stats()
			if !withSpill && st.Dropped == 0 {
				t.Errorf("no drop counted during the outage: %+v", st)
			}
			if withSpill && st.Spilled == 0 {
				t.Errorf("nothing spilled during the outage: %+v", st)
			}
			t.Logf("outage: %d requests, stats %+v, peak queue %d bytes", sent.Load(), st, peakQueue.Load())

			e.nats.Start(t)
			waitFor(t, 30*time.Second, e.c.Connected, func() string { return "no reconnect to NATS" })
			load(300 * time.Millisecond)
			if userErrors.Load() != 0 {
				t.Fatalf("%d user requests failed after the outage", userErrors.Load())
			}
			deadline := time.Now().Add(20 * time.Second)
			var after int
			for time.Now().Before(deadline) {
				after = len(messages(t, e.js))
				if after > before && (!withSpill || e.c.spill.Load().empty()) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if after <= before {
				t.Fatalf("capture did not resume: %d events before the outage, %d after", before, after)
			}
			if withSpill {
				if !e.c.spill.Load().empty() {
					t.Fatalf("spill not re-published")
				}
				if after < before+int(st.Spilled) {
					t.Errorf("%d events in stream, want at least %d before + %d spilled", after, before, st.Spilled)
				}
			}
		})
	}
}

func b64url(s string) string {
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var out strings.Builder
	b := []byte(s)
	for i := 0; i < len(b); i += 3 {
		var n uint32
		k := min(3, len(b)-i)
		for j := 0; j < 3; j++ {
			n <<= 8
			if j < k {
				n |= uint32(b[i+j])
			}
		}
		for j := 0; j < k+1; j++ {
			out.WriteByte(enc[(n>>(18-6*j))&63])
		}
	}
	return out.String()
}

// TestRedactHMAC checks the hmac mode keeps fields but not their values.
func TestRedactHMAC(t *testing.T) {
	p, err := newPrivacy(PrivacyConfig{Secret: []byte(testSecret), RedactPaths: []string{"$.a.b", "$.list[*]"}, RedactMode: RedactHMAC})
	if err != nil {
		t.Fatal(err)
	}
	out, dropped := p.rules.Body([]byte(`{"a":{"b":"secret","c":1},"list":["x","y"]}`), false, "application/json")
	if dropped || bytes.Contains(out, []byte("secret")) || !bytes.Contains(out, []byte(`"c":1`)) || bytes.Count(out, []byte(UserKeyPrefix)) != 3 {
		t.Fatalf("redacted: %s (dropped %v)", out, dropped)
	}
	if _, dropped := p.rules.Body([]byte(`{"a":{"b":"sec`), true, "application/json"); !dropped {
		t.Fatal("a truncated JSON body with redaction configured must be dropped")
	}
	for _, bad := range []string{"a.b", "$.", "$.a[0]"} {
		if _, err := newPrivacy(PrivacyConfig{Secret: []byte(testSecret), RedactPaths: []string{bad}}); err == nil {
			t.Errorf("path %q accepted", bad)
		}
	}
	if _, err := newPrivacy(PrivacyConfig{}); err == nil {
		t.Error("empty secret accepted")
	}
}

// TestConsistentSampling: over 10k users, a route sampled at 0.3 captures
// 30% ± 2% of users, and each user is always or never captured.
func TestConsistentSampling(t *testing.T) {
	e := newEnv(t, Config{Routes: testService(t)})
	const users = 10000
	captured := 0
	for u := 0; u < users; u++ {
		h := http.Header{"X-User-Id": {fmt.Sprintf("user-%d", u)}}
		first := e.c.decide("GET", "/sampled", h, true).capture
		for i := 0; i < 3; i++ {
			if e.c.decide("GET", "/sampled", h, true).capture != first {
				t.Fatalf("user-%d sampled inconsistently", u)
			}
		}
		if first {
			captured++
		}
	}
	if share := float64(captured) / users; share < 0.28 || share > 0.32 {
		t.Fatalf("sampled %.4f of users, want 0.30 ± 0.02", share)
	}
	if e.c.decide("GET", "/private", nil, true).capture {
		t.Error("route with capture: false was captured")
	}
	if d := e.c.decide("GET", "/nowhere", nil, true); !d.capture || d.route != OtherRoute {
		t.Errorf("unmatched: %+v", d)
	}
	skip := newEnv(t, Config{Routes: testService(t), Unmatched: UnmatchedSkip})
	if skip.c.decide("GET", "/nowhere", nil, true).capture {
		t.Error("unmatched captured with unmatched=skip")
	}
}

// TestRolloutSplitAndFlagChange: a flag set in KV is seen by a watching tap
// within 1 s; at 25% the cube serves 25% ± 2% of 10k users, always the same
// users; the legacy answer of a rolled-out user is what gets captured; a
// rollback to 0 sends everybody to legacy within 1 s.
func TestRolloutSplitAndFlagChange(t *testing.T) {
	legacy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "legacy:%s:%s", r.URL.Path, b)
	}))
	defer legacy.Close()
	cube := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "cube:%s:%s", r.URL.Path, b)
	}))
	defer cube.Close()
	e := newEnv(t, Config{Routes: testService(t)})
	ctx := testenv.Context(t, 30*time.Second)
	flags, err := OpenFlags(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	w, err := WatchFlag(ctx, flags.KV(), "saju", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	tap, err := NewTap(e.c, TapConfig{Upstream: legacy.URL, Cube: cube.URL, Rollout: w})
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	srv := httptest.NewServer(tap)
	defer srv.Close()

	// Waits on the watcher itself; the bound is generous so a loaded
	// machine cannot fail it (the watcher applies changes as KV delivers them).
	waitPercent := func(want int) {
		t.Helper()
		waitFor(t, 20*time.Second, func() bool { return w.Percent() == want },
			func() string { return fmt.Sprintf("flag change to %d%% not seen (still %d%%)", want, w.Percent()) })
	}
	if _, err := flags.Set(ctx, "saju", 25); err != nil {
		t.Fatal(err)
	}
	waitPercent(25)

	const users = 10000
	cubeUsers := 0
	for u := 0; u < users; u++ {
		if e.c.RolloutBucket(fmt.Sprintf("user-%d", u)) < 25 {
			cubeUsers++
		}
	}
	if share := float64(cubeUsers) / users; share < 0.23 || share > 0.27 {
		t.Fatalf("cube share %.4f of users, want 0.25 ± 0.02", share)
	}
	// Through the tap: the same users are on the cube on every request.
	served := map[string]string{}
	for round := 0; round < 2; round++ {
		for u := 0; u < 200; u++ {
			id := fmt.Sprintf("user-%d", u)
			req, _ := http.NewRequest("POST", srv.URL+"/api/saju/chart", strings.NewReader("b"+id))
			req.Header.Set("X-User-Id", id)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			who, _, _ := strings.Cut(string(body), ":")
			wantWho := "legacy"
			if e.c.RolloutBucket(id) < 25 {
				wantWho = "cube"
			}
			if who != wantWho {
				t.Fatalf("%s served by %s, want %s", id, who, wantWho)
			}
			if prev, ok := served[id]; ok && prev != who {
				t.Fatalf("%s moved from %s to %s", id, prev, who)
			}
			served[id] = who
		}
	}
	// The rolled-out users' captures come from background legacy calls:
	// wait for all 400 events rather than for a fixed time.
	var evs []schemas.RequestEvent
	waitFor(t, 30*time.Second, func() bool {
		e.flush(t)
		evs = events(t, e.js)
		return len(evs) >= 400
	}, func() string { return fmt.Sprintf("%d events, want 400", len(evs)) })
	if len(evs) != 400 {
		t.Fatalf("%d events, want 400 (one per request, legacy answers only)", len(evs))
	}
	for _, ev := range evs {
		if !strings.HasPrefix(string(ev.Response.Body), "legacy:/api/saju/chart:b") {
			t.Fatalf("captured answer %q is not the legacy one", ev.Response.Body)
		}
	}
	// Instant rollback.
	if _, err := flags.Set(ctx, "saju", 0); err != nil {
		t.Fatal(err)
	}
	waitPercent(0)
	req, _ := http.NewRequest("GET", srv.URL+"/x", nil)
	for u := 0; u < 200; u++ {
		req.Header.Set("X-User-Id", fmt.Sprintf("user-%d", u))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasPrefix(string(body), "legacy:") {
			t.Fatalf("after rollback user-%d got %q", u, body)
		}
	}
}

// TestFlagsRampAndList covers ramp arithmetic, list and get.
func TestFlagsRampAndList(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := testenv.Context(t, 30*time.Second)
	flags, err := OpenFlags(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := flags.Get(ctx, "ai"); err == nil {
		t.Fatal("missing flag: no error")
	}
	if _, err := flags.Set(ctx, "ai", 10); err != nil {
		t.Fatal(err)
	}
	f, err := flags.Ramp(ctx, "ai", 50, 10, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	start := f.Ramp.Start
	for _, c := range []struct {
		after time.Duration
		want  int
	}{{0, 20}, {59 * time.Minute, 20}, {time.Hour, 30}, {3 * time.Hour, 50}, {30 * time.Hour, 50}} {
		if got := f.Effective(start.Add(c.after)); got != c.want {
			t.Errorf("ramp after %s: %d%%, want %d%%", c.after, got, c.want)
		}
	}
	down := Flag{Percent: 50, Ramp: &Ramp{From: 50, To: 0, Step: 20, Every: "1m0s", Start: start}}
	if got := down.Effective(start.Add(2 * time.Minute)); got != 0 {
		t.Errorf("ramp down: %d", got)
	}
	if _, err := flags.Set(ctx, "saju", 5); err != nil {
		t.Fatal(err)
	}
	list, err := flags.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Service != "ai" || list[0].Ramp == nil || list[1].Percent != 5 {
		t.Fatalf("list: %+v", list)
	}
	if _, err := flags.Set(ctx, "saju", 101); err == nil {
		t.Error("101% accepted")
	}
}

// staticRollout is a fixed percent.
type staticRollout int

func (s staticRollout) Percent() int { return int(s) }

// TestRolloutCubeDownFallsBack: when the cube gives no answer, a rolled-out
// user is answered by the legacy service (GET and POST with its body).
func TestRolloutCubeDownFallsBack(t *testing.T) {
	legacy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "legacy:%s:%s", r.Method, b)
	}))
	defer legacy.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // connection refused from now on
	e := newEnv(t, Config{})
	tap, err := NewTap(e.c, TapConfig{Upstream: legacy.URL, Cube: deadURL, Rollout: staticRollout(100)})
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	srv := httptest.NewServer(tap)
	defer srv.Close()
	for _, c := range []struct{ method, body string }{{"GET", ""}, {"POST", "payload-123"}} {
		req, _ := http.NewRequest(c.method, srv.URL+"/x", strings.NewReader(c.body))
		if c.body == "" {
			req.Body = http.NoBody
		}
		req.Header.Set("X-User-Id", "any-user")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "legacy:" + c.method + ":" + c.body; resp.StatusCode != 200 || string(got) != want {
			t.Errorf("%s: %d %q, want 200 %q", c.method, resp.StatusCode, got, want)
		}
	}
	if v := counterValue(e.c.m.cubeFallback); v != 2 {
		t.Errorf("cube fallbacks %v, want 2", v)
	}
}
