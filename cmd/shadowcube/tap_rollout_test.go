package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/publisher"
)

// TestTapCommandReportsCubeInFlight runs `shadowcube tap` with a cube and
// the flag at 100%: while a rolled-out user's request is held by the cube,
// the tap's KV report says one request at the cube under 100%; once the
// cube answers, zero (what `rollout rollback` waits for).
func TestTapCommandReportsCubeInFlight(t *testing.T) {
	n := testenv.StartNATS(t)
	_, js := n.Connect(t)
	ctx := testenv.Context(t, 2*time.Minute)
	flags, err := publisher.OpenFlags(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := flags.Set(ctx, "saju", 100); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) })
	cube := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		fmt.Fprint(w, "cube")
	}))
	defer cube.Close()
	legacy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "legacy") }))
	defer legacy.Close()
	listen := freeAddr(t)
	for k, v := range map[string]string{
		"SHADOWCUBE_NATS_URL": n.URL, "SHADOWCUBE_TAP_UPSTREAM": legacy.URL, "SHADOWCUBE_TAP_CUBE_URL": cube.URL,
		"SHADOWCUBE_TAP_SERVICE": "saju", "SHADOWCUBE_USER_KEY_SECRET": "tap-rollout-test-secret-0123456789abcdef",
		"SHADOWCUBE_TAP_LISTEN": listen, "SHADOWCUBE_METRICS_ADDR": "",
	} {
		t.Setenv(k, v)
	}
	rctx, cancel := context.WithCancel(context.Background())
	var out, errb testenv.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); run(rctx, []string{"tap"}, &out, &errb) }()
	defer func() { cancel(); wg.Wait() }()
	report := func() publisher.TapReport {
		reps, err := publisher.TapReports(ctx, flags.KV(), "saju")
		if err != nil || len(reps) != 1 {
			return publisher.TapReport{Percent: -1}
		}
		return reps[0]
	}
	waitUntil(t, 30*time.Second, func() bool { return report().Percent == 100 },
		func() string { return fmt.Sprintf("no tap report at 100%%: %+v; log:\n%s", report(), errb.String()) })
	done := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+listen+"/api/saju/chart/1", nil)
		req.Header.Set("X-User-Id", "user-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- err.Error()
			return
		}
		defer resp.Body.Close()
		var b strings.Builder
		fmt.Fprint(&b, resp.StatusCode)
		done <- b.String()
	}()
	waitUntil(t, 30*time.Second, func() bool { return report().CubeInFlight == 1 },
		func() string { return fmt.Sprintf("no request at the cube reported: %+v", report()) })
	once.Do(func() { close(release) })
	if got := <-done; got != "200" {
		t.Fatalf("request through the tap: %s", got)
	}
	waitUntil(t, 30*time.Second, func() bool { r := report(); return r.CubeInFlight == 0 && r.Percent == 100 },
		func() string { return fmt.Sprintf("in-flight count not back to 0: %+v", report()) })
}
