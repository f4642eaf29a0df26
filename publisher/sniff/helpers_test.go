package sniff

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/publisher"
	"github.com/heal7/shadowcube/schemas"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

const testSecret = "test-secret-do-not-use-0123456789abcdef"

// sink is a NATS server with the LEGACY_REQUESTS stream and a capturer
// publishing into it.
type sink struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	c   *publisher.Capturer
	reg *prometheus.Registry
}

func newSink(tb testing.TB, cfg publisher.Config) *sink {
	tb.Helper()
	n := testenv.StartNATS(tb)
	nc, js := n.Connect(tb)
	if err := publisher.EnsureStream(testenv.Context(tb, 30*time.Second), js, natsx.StreamSettings{}); err != nil {
		tb.Fatal(err)
	}
	if cfg.Service == "" {
		cfg.Service = "saju"
	}
	cfg.Privacy.Secret = []byte(testSecret)
	reg := prometheus.NewRegistry()
	c, err := publisher.New(cfg, publisher.Deps{Conn: nc, Registerer: reg})
	if err != nil {
		tb.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(context.Background()) }()
	tb.Cleanup(func() {
		c.Close()
		// a test that closed c before Run began gets "run: closed"
		if err := <-runErr; err != nil && !strings.Contains(err.Error(), "run: closed") {
			tb.Error(err)
		}
	})
	return &sink{nc: nc, js: js, c: c, reg: reg}
}

func (s *sink) flush(tb testing.TB) {
	tb.Helper()
	if err := s.c.Flush(testenv.Context(tb, 30*time.Second)); err != nil {
		tb.Fatal(err)
	}
}

// events reads every event of the stream (decoded, so checked against the
// decoder).
func (s *sink) events(tb testing.TB) []schemas.RequestEvent {
	tb.Helper()
	ctx := testenv.Context(tb, 30*time.Second)
	st, err := s.js.Stream(ctx, schemas.StreamLegacyRequests)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	want := int(info.State.Msgs)
	if want == 0 {
		return nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	var out []schemas.RequestEvent
	for len(out) < want {
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			tb.Fatalf("stream has %d messages, read %d: %v", want, len(out), err)
		}
		ev, err := schemas.DecodeRequestEvent(m.Data())
		if err != nil {
			tb.Fatalf("message on %s: %v", m.Subject(), err)
		}
		if id := m.Headers().Get(jetstream.MsgIDHeader); id != ev.ID {
			tb.Fatalf("Nats-Msg-Id %q, want the event id %q", id, ev.ID)
		}
		if subj := schemas.RequestSubject(ev.Service, ev.Route); m.Subject() != subj {
			tb.Fatalf("event %s on subject %s, want %s", ev.ID, m.Subject(), subj)
		}
		out = append(out, ev)
	}
	return out
}

// waitFor polls cond until it holds or timeout passes.
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

// byRequestID indexes events by their X-Request-Id header.
func byRequestID(tb testing.TB, evs []schemas.RequestEvent) map[string]schemas.RequestEvent {
	tb.Helper()
	m := map[string]schemas.RequestEvent{}
	for _, ev := range evs {
		id := ev.Headers.Get("X-Request-Id")
		if _, dup := m[id]; dup || id == "" {
			tb.Fatalf("event %s: X-Request-Id %q missing or seen twice", ev.ID, id)
		}
		m[id] = ev
	}
	return m
}
