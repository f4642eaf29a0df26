package cdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

// env is one source database plus one NATS server.
type env struct {
	url  string
	nats *testenv.NATS
	js   jetstream.JetStream
	db   *pgx.Conn
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pg := testenv.Postgres(t)
	url := pg.NewDatabase(t)
	n := testenv.StartNATS(t)
	_, js := n.Connect(t)
	return &env{url: url, nats: n, js: js, db: testenv.Connect(t, url)}
}

func (e *env) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := e.db.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

// running is a Reader running in the background.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Fatalf("Run returned %v after cancel, want nil", r.err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return within 60s of cancel")
	}
}

func (e *env) config(slot string) Config {
	return Config{DatabaseURL: e.url, Slot: slot, Publication: "pub_" + slot, Heartbeat: 200 * time.Millisecond,
		StatusInterval: 200 * time.Millisecond, SlotCheck: time.Second}
}

func (e *env) start(t *testing.T, cfg Config) *running {
	t.Helper()
	return e.startWith(t, cfg, nil)
}

func (e *env) startWith(t *testing.T, cfg Config, reg prometheus.Registerer) *running {
	t.Helper()
	r, err := New(cfg, Deps{JetStream: e.js, Logger: testLogger(t), Registerer: reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &running{cancel: cancel, done: make(chan struct{})}
	go func() { run.err = r.Run(ctx); close(run.done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-run.done:
		case <-time.After(60 * time.Second):
		}
	})
	return run
}

// runErr runs a Reader expected to fail and returns its error.
func (e *env) runErr(t *testing.T, cfg Config) error {
	t.Helper()
	r, err := New(cfg, Deps{JetStream: e.js, Logger: testLogger(t)})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = r.Run(ctx)
	if ctx.Err() != nil {
		t.Fatalf("Run did not fail within 60s (err %v)", err)
	}
	return err
}

type got struct {
	seq uint64
	id  string
	ev  *schemas.ChangeEvent
}

// readAll returns every message of the CDC stream on subjects matching
// filter, in stream order.
func readAll(t testing.TB, js jetstream.JetStream, filter string) []got {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, schemas.StreamCDC)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	var out []got
	for {
		batch, err := c.FetchNoWait(10000)
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, _ := m.Metadata()
			ev, err := schemas.DecodeChangeEvent(m.Data())
			if err != nil {
				t.Fatalf("decode event %s: %v", m.Headers().Get(jetstream.MsgIDHeader), err)
			}
			out = append(out, got{seq: md.Sequence.Stream, id: m.Headers().Get(jetstream.MsgIDHeader), ev: &ev})
			if md.NumPending == 0 {
				return out
			}
		}
		if batch.Error() != nil && !errors.Is(batch.Error(), jetstream.ErrNoMessages) {
			t.Fatalf("fetch: %v", batch.Error())
		}
		if n == 0 {
			return out
		}
	}
}

// isHeartbeat reports whether ev is a row of the default heartbeat table.
func isHeartbeat(ev *schemas.ChangeEvent) bool {
	return ev.Schema+"."+ev.Table == DefaultHeartbeatTable
}

// heartbeatSubject matches the heartbeat events of every database.
const heartbeatSubject = "cdc.*." + DefaultHeartbeatTable

// userEvents drops heartbeat events.
func userEvents(gs []got) []got {
	var out []got
	for _, g := range gs {
		if !isHeartbeat(g.ev) {
			out = append(out, g)
		}
	}
	return out
}

// waitEvents waits until filter holds at least n non-heartbeat events.
func waitEvents(t testing.TB, js jetstream.JetStream, filter string, n int, d time.Duration) []got {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if subjectCount(t, js, filter) >= n {
			gs := userEvents(readAll(t, js, filter))
			if len(gs) >= n {
				return gs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %d events on %s, have %d", d, n, filter, len(userEvents(readAll(t, js, filter))))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// subjectCount is the number of messages on subjects matching filter.
func subjectCount(t testing.TB, js jetstream.JetStream, filter string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, schemas.StreamCDC)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0
	}
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	total := 0
	for subj, c := range info.State.Subjects {
		if !strings.HasSuffix(subj, "."+DefaultHeartbeatTable) {
			total += int(c)
		}
	}
	return total
}

func str(s string) *string { return &s }

func rowString(r schemas.Row) string {
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if r[k] == nil {
			fmt.Fprintf(&b, "%s=NULL ", k)
		} else {
			fmt.Fprintf(&b, "%s=%q ", k, *r[k])
		}
	}
	return b.String()
}

// connect opens another connection to the source database.
func (e *env) connect(t testing.TB) *pgx.Conn {
	t.Helper()
	return testenv.Connect(t, e.url)
}
