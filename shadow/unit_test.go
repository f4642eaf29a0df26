package shadow

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/routes"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestBreakerTransitions(t *testing.T) {
	var mu sync.Mutex
	var states []string
	const openFor = 100 * time.Millisecond
	b := newBreaker("t", BreakerConfig{Failures: 3, OpenFor: openFor, Probes: 1}, func(s BreakerState) {
		mu.Lock()
		states = append(states, s.String())
		mu.Unlock()
	})
	ctx := context.Background()
	send := func(outcome error) {
		t.Helper()
		done, ok := b.allow()
		if !ok {
			t.Fatalf("rejected in state %v", b.State())
		}
		done(outcome)
	}
	send(errFailed)
	send(errFailed)
	send(nil) // a success in between resets the count
	send(errFailed)
	send(errFailed)
	if b.State() != BreakerClosed {
		t.Fatalf("opened after 2 consecutive failures: %v", b.State())
	}
	send(errFailed)
	if b.State() != BreakerOpen {
		t.Fatalf("state %v after 3 consecutive failures, want open", b.State())
	}
	if _, ok := b.allow(); ok {
		t.Fatal("open breaker let a request through")
	}
	if d := b.retryDelay(); d <= 0 || d > openFor {
		t.Errorf("retry delay %v while open, want within the open period %v", d, openFor)
	}
	began := time.Now()
	if err := b.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if time.Since(began) < openFor/2 {
		t.Errorf("waitReady returned after %v, before the open period ended", time.Since(began))
	}
	done, ok := b.allow()
	if !ok || b.State() != BreakerHalfOpen {
		t.Fatalf("after OpenFor: ok %v state %v, want a half-open probe", ok, b.State())
	}
	if _, ok := b.allow(); ok {
		t.Fatal("second request let through while the probe is in flight")
	}
	// waitReady blocks while the probe is in flight and returns when its
	// outcome changes the state.
	ready := make(chan error, 1)
	go func() { ready <- b.waitReady(ctx) }()
	done(errFailed) // probe fails: open again for a full period
	if b.State() != BreakerOpen {
		t.Fatalf("state %v after a failed probe, want open", b.State())
	}
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	done, ok = b.allow()
	if !ok {
		t.Fatal("no probe after the second open period")
	}
	done(errCanceled) // a probe abandoned on shutdown frees the slot
	if err := b.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	done, ok = b.allow()
	if !ok {
		t.Fatal("cancelled probe kept its slot")
	}
	done(nil)
	if b.State() != BreakerClosed {
		t.Fatalf("state %v after a successful probe, want closed", b.State())
	}
	mu.Lock()
	got := strings.Join(states, " ")
	mu.Unlock()
	if want := "open half-open open half-open closed"; got != want {
		t.Errorf("transitions %q, want %q", got, want)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	for range 3 {
		send(errFailed)
	}
	if err := b.waitReady(cctx); err == nil {
		t.Error("waitReady on an open breaker and a cancelled context returned nil")
	}
}

func TestJWTMinterReusesUntilNearExpiry(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	creds, err := newCredentials("svc", &routes.Credentials{Kind: credJWT, SecretEnv: "S", Issuer: "i", Audience: "a", TTL: routes.Duration(10 * time.Minute)},
		func(k string) (string, bool) { return "top-secret", k == "S" }, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	first, err := creds.authorization()
	if err != nil {
		t.Fatal(err)
	}
	clk.advance(7 * time.Minute)
	if again, _ := creds.authorization(); again != first {
		t.Error("token re-minted long before expiry")
	}
	clk.advance(2 * time.Minute) // within the last fifth of its life
	renewed, _ := creds.authorization()
	if renewed == first {
		t.Fatal("token not renewed near expiry")
	}
	c := verifyHS256(t, strings.TrimPrefix(renewed, "Bearer "), []byte("top-secret"))
	if c.Iss != "i" || c.Aud != "a" || c.Iat != clk.now().Unix() || c.Exp != clk.now().Add(10*time.Minute).Unix() {
		t.Errorf("claims %+v", c)
	}
}

func TestSampledIsDeterministicAndProportional(t *testing.T) {
	for _, rate := range []float64{0.01, 0.1, 0.5, 0.9} {
		kept := 0
		const n = 20000
		for i := range n {
			id := fmt.Sprintf("req-%d", i)
			first := sampled(id, rate)
			if again := sampled(id, rate); again != first {
				t.Fatal("not deterministic")
			}
			if first {
				kept++
			}
		}
		if got := float64(kept) / n; got < rate*0.9-0.005 || got > rate*1.1+0.005 {
			t.Errorf("rate %v kept %.4f", rate, got)
		}
	}
	if !sampled("x", 1) || sampled("x", 0) {
		t.Error("rate 1 must keep, rate 0 must drop")
	}
}

func TestWatermarksWait(t *testing.T) {
	w := newWatermarks(nil)
	t0 := time.Unix(5000, 0)
	w.set("k", t0)
	w.set("k", t0.Add(-time.Hour)) // never moves back
	if mark, stale, err := w.wait(context.Background(), "k", t0, time.Second); err != nil || stale || !mark.Equal(t0) {
		t.Fatalf("at the watermark: %v %v %v", mark, stale, err)
	}
	type result struct {
		mark  time.Time
		stale bool
	}
	done := make(chan result, 1)
	go func() {
		mark, stale, _ := w.wait(context.Background(), "k", t0.Add(time.Second), time.Minute)
		done <- result{mark, stale}
	}()
	waitFor := func(what string, f func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !f() {
			if time.Now().After(deadline) {
				t.Fatalf("not reached: %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor("waiter blocked", func() bool { return w.waiting.Load() == 1 })
	w.set("other", t0.Add(time.Hour))
	waitFor("waiter saw the other key's change", func() bool { return w.rewaits.Load() == 1 })
	w.set("k", t0.Add(500*time.Millisecond))
	// The waiter looked at a watermark short of its capture time and kept
	// waiting: a release here would have returned that watermark.
	waitFor("waiter saw the short watermark", func() bool { return w.rewaits.Load() == 2 })
	if w.waiting.Load() != 1 {
		t.Fatal("released before the watermark passed")
	}
	w.set("k", t0.Add(time.Second))
	select {
	case res := <-done:
		if res.stale || !res.mark.Equal(t0.Add(time.Second)) {
			t.Errorf("released with %+v, want the passing watermark, not stale", res)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("not released when the watermark passed")
	}
	if _, stale, _ := w.wait(context.Background(), "k", t0.Add(time.Hour), 20*time.Millisecond); !stale {
		t.Error("expired wait not stale")
	}
}

// Negative settings are rejected in one error naming every bad field; zero
// takes the default.
func TestConfigValidate(t *testing.T) {
	rf, err := routes.Parse("r.yaml", []byte("services:\n  - name: s\n    cube_url: http://127.0.0.1:1\n    routes:\n      - route: /a\n"))
	if err != nil {
		t.Fatal(err)
	}
	bad := Config{
		Routes: rf, Durable: "a.b", MaxInFlight: -1, MaxAckPending: -2, Concurrency: -3, Timeout: -time.Second,
		FreshnessWait: -time.Second, Breaker: BreakerConfig{Failures: -1, OpenFor: -time.Second, Probes: -1},
		MaxBodyBytes: -1, NakDelay: -time.Second, AckWait: -time.Second, CubeErrorAttempts: -1,
	}
	js := newHarness(t).js
	_, err = New(bad, Deps{JetStream: js})
	if err == nil {
		t.Fatal("negative settings accepted")
	}
	for _, field := range []string{"Durable", "MaxInFlight -1", "MaxAckPending -2", "Concurrency -3", "Timeout -1s", "FreshnessWait -1s",
		"Breaker.Failures -1", "Breaker.OpenFor -1s", "Breaker.Probes -1", "MaxBodyBytes -1", "NakDelay -1s", "AckWait -1s", "CubeErrorAttempts -1"} {
		if !strings.Contains(err.Error(), "Config."+field) {
			t.Errorf("error does not name %s:\n%v", field, err)
		}
	}
	r, err := New(Config{Routes: rf}, Deps{JetStream: js})
	if err != nil {
		t.Fatalf("zero config: %v", err)
	}
	if c := r.cfg; c.MaxInFlight != 256 || c.MaxAckPending != 1024 || c.Concurrency != 16 || c.Timeout != 5*time.Second ||
		c.Breaker.Failures != 5 || c.CubeErrorAttempts != 3 || c.Durable != DefaultDurable {
		t.Errorf("defaults not applied: %+v", c)
	}
}
