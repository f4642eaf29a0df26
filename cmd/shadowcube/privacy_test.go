package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/internal/redact"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/internal/wiring"
	"github.com/heal7/shadowcube/publisher"
	"github.com/heal7/shadowcube/schemas"
	"github.com/heal7/shadowcube/shadow"
)

// streamTexts decodes every message of a stream into the text it discloses
// (bodies travel base64-encoded: the raw message would hide them).
func streamTexts(t *testing.T, js jetstream.JetStream, stream string, decode func([]byte) (string, error)) []string {
	t.Helper()
	ctx := testenv.Context(t, 30*time.Second)
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		text, err := decode(m.Data)
		if err != nil {
			t.Fatalf("%s seq %d: %v", stream, seq, err)
		}
		out = append(out, fmt.Sprintf("%s\n%v\n%s", m.Data, m.Header, text))
	}
	return out
}

func mustStreamSettings(t *testing.T, c *wiring.CaptureEnv) publisher.StreamSettings {
	t.Helper()
	s, err := c.StreamSettings()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func slogDebug(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func responseText(r *schemas.HTTPResponse) string {
	if r == nil {
		return ""
	}
	return fmt.Sprintf("%v\n%s", r.Headers, r.Body)
}

// TestPrivacyScanAcrossStages configures the tap and the shadow replayer
// from the same SHADOWCUBE_* variables, sends requests carrying secrets in
// headers, cookies, query strings, form and multi-value JSON bodies through
// the tap, lets shadow replay them to a cube that answers with secrets of
// its own (Set-Cookie, a token header, a Location with a token, an NDJSON
// answer whose second value holds a redacted field) and echoes what it
// received, lets the comparator judge the pairs, then scans every event of
// LEGACY_REQUESTS and SHADOW_RESULTS (decoded), every row of the mismatch
// store's pairs table and the components' log. Without the shadow-side
// sanitising, all 4 results and all 4 stored pairs held the cube's
// Set-Cookie, token header, Location token and redacted NDJSON field.
func TestPrivacyScanAcrossStages(t *testing.T) {
	legacy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Set-Cookie", "sid=SECRET-LEGACY-COOKIE")
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprint(w, `{"ok":1}`+"\n"+`{"token":"SECRET-LEGACY-NDJSON"}`+"\n")
	}))
	defer legacy.Close()
	cube := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Set-Cookie", "sid=SECRET-CUBE-COOKIE")
		w.Header().Set("X-Session-Token", "SECRET-CUBE-HEADER")
		w.Header().Set("Location", "/next?page=1&access_token=SECRET-CUBE-LOCATION")
		w.Header().Set("Content-Type", "application/x-ndjson")
		// What the replay carried, in clear: any secret that reached the cube shows up here.
		fmt.Fprintf(w, "{\"ok\":1,\"echo\":%q}\n{\"token\":\"SECRET-CUBE-NDJSON\"}\n", fmt.Sprint(r.URL.RawQuery, r.Header, string(body)))
	}))
	defer cube.Close()

	dir := t.TempDir()
	routesFile := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(routesFile, []byte(fmt.Sprintf(`
services:
  - name: saju
    cube_url: %s
    routes:
      - route: /pay
        methods: [POST]
        replay: always
`, cube.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"SHADOWCUBE_USER_KEY_SECRET":   "privacy-scan-secret-0123456789abcdef",
		"SHADOWCUBE_TAP_SERVICE":       "saju",
		"SHADOWCUBE_ROUTES_FILE":       routesFile,
		"SHADOWCUBE_TAP_REDACT_PATHS":  "$.token,$.password,$.card.number",
		"SHADOWCUBE_TAP_REDACT_PARAMS": "ticket",
		"SHADOWCUBE_TAP_STRIP_HEADERS": "X-Internal",
	} {
		t.Setenv(k, v)
	}
	var ce wiring.CaptureEnv
	if err := process.Load(&ce); err != nil {
		t.Fatal(err)
	}
	cfg, rf, err := ce.CapturerConfig()
	if err != nil {
		t.Fatal(err)
	}
	var se wiring.ShadowEnv
	if err := process.Load(&se); err != nil {
		t.Fatal(err)
	}
	rules, err := redact.New(se.Env.Config())
	if err != nil {
		t.Fatal(err)
	}

	n := testenv.StartNATS(t)
	nc, js := n.Connect(t)
	ctx := testenv.Context(t, 2*time.Minute)
	if err := publisher.EnsureStream(ctx, js, mustStreamSettings(t, &ce)); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.Buffer{}
	log := slogDebug(logs)
	c, err := publisher.New(cfg, publisher.Deps{Conn: nc, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	runInBackground(t, context.WithoutCancel(ctx), c.Run, c.Close)
	tap, err := publisher.NewTap(c, publisher.TapConfig{Upstream: legacy.URL, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	srv := httptest.NewServer(tap)
	defer srv.Close()
	rep, err := shadow.New(shadow.Config{Routes: rf, Redact: rules, LookupEnv: os.LookupEnv}, shadow.Deps{JetStream: js, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	runInBackground(t, ctx, rep.Run, rep.Close)

	type req struct{ query, ctype, body string }
	reqs := []req{
		{"page=2&access_token=SECRET-QUERY&ticket=SECRET-TICKET", "application/json", `{"note":"ok"}`},
		{"", "application/x-www-form-urlencoded", "user=kim&password=SECRET-FORM&note=ok"},
		{"", "application/x-ndjson", `{"note":"ok"}` + "\n" + `{"password":"SECRET-NDJSON"}` + "\n"},
		{"", "", `{"note":"ok"}{"card":{"number":"SECRET-CARD"}}`},
	}
	for i, r := range reqs {
		u := srv.URL + "/pay"
		if r.query != "" {
			u += "?" + r.query
		}
		hr, _ := http.NewRequest("POST", u, strings.NewReader(r.body))
		if r.ctype != "" {
			hr.Header.Set("Content-Type", r.ctype)
		}
		hr.Header.Set("X-User-Id", fmt.Sprintf("RAW-USER-%d", i))
		hr.Header.Set("Authorization", "Bearer SECRET-BEARER")
		hr.Header.Set("Cookie", "sid=SECRET-COOKIE")
		hr.Header.Set("X-Csrf-Token", "SECRET-CSRF")
		hr.Header.Set("X-Internal", "SECRET-INTERNAL")
		hr.Header.Set("X-Truth-Label", "fire")
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var results []string
	decodeResult := func(b []byte) (string, error) {
		res, err := schemas.DecodeShadowResult(b)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s\n%v\n%s\n%s\n%s\n%s", res.Request.Query, res.Request.Headers, res.Request.Body,
			responseText(&res.Legacy), responseText(res.Cube), responseText(res.Secondary)), nil
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		if s, err := js.Stream(ctx, schemas.StreamShadowResults); err == nil {
			results = streamTexts(t, js, schemas.StreamShadowResults, decodeResult)
			if len(results) >= len(reqs) {
				break
			}
			_ = s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d shadow results of %d requests; log:\n%s", len(results), len(reqs), logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	captures := streamTexts(t, js, schemas.StreamLegacyRequests, func(b []byte) (string, error) {
		ev, err := schemas.DecodeRequestEvent(b)
		return fmt.Sprintf("%s\n%v\n%s\n%s", ev.Query, ev.Headers, ev.Body, responseText(&ev.Response)), err
	})
	if len(captures) != len(reqs) {
		t.Fatalf("%d captures, want %d", len(captures), len(reqs))
	}
	echoed := 0
	for _, text := range append(captures, results...) {
		if strings.Contains(text, "SECRET-") || strings.Contains(text, "RAW-USER") {
			t.Errorf("a stream discloses a planted secret:\n%s", text)
		}
		if strings.Contains(text, "echo") {
			echoed++
		}
	}
	if echoed != len(reqs) {
		t.Errorf("%d results carry the cube's echo, want %d (the scan must see what the cube received)", echoed, len(reqs))
	}
	// The comparator judges the pairs into the mismatch store: its diffs
	// come from the sanitised results only.
	pg := testenv.Postgres(t)
	storeURL := pg.NewDatabase(t)
	store, err := comparator.OpenStore(ctx, comparator.StoreConfig{DatabaseURL: storeURL})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cmpr, err := comparator.New(comparator.Config{Routes: wiring.RouteRules(rf)})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := comparator.NewConsumer(comparator.ConsumerConfig{},
		comparator.Deps{JetStream: js, Comparator: cmpr, Store: store, Logger: log, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	cctx, stopCompare := context.WithCancel(ctx)
	compareDone := make(chan error, 1)
	go func() { compareDone <- cons.Run(cctx) }()
	db := testenv.Connect(t, storeURL)
	var rows []string
	deadline = time.Now().Add(90 * time.Second)
	for {
		rows = rows[:0]
		r, err := db.Query(ctx, "SELECT row_to_json(p)::text FROM "+store.Schema()+".pairs p")
		if err == nil {
			for r.Next() {
				var s string
				if r.Scan(&s) == nil {
					rows = append(rows, s)
				}
			}
			r.Close()
		}
		if len(rows) >= len(reqs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pairs in the mismatch store, want %d (err %v); log:\n%s", len(rows), len(reqs), err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopCompare()
	<-compareDone
	diffs := 0
	for _, row := range rows {
		if strings.Contains(row, "SECRET-") || strings.Contains(row, "RAW-USER") {
			t.Errorf("the mismatch store discloses a planted secret:\n%s", row)
		}
		if strings.Contains(row, "echo") {
			diffs++
		}
	}
	if diffs == 0 {
		t.Errorf("no stored pair shows the cube's differing answer: the store scan saw no diff:\n%s", strings.Join(rows, "\n"))
	}
	if strings.Contains(logs.String(), "SECRET-") || strings.Contains(logs.String(), "RAW-USER") {
		t.Errorf("the log discloses a planted secret:\n%s", logs.String())
	}
}
