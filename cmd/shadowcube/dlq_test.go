package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/publisher"
	"github.com/heal7/shadowcube/schemas"
	"github.com/heal7/shadowcube/shadow"
)

const dlqTestRoutes = `
services:
  - name: saju
    cube_url: CUBE
    routes:
      - route: /api/saju/chart
        methods: [GET, POST]
`

// startShadow runs a shadow replayer whose results stream has the given
// settings; it stops when the returned function is called or the test ends.
func startShadow(t *testing.T, ctx context.Context, js jetstream.JetStream, results natsx.StreamSettings) func() {
	t.Helper()
	cube := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{}`)) }))
	t.Cleanup(cube.Close)
	rf, err := routes.Parse("routes.yaml", []byte(strings.ReplaceAll(dlqTestRoutes, "CUBE", cube.URL)))
	if err != nil {
		t.Fatal(err)
	}
	r, err := shadow.New(shadow.Config{Routes: rf, Results: results}, shadow.Deps{JetStream: js})
	if err != nil {
		t.Fatal(err)
	}
	runInBackground(t, ctx, r.Run, r.Close)
	testenv.WaitConsumer(t, ctx, js, schemas.StreamLegacyRequests, shadow.DurableName(shadow.DefaultDurable, "saju"))
	return func() { r.Close() }
}

// newCompareConsumer builds the compare stage on its own store database.
func newCompareConsumer(t *testing.T, ctx context.Context, js jetstream.JetStream) *comparator.Consumer {
	t.Helper()
	store, err := comparator.OpenStore(ctx, comparator.StoreConfig{DatabaseURL: testenv.Postgres(t).NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cmp, err := comparator.New(comparator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := comparator.NewConsumer(comparator.ConsumerConfig{Batch: 10, MaxWait: 50 * time.Millisecond},
		comparator.Deps{JetStream: js, Comparator: cmp, Store: store, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitDeadLetters waits until stage has n dead letters and returns them.
func waitDeadLetters(t *testing.T, ctx context.Context, js jetstream.JetStream, stage string, n int) []natsx.DeadLetterMsg {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var got []natsx.DeadLetterMsg
		err := natsx.ListDeadLetters(ctx, js, stage, func(m natsx.DeadLetterMsg) error { got = append(got, m); return nil })
		if err == nil && len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d dead letters after a minute, want %d (%v)", stage, len(got), n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dlqEnv(t *testing.T, n *testenv.NATS) {
	t.Setenv("SHADOWCUBE_NATS_URL", n.URL)
	t.Setenv("SHADOWCUBE_METRICS_ADDR", "")
}

// TestDLQShadowAndCompareCLI: an undecodable captured request (shadow) and
// an undecodable shadow result (compare) are dead-lettered as the one
// envelope, with their original subject, headers and payload; dlq list,
// show, replay and drop work on them per stage through the CLI, and before
// anything was dead-lettered dlq list is an empty list.
func TestDLQShadowAndCompareCLI(t *testing.T) {
	n := testenv.StartNATS(t)
	_, js := n.Connect(t)
	ctx := testenv.Context(t, 3*time.Minute)
	dlqEnv(t, n)

	code, out, errOut := runCLI(t, "dlq", "list")
	if code != 0 || strings.TrimSpace(out) != "SEQ  STAGE  REASON  FAILED AT  SOURCE  ERROR" || errOut != "" {
		t.Fatalf("dlq list before any dead letter: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "dlq", "show", "1")
	if code != 1 || !strings.Contains(errOut, "the DLQ is empty") || strings.Contains(errOut, "stream not found") {
		t.Fatalf("dlq show before any dead letter: exit %d\n%s\n%s", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "dlq", "list", "--stage", "tap")
	if code != 2 || !strings.Contains(errOut, `--stage "tap": want one of sync, shadow, compare`) {
		t.Fatalf("dlq list --stage tap: exit %d\n%s", code, errOut)
	}

	if err := publisher.EnsureStream(ctx, js, natsx.StreamSettings{}); err != nil {
		t.Fatal(err)
	}
	stopShadow := startShadow(t, ctx, js, natsx.StreamSettings{})
	reqSubj := schemas.RequestSubject("saju", "/api/saju/chart")
	bad := nats.NewMsg(reqSubj)
	bad.Data = []byte("not json")
	bad.Header.Set("X-Trace", "t-1")
	if _, err := js.PublishMsg(ctx, bad); err != nil {
		t.Fatal(err)
	}
	sh := waitDeadLetters(t, ctx, js, schemas.StageShadow, 1)[0]
	stopShadow() // the replay below must land in the stream, not be dead-lettered again

	cons := newCompareConsumer(t, ctx, js)
	runCtx, stopCompare := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cons.Run(runCtx) }()
	testenv.WaitConsumer(t, ctx, js, schemas.StreamShadowResults, "comparator")
	resSubj := schemas.ShadowResultSubject("saju", "/api/saju/chart")
	badRes := nats.NewMsg(resSubj)
	badRes.Data = []byte(`{"v":"1.0","oops":`)
	badRes.Header.Set(jetstream.MsgIDHeader, "res-1")
	if _, err := js.PublishMsg(ctx, badRes); err != nil {
		t.Fatal(err)
	}
	cm := waitDeadLetters(t, ctx, js, schemas.StageCompare, 1)[0]
	stopCompare()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		m                natsx.DeadLetterMsg
		stage, subj, hdr string
		data             string
	}{{sh, "shadow", reqSubj, "X-Trace", "not json"}, {cm, "compare", resSubj, jetstream.MsgIDHeader, `{"v":"1.0","oops":`}} {
		raw, err := js.Stream(ctx, schemas.StreamDLQ)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := raw.GetMsg(ctx, c.m.Seq)
		if err != nil {
			t.Fatal(err)
		}
		d, err := schemas.DecodeDeadLetter(stored.Data)
		if err != nil || stored.Subject != "dlq."+c.stage {
			t.Fatalf("%s dead letter on %s does not decode as the envelope: %v\n%s", c.stage, stored.Subject, err, stored.Data)
		}
		if d.Stage != c.stage || d.Reason != schemas.ReasonUndecodable || d.Subject != c.subj || string(d.Payload) != c.data ||
			len(d.Headers[c.hdr]) != 1 || d.Error == "" || d.FailedAt.IsZero() || d.StreamSeq != 1 {
			t.Fatalf("%s dead letter = %+v", c.stage, d)
		}
	}

	code, out, errOut = runCLI(t, "dlq", "list")
	if code != 0 || len(strings.Split(strings.TrimSpace(out), "\n")) != 3 || !strings.Contains(out, reqSubj) || !strings.Contains(out, resSubj) {
		t.Fatalf("dlq list: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "dlq", "list", "--stage", "compare", "--format", "json")
	var listed natsx.DeadLetterMsg
	if code != 0 || strings.Count(out, "\n") != 1 || json.Unmarshal([]byte(out), &listed) != nil || listed.Seq != cm.Seq || listed.Entry.Stage != "compare" {
		t.Fatalf("dlq list --stage compare: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "dlq", "list", "--stage", "sync")
	if code != 0 || strings.Count(out, "\n") != 1 {
		t.Fatalf("dlq list --stage sync: exit %d\n%s", code, out)
	}
	seqSh, seqCm := itoa(sh.Seq), itoa(cm.Seq)
	code, out, _ = runCLI(t, "dlq", "show", seqSh)
	var shown natsx.DeadLetterMsg
	if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || string(shown.Entry.Payload) != "not json" || shown.Entry.Headers["X-Trace"][0] != "t-1" {
		t.Fatalf("dlq show %s: exit %d\n%s", seqSh, code, out)
	}
	code, _, errOut = runCLI(t, "dlq", "show", "--stage", "compare", seqSh)
	if code != 1 || !strings.Contains(errOut, "not a compare entry") {
		t.Fatalf("dlq show --stage compare of a shadow entry: exit %d\n%s", code, errOut)
	}

	// replay: the original message goes back on its subject with its headers
	before, err := js.Stream(ctx, schemas.StreamLegacyRequests)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, "dlq", "replay", "--stage", "shadow", "--all")
	if code != 0 || !strings.Contains(out, "replayed "+seqSh+": shadow entry republished to "+reqSubj) {
		t.Fatalf("dlq replay --stage shadow --all: exit %d\n%s\n%s", code, out, errOut)
	}
	again, err := before.GetMsg(ctx, 2)
	if err != nil || again.Subject != reqSubj || string(again.Data) != "not json" || again.Header.Get("X-Trace") != "t-1" {
		t.Fatalf("replayed request: %v %+v", err, again)
	}
	// the compare original carries a Nats-Msg-Id still inside the stream's
	// de-duplication window: the replay says so and keeps the entry
	code, _, errOut = runCLI(t, "dlq", "replay", seqCm)
	if code != 1 || !strings.Contains(errOut, "duplicate") {
		t.Fatalf("dlq replay of a duplicate: exit %d\n%s", code, errOut)
	}
	code, out, errOut = runCLI(t, "dlq", "drop", "--stage", "compare", seqCm)
	if code != 0 || out != "dropped "+seqCm+"\n" {
		t.Fatalf("dlq drop: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "dlq", "list")
	if code != 0 || strings.Count(out, "\n") != 1 {
		t.Fatalf("dlq list after replay and drop: exit %d\n%s", code, out)
	}
}

func itoa(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestStreamOwnerKeepsLimits: only a stream's writer sets its limits.
// shadow sets SHADOW_RESULTS' max age, an operator set DLQ's and the tap
// LEGACY_REQUESTS'; starting compare (a reader of SHADOW_RESULTS and a
// writer of DLQ with no settings of its own) and shadow changes none.
func TestStreamOwnerKeepsLimits(t *testing.T) {
	n := testenv.StartNATS(t)
	_, js := n.Connect(t)
	ctx := testenv.Context(t, 2*time.Minute)
	if err := publisher.EnsureStream(ctx, js, natsx.StreamSettings{MaxAge: 2 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	dlqCfg, _ := natsx.StreamConfig(schemas.StreamDLQ, natsx.StreamSettings{MaxAge: 3 * time.Hour})
	if _, err := natsx.EnsureStream(ctx, js, dlqCfg); err != nil {
		t.Fatal(err)
	}
	startShadow(t, ctx, js, natsx.StreamSettings{MaxAge: time.Hour, MaxBytes: 1 << 30})
	cons := newCompareConsumer(t, ctx, js)
	runInBackground(t, ctx, cons.Run, cons.Close)
	testenv.WaitConsumer(t, ctx, js, schemas.StreamShadowResults, "comparator")
	for name, want := range map[string]time.Duration{schemas.StreamShadowResults: time.Hour, schemas.StreamDLQ: 3 * time.Hour, schemas.StreamLegacyRequests: 2 * time.Hour} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.MaxAge != want {
			t.Errorf("stream %s: max age %s after compare started, want %s (set by its owner)", name, info.Config.MaxAge, want)
		}
		if name == schemas.StreamShadowResults && info.Config.MaxBytes != 1<<30 {
			t.Errorf("stream %s: max bytes %d after compare started, want %d", name, info.Config.MaxBytes, 1<<30)
		}
	}
}

// TestDLQSequenceArgs: a sequence number below 1 is a usage error with the
// allowed range, also when the flag parser would read "-1" as flags.
func TestDLQSequenceArgs(t *testing.T) {
	for _, args := range [][]string{{"show", "-1"}, {"drop", "0"}, {"replay", "-3"}, {"drop", "1", "-2"}} {
		code, _, errOut := runCLI(t, append([]string{"dlq"}, args...)...)
		if code != 2 || !strings.Contains(errOut, "must be at least 1") {
			t.Errorf("dlq %v: exit %d\n%s", args, code, errOut)
		}
	}
	code, _, errOut := runCLI(t, "dlq", "drop", "x")
	if code != 2 || !strings.Contains(errOut, `"x" is not a DLQ sequence number`) {
		t.Errorf("dlq drop x: exit %d\n%s", code, errOut)
	}
}
