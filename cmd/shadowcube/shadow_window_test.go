package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

// TestCLIShadowWindowFused: `shadowcube shadow --since --until --pace max
// --compare` (the built binary) replays exactly the window's requests,
// stores a verdict per pair in the mismatch store itself, still publishes
// every result to SHADOW_RESULTS, prints the summary and exits 0; the
// window flags without --since are a usage error.
func TestCLIShadowWindowFused(t *testing.T) {
	ctx := testenv.Context(t, 5*time.Minute)
	storeURL := testenv.Postgres(t).NewDatabase(t)
	n := testenv.StartNATS(t)
	_, js := n.Connect(t)
	cfg, err := natsx.StreamConfig(schemas.StreamLegacyRequests, natsx.StreamSettings{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := natsx.EnsureStream(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	cube := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/3") {
			fmt.Fprint(w, `{"n":-1}`) // one mismatch
			return
		}
		fmt.Fprintf(w, `{"n":%q}`, r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:])
	}))
	defer cube.Close()
	routesFile := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(routesFile, []byte(fmt.Sprintf(`
services:
  - name: svc
    cube_url: %s
    routes:
      - route: /r/{id}
        compare: {kind: json}
`, cube.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	publish := func(prefix string, count int) {
		for i := range count {
			ev := schemas.RequestEvent{V: schemas.Version, ID: fmt.Sprintf("%s-%d", prefix, i), Service: "svc", Route: "/r/{id}",
				Method: "GET", Path: fmt.Sprintf("/r/%d", i), CapturedAt: time.Now().UTC(), Source: schemas.SourceTap,
				UserKey: "hmac-sha256:u", Response: schemas.HTTPResponse{Status: 200, Body: []byte(fmt.Sprintf(`{"n":"%d"}`, i))}}
			data, _ := json.Marshal(ev)
			if _, err := js.Publish(ctx, schemas.RequestSubject(ev.Service, ev.Route), data, jetstream.WithMsgID(ev.ID)); err != nil {
				t.Fatal(err)
			}
		}
	}
	since := time.Now().UTC()
	for !time.Now().After(since) {
		time.Sleep(time.Millisecond)
	}
	publish("in", 10)
	until := time.Now().UTC()
	for !time.Now().After(until) {
		time.Sleep(time.Millisecond)
	}
	publish("after", 3)

	env := []string{"SHADOWCUBE_NATS_URL=" + n.URL, "SHADOWCUBE_METRICS_ADDR=", "SHADOWCUBE_STORE_DATABASE_URL=" + storeURL}
	out, stderr, code := runBinary(t, env, "shadow", "--routes", routesFile, "--compare", "--pace", "max", "--skew", "1ms",
		"--since", since.Format(time.RFC3339Nano), "--until", until.Format(time.RFC3339Nano))
	if code != 0 {
		t.Fatalf("shadow --since: exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	if !strings.Contains(out, "replayed 10,") || !strings.Contains(out, "cube errors 0") || !strings.Contains(out, "asked max") {
		t.Errorf("summary: %s", out)
	}
	db := testenv.Connect(t, storeURL)
	var pairs, mismatches int
	if err := db.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE verdict = 'mismatch') FROM shadowcube_compare.pairs WHERE request_id LIKE 'in-%'`).Scan(&pairs, &mismatches); err != nil {
		t.Fatal(err)
	}
	var all int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM shadowcube_compare.pairs`).Scan(&all); err != nil {
		t.Fatal(err)
	}
	if pairs != 10 || all != 10 || mismatches != 1 {
		t.Errorf("store holds %d pairs (%d of the window, %d mismatches); want the window's 10, 1 mismatch", all, pairs, mismatches)
	}
	st, err := js.Stream(ctx, schemas.StreamShadowResults)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().State.Msgs; got != 10 {
		t.Errorf("%d results in %s, want 10", got, schemas.StreamShadowResults)
	}

	_, stderr, code = runBinary(t, env, "shadow", "--routes", routesFile, "--pace", "10x")
	if code == 0 || !strings.Contains(stderr, "--pace needs --since") {
		t.Errorf("--pace without --since: exit %d, stderr %s", code, stderr)
	}
	_, stderr, code = runBinary(t, env, "shadow", "--routes", routesFile, "--since", since.Format(time.RFC3339), "--pace", "fast")
	if code == 0 || !strings.Contains(stderr, `pace "fast"`) {
		t.Errorf("--pace fast: exit %d, stderr %s", code, stderr)
	}
}
