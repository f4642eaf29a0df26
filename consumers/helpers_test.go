package consumers

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/schemas"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

// env is one test's world: a source DB, a target DB, embedded NATS with the CDC stream.
type env struct {
	t      testing.TB
	log    *slog.Logger // printed when the test fails
	ctx    context.Context
	srcURL string
	dstURL string
	src    *pgx.Conn
	dst    *pgx.Conn
	nats   *testenv.NATS
	nc     *nats.Conn
	js     jetstream.JetStream
	// minCopy is the appliers' MinCopyRows (setapply.go); 0: 1, so every
	// run of new rows of a plainly mapped table goes through COPY in tests;
	// negative: the production default (benchmarks)
	minCopy int
	// tune, when set, adjusts each applier's settings after the above
	tune func(*ApplierConfig)
}

func newEnv(t testing.TB) *env {
	t.Helper()
	pg := testenv.Postgres(t)
	e := &env{t: t, ctx: testenv.Context(t, 5*time.Minute), log: testenv.Logger(t)}
	e.srcURL = pg.NewDatabase(t)
	e.dstURL = pg.NewDatabase(t)
	e.src = connectPinned(t, e.srcURL)
	e.dst = connectPinned(t, e.dstURL)
	e.nats = testenv.StartNATS(t)
	e.nc, e.js = e.nats.Connect(t)
	e.ensureStreams()
	return e
}

func (e *env) ensureStreams() {
	cfg, err := natsx.StreamConfig(schemas.StreamCDC, natsx.StreamSettings{})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := natsx.EnsureStream(e.ctx, e.js, cfg); err != nil {
		e.t.Fatal(err)
	}
}

func connectPinned(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	c, err := ConnectSource(context.Background(), url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func (e *env) exec(c *pgx.Conn, sql string, args ...any) {
	e.t.Helper()
	if _, err := c.Exec(e.ctx, sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

// writeMapping writes a mapping file with DST_URL_ENV as the target variable.
func writeMapping(t testing.TB, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mapping.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func (e *env) loadMapping(text string) *Mapping {
	e.t.Helper()
	m, err := LoadMapping(writeMapping(e.t, text))
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// startSync validates m and runs the sync of all its targets (all on dstURL)
// until the returned stop is called.
func (e *env) startSync(m *Mapping, maxBatch int) (s *Sync, stop func()) {
	e.t.Helper()
	urls := map[string]string{}
	for _, t := range m.Targets {
		urls[t.Name] = e.dstURL
	}
	s, err := New(Config{Mapping: m, SourceURL: e.srcURL, TargetURLs: urls, MaxBatch: maxBatch, RetryMax: 500 * time.Millisecond}, Deps{JetStream: e.js, Logger: e.log})
	if err != nil {
		e.t.Fatal(err)
	}
	s.tune = func(c *ApplierConfig) {
		c.PollStop = 100 * time.Millisecond
		c.RetryMin = 20 * time.Millisecond
		switch {
		case e.minCopy == 0:
			c.MinCopyRows = 1
		case e.minCopy > 0:
			c.MinCopyRows = e.minCopy
		}
		if e.tune != nil {
			e.tune(c)
		}
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	// Run connects first: wait until the appliers exist (tests read them).
	for deadline := time.Now().Add(60 * time.Second); len(s.Appliers()) == 0; {
		select {
		case err := <-done:
			cancel()
			e.t.Fatalf("sync run: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			e.t.Fatal("sync did not connect to its targets within 60s")
		}
	}
	var once atomic.Bool
	stop = func() {
		if once.Swap(true) {
			return
		}
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("sync run: %v", err)
		}
		s.Close()
	}
	e.t.Cleanup(stop)
	return s, stop
}

// fakeCDC publishes change events the way the cdc reader does, built from the
// source database's own text values.
type fakeCDC struct {
	e    *env
	slot string
	db   string
	lsn  schemas.LSN
}

func (e *env) cdc(slot string) *fakeCDC {
	return &fakeCDC{e: e, slot: slot, db: "legacy", lsn: 0x1000000}
}

// row reads one source row as exact text with the column types.
func (f *fakeCDC) row(table string, where string, args ...any) (schemas.Row, []schemas.Column) {
	f.e.t.Helper()
	schema, tb, _ := splitQualified(table)
	cols, err := tableColumns(f.e.ctx, f.e.src, schema, tb)
	if err != nil || len(cols) == 0 {
		f.e.t.Fatalf("columns of %s: %v", table, err)
	}
	var sel []string
	var scs []schemas.Column
	for _, c := range cols {
		sel = append(sel, quoteIdent(c.Name)+"::text")
		scs = append(scs, schemas.Column{Name: c.Name, Type: c.Type, Key: c.Key})
	}
	vals := make([]*string, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	q := fmt.Sprintf("SELECT %s FROM %s WHERE %s", strings.Join(sel, ", "), table, where)
	if err := f.e.src.QueryRow(f.e.ctx, q, args...).Scan(ptrs...); err != nil {
		f.e.t.Fatalf("%s: %v", q, err)
	}
	r := schemas.Row{}
	for i, c := range cols {
		r[c.Name] = vals[i]
	}
	return r, scs
}

func keyOf(cols []schemas.Column) []string {
	var k []string
	for _, c := range cols {
		if c.Key {
			k = append(k, c.Name)
		}
	}
	return k
}

func (f *fakeCDC) ev(op schemas.Op, table string, n, o schemas.Row, cols []schemas.Column) schemas.ChangeEvent {
	schema, tb, _ := splitQualified(table)
	return schemas.ChangeEvent{Op: op, Schema: schema, Table: tb, New: n, Old: o, Columns: cols, Key: keyOf(cols)}
}

// tx publishes events as one source transaction at the next LSN.
func (f *fakeCDC) tx(evs ...schemas.ChangeEvent) schemas.LSN {
	f.e.t.Helper()
	f.lsn += 0x100
	now := time.Now().UTC()
	for i := range evs {
		ev := &evs[i]
		ev.V, ev.Slot, ev.DB = schemas.Version, f.slot, f.db
		ev.CommitLSN, ev.TxID, ev.Index, ev.TxSize, ev.CommitTime = f.lsn, uint32(f.lsn), i, len(evs), now
		f.publish(ev, fmt.Sprintf("%s:%s:%d", f.slot, f.lsn, i))
	}
	return f.lsn
}

func (f *fakeCDC) publish(ev *schemas.ChangeEvent, id string) {
	f.e.t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		f.e.t.Fatal(err)
	}
	msg := nats.NewMsg(schemas.ChangeSubject(ev.DB, ev.Schema, ev.Table))
	msg.Data = data
	if id != "" {
		msg.Header.Set(jetstream.MsgIDHeader, id)
	}
	if _, err := f.e.js.PublishMsg(f.e.ctx, msg); err != nil {
		f.e.t.Fatalf("publish: %v", err)
	}
}

// waitCheckpoint waits until target's checkpoint reaches lsn.
func (e *env) waitCheckpoint(target, slot string, lsn schemas.LSN, within time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		cp, err := ReadCheckpoint(e.ctx, e.dst, target, slot)
		if err == nil && cp.LSN >= lsn {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("target %s checkpoint %s did not reach %s within %s (err %v)", target, cp.LSN, lsn, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tableText returns every row of a table as text, ordered by the first column.
func tableText(t testing.TB, c *pgx.Conn, table string) []string {
	t.Helper()
	rows, err := c.Query(context.Background(), fmt.Sprintf("SELECT t::text FROM %s t ORDER BY 1", table))
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func jsonMarshalEvent(ev *schemas.ChangeEvent) ([]byte, error) { return json.Marshal(ev) }
