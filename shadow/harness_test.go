package shadow

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

func TestMain(m *testing.M) {
	code := testenv.Run(m)
	if code == 0 {
		if err := goleak.Find(goleakOpts...); err != nil {
			fmt.Fprintf(os.Stderr, "goroutine leak after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

var goleakOpts = []goleak.Option{
	// net/http keeps idle client connections of other transports (httptest
	// servers' own clients) for a while; the NATS server's global timers
	// and the klauspost/compress pools are process-wide, not ours.
	goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	goleak.IgnoreTopFunction("time.Sleep"),
	goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine.func1"),
}

// harness is one embedded JetStream server plus helpers to feed captured
// requests and read shadow results.
type harness struct {
	t    *testing.T
	nats *testenv.NATS
	js   jetstream.JetStream
	ctx  context.Context
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	n := testenv.StartNATS(t)
	_, js := n.Connect(t)
	h := &harness{t: t, nats: n, js: js, ctx: testenv.Context(t, 2*time.Minute)}
	cfg, err := natsx.StreamConfig(schemas.StreamLegacyRequests, natsx.StreamSettings{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := natsx.EnsureStream(h.ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	return h
}

// routes parses a routes file; "{{cube}}" style placeholders are replaced
// by the given pairs.
func (h *harness) routes(yaml string, repl ...string) *routes.File {
	h.t.Helper()
	f, err := routes.Parse("routes.yaml", []byte(strings.NewReplacer(repl...).Replace(yaml)))
	if err != nil {
		h.t.Fatalf("routes: %v", err)
	}
	return f
}

// start builds and starts a replayer; it is closed when the test ends.
func (h *harness) start(cfg Config) (*Replayer, *prometheus.Registry) {
	h.t.Helper()
	reg := prometheus.NewRegistry()
	if cfg.NakDelay == 0 {
		cfg.NakDelay = 100 * time.Millisecond
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	r, err := New(cfg, Deps{JetStream: h.js, Logger: log, Registerer: reg})
	if err != nil {
		h.t.Fatalf("new replayer: %v", err)
	}
	if err := r.start(h.ctx); err != nil { // what Run does first: returns once consuming
		h.t.Fatalf("start replayer: %v", err)
	}
	h.t.Cleanup(func() { r.Close() })
	return r, reg
}

func event(id, service, route, method, path string) schemas.RequestEvent {
	return schemas.RequestEvent{
		V: schemas.Version, ID: id, Service: service, Route: route, Method: method, Path: path,
		CapturedAt: time.Now().UTC(), Source: schemas.SourceTap,
		Headers:  map[string][]string{"Accept": {"application/json"}},
		Response: schemas.HTTPResponse{Status: 200, Body: []byte(`{"legacy":true}`), Latency: 3 * time.Millisecond},
	}
}

func (h *harness) publish(evs ...schemas.RequestEvent) {
	h.t.Helper()
	for _, ev := range evs {
		data, err := json.Marshal(ev)
		if err != nil {
			h.t.Fatal(err)
		}
		if _, err := h.js.Publish(h.ctx, schemas.RequestSubject(ev.Service, ev.Route), data, jetstream.WithMsgID(ev.ID)); err != nil {
			h.t.Fatalf("publish request %s: %v", ev.ID, err)
		}
	}
}

// resultCount is the number of messages in SHADOW_RESULTS (0 if it does not exist).
func (h *harness) resultCount() uint64 {
	s, err := h.js.Stream(h.ctx, schemas.StreamShadowResults)
	if err != nil {
		return 0
	}
	info, err := s.Info(h.ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// results waits until SHADOW_RESULTS holds n messages and returns them all,
// keyed by request id, with the Nats-Msg-Id of each.
func (h *harness) results(n int) map[string]schemas.ShadowResult {
	h.t.Helper()
	eventually(h.t, 30*time.Second, func() error {
		if c := h.resultCount(); c < uint64(n) {
			return fmt.Errorf("%d of %d results stored", c, n)
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
	out := map[string]schemas.ShadowResult{}
	total := int(h.resultCount())
	for len(out) < total {
		batch, err := c.Fetch(total-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			h.t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			res, err := schemas.DecodeShadowResult(m.Data())
			if err != nil {
				h.t.Fatalf("stored result does not decode: %v", err)
			}
			if id := m.Headers().Get(jetstream.MsgIDHeader); id != res.RequestID {
				h.t.Errorf("result %s stored with Nats-Msg-Id %q", res.RequestID, id)
			}
			if _, dup := out[res.RequestID]; dup {
				h.t.Errorf("result %s stored twice", res.RequestID)
			}
			out[res.RequestID] = res
		}
		if got == 0 {
			h.t.Fatalf("read %d of %d results", len(out), total)
		}
	}
	return out
}

// settled waits until every consumer on LEGACY_REQUESTS has no pending and
// no unacknowledged message.
func (h *harness) settled() {
	h.t.Helper()
	eventually(h.t, 30*time.Second, func() error {
		s, err := h.js.Stream(h.ctx, schemas.StreamLegacyRequests)
		if err != nil {
			return err
		}
		names := s.ConsumerNames(h.ctx)
		n := 0
		for name := range names.Name() {
			n++
			info := h.consumer(name)
			if info.NumPending != 0 || info.NumAckPending != 0 {
				return fmt.Errorf("consumer %s: %d pending, %d unacknowledged", name, info.NumPending, info.NumAckPending)
			}
		}
		if n == 0 {
			return fmt.Errorf("no consumer")
		}
		return names.Err()
	})
}

func (h *harness) consumer(durable string) *jetstream.ConsumerInfo {
	h.t.Helper()
	c, err := h.js.Consumer(h.ctx, schemas.StreamLegacyRequests, durable)
	if err != nil {
		h.t.Fatalf("consumer %s: %v", durable, err)
	}
	info, err := c.Info(h.ctx)
	if err != nil {
		h.t.Fatalf("consumer %s info: %v", durable, err)
	}
	return info
}

func eventually(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not reached within %v: %v", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// seen is one request a test server received.
type seen struct {
	Method, Path, Query string
	Header              http.Header
	Body                string
}

// cubeServer is a real HTTP server recording what it receives; handler (if
// set) answers, else it answers 200 with a JSON body naming the path.
type cubeServer struct {
	*httptest.Server
	name    string
	mu      sync.Mutex
	got     []seen
	handler func(w http.ResponseWriter, r *http.Request)
}

func newCube(t *testing.T, name string) *cubeServer {
	t.Helper()
	return newCubeAt(t, name, "")
}

// newCubeAt starts a cubeServer listening on addr ("" = a free port).
func newCubeAt(t *testing.T, name, addr string) *cubeServer {
	t.Helper()
	c := &cubeServer{name: name}
	c.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.got = append(c.got, seen{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: string(body)})
		h := c.handler
		c.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"from":%q,"path":%q}`, c.name, r.URL.Path)
	}))
	if addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("cube %s: listen on %s: %v", name, addr, err)
		}
		c.Server.Listener.Close()
		c.Server.Listener = l
	}
	c.Server.Start()
	t.Cleanup(c.Close)
	return c
}

func (c *cubeServer) requests() []seen {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]seen(nil), c.got...)
}

func (c *cubeServer) setHandler(h func(w http.ResponseWriter, r *http.Request)) {
	c.mu.Lock()
	c.handler = h
	c.mu.Unlock()
}
