package publisher

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

const testSecret = "test-secret-do-not-use-0123456789abcdef"

const testRoutes = `
services:
  - name: saju
    cube_url: http://127.0.0.1:1
    routes:
      - route: /api/saju/chart/{id}
        methods: [GET]
      - route: /api/saju/chart
        methods: [POST]
      - route: /sampled
        sample: 0.3
      - route: /private
        capture: false
`

func testService(tb testing.TB) *routes.Service {
	tb.Helper()
	f, err := routes.Parse("routes.yaml", []byte(testRoutes))
	if err != nil {
		tb.Fatal(err)
	}
	s, _ := f.Service("saju")
	return s
}

// env is a NATS server with the LEGACY_REQUESTS stream and a capturer.
type env struct {
	nats *testenv.NATS
	nc   *nats.Conn
	js   jetstream.JetStream
	c    *Capturer
}

func newEnv(tb testing.TB, cfg Config) *env {
	tb.Helper()
	return newEnvLog(tb, cfg, nil)
}

// newEnvLog is newEnv with the capturer logging to log.
func newEnvLog(tb testing.TB, cfg Config, log *slog.Logger) *env {
	tb.Helper()
	n := testenv.StartNATS(tb)
	nc, js := n.Connect(tb)
	ctx := testenv.Context(tb, 30*time.Second)
	if err := EnsureStream(ctx, js, natsx.StreamSettings{}); err != nil {
		tb.Fatal(err)
	}
	if cfg.Service == "" {
		cfg.Service = "saju"
	}
	if cfg.Privacy.Secret == nil {
		cfg.Privacy.Secret = []byte(testSecret)
	}
	c, err := New(cfg, Deps{Conn: nc, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	runCapturer(tb, c)
	return &env{nats: n, nc: nc, js: js, c: c}
}

// runCapturer runs c until the test ends; then Close stops it and Run must
// have returned nil.
func runCapturer(tb testing.TB, c *Capturer) {
	tb.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	tb.Cleanup(func() {
		c.Close()
		// A test that closed c before Run began gets "run: closed".
		if err := <-done; err != nil && !strings.Contains(err.Error(), "run: closed") {
			tb.Errorf("capture run: %v", err)
		}
	})
}

// slogText is a debug-level text logger writing to w.
func slogText(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitFor polls cond until it holds or timeout passes (then fails with what()).
func waitFor(tb testing.TB, timeout time.Duration, cond func() bool, what func() string) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s: %s", timeout, what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) flush(tb testing.TB) {
	tb.Helper()
	if err := e.c.Flush(testenv.Context(tb, 20*time.Second)); err != nil {
		tb.Fatal(err)
	}
}

// messages reads every message of the stream.
func messages(tb testing.TB, js jetstream.JetStream) []jetstream.Msg {
	tb.Helper()
	ctx := testenv.Context(tb, 30*time.Second)
	s, err := js.Stream(ctx, schemas.StreamLegacyRequests)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	want := int(info.State.Msgs)
	if want == 0 {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	var out []jetstream.Msg
	for len(out) < want {
		batch, err := cons.Fetch(min(want-len(out), 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			tb.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			out = append(out, m)
			n++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			tb.Fatal(err)
		}
		if n == 0 {
			tb.Fatalf("stream has %d messages, read %d", want, len(out))
		}
	}
	return out
}

// requestSchema compiles schemas/request_event.schema.json.
func requestSchema(tb testing.TB) *jsonschema.Schema {
	tb.Helper()
	f, err := schemas.Files.Open("request_event.schema.json")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		tb.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	const id = "https://github.com/heal7/shadowcube/schemas/request_event.schema.json"
	if err := c.AddResource(id, doc); err != nil {
		tb.Fatal(err)
	}
	s, err := c.Compile(id)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// events reads every event of the stream, checking each against the JSON
// Schema, the Go decoder, its subject and its Nats-Msg-Id.
func events(tb testing.TB, js jetstream.JetStream) []schemas.RequestEvent {
	tb.Helper()
	schema := requestSchema(tb)
	var out []schemas.RequestEvent
	for _, m := range messages(tb, js) {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(m.Data()))
		if err != nil {
			tb.Fatalf("message on %s: %v", m.Subject(), err)
		}
		if err := schema.Validate(inst); err != nil {
			tb.Fatalf("message on %s does not validate against request_event.schema.json: %v\n%s", m.Subject(), err, m.Data())
		}
		ev, err := schemas.DecodeRequestEvent(m.Data())
		if err != nil {
			tb.Fatalf("message on %s: %v", m.Subject(), err)
		}
		if want := schemas.RequestSubject(ev.Service, ev.Route); m.Subject() != want {
			tb.Fatalf("event %s on subject %s, want %s", ev.ID, m.Subject(), want)
		}
		if id := m.Headers().Get(jetstream.MsgIDHeader); id != ev.ID {
			tb.Fatalf("Nats-Msg-Id %q, want the event id %q", id, ev.ID)
		}
		out = append(out, ev)
	}
	return out
}

func counterValue(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return -1
}
