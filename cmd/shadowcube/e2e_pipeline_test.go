package main

// Shared scaffolding of the end-to-end tests that run a service of their own
// through the whole pipeline (appschema_test.go, paperwork_test.go): tap,
// cdc, sync, shadow and compare built from their package APIs as runDemo
// builds them, on the package's throwaway PostgreSQL and an embedded NATS
// server of the test.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/internal/testenv"
	"github.com/heal7/shadowcube/internal/wiring"
	"github.com/heal7/shadowcube/publisher"
	"github.com/heal7/shadowcube/schemas"
)

// e2eConfig says what the pipeline runs on.
type e2eConfig struct {
	Slot      string            // cdc slot and publication (the mapping's source slot)
	Target    string            // the mapping target the cube database is
	SourceURL string            // legacy database
	TargetURL string            // cube database, as the role sync runs as
	StoreURL  string            // mismatch store database
	Mapping   string            // mapping YAML
	Routes    string            // routes YAML
	Upstreams map[string]string // service -> legacy base URL, one tap each

	SequenceInterval time.Duration // sync's periodic sequence pass (0: default)
}

// e2ePipeline is the running pipeline of one test.
type e2ePipeline struct {
	t       *testing.T
	cfg     e2eConfig
	ctx     context.Context
	cancel  context.CancelFunc
	st      *wiring.Group
	js      jetstream.JetStream
	reg     *prometheus.Registry
	logs    *testenv.Buffer // every stage's log (debug level)
	mapping *consumers.Mapping
	rf      *routes.File
	store   *comparator.Store
	taps    map[string]string // service -> tap URL
	storeDB *pgx.Conn         // the test's queries of the store

	syncDone    chan error   // sync's Run result
	syncStopped atomic.Bool  // Run returned before the test stopped the pipeline
	syncErr     atomic.Value // its error (string)
}

// startE2E starts cdc, sync, the taps, shadow and compare, each built by
// internal/wiring as the subcommands and the demo build them; everything
// stops when the test ends. The legacy and cube schemas must exist.
func startE2E(t *testing.T, cfg e2eConfig) *e2ePipeline {
	t.Helper()
	ctx, cancel := context.WithCancel(testenv.Context(t, 5*time.Minute))
	log, logs := testenv.CaptureLogger(t)
	p := &e2ePipeline{t: t, cfg: cfg, ctx: ctx, cancel: cancel, reg: prometheus.NewRegistry(), logs: logs,
		st: wiring.NewGroup(ctx), taps: map[string]string{}, syncDone: make(chan error, 1)}
	wp := &wiring.Process{Base: log, Log: log, Reg: p.reg, Stdout: io.Discard, Stderr: io.Discard}
	t.Cleanup(func() {
		cancel()
		p.st.Stop()
		wp.Close()
	})
	fail := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	load := func(spec any) {
		t.Helper()
		fail("defaults", wiring.Load(spec, nil))
	}

	n := testenv.StartNATS(t)
	nc, err := natsx.Connect(ctx, natsx.Config{URL: n.URL, Name: "e2e"}, log)
	fail("connect to NATS", err)
	p.st.OnStop(nc.Close)
	p.js = nc.JS

	// cdc: legacy database -> CDC stream.
	var ce wiring.CDCEnv
	load(&ce)
	ce.SourceDatabaseURL, ce.Slot, ce.Publication = cfg.SourceURL, cfg.Slot, cfg.Slot
	cdcCfg, err := ce.Config(10 * time.Second)
	fail("cdc config", err)
	reader, err := wiring.NewCDC(wp.Stage("cdc"), nc, cdcCfg)
	fail("cdc", err)
	p.st.Run("cdc", reader)

	// sync: CDC stream -> the cube's database.
	p.mapping, err = consumers.ParseMapping("mapping.yaml", []byte(cfg.Mapping))
	fail("mapping", err)
	var se wiring.SyncEnv
	load(&se)
	se.Targets = nil
	if cfg.SequenceInterval > 0 {
		se.SeqInterval = cfg.SequenceInterval
	}
	syncer, err := wiring.NewSync(wp.Stage("sync"), nc, &se, &wiring.Mapping{Mapping: p.mapping, SourceURL: cfg.SourceURL,
		TargetURLs: map[string]string{cfg.Target: cfg.TargetURL}})
	fail("sync", err)
	p.st.OnStop(func() { syncer.Close() })
	p.st.Go("sync", func(ctx context.Context) error {
		err := syncer.Run(ctx)
		if ctx.Err() == nil {
			p.syncStopped.Store(true)
			p.syncErr.Store(fmt.Sprint(err))
		}
		p.syncDone <- err
		return nil
	})

	// routes: tap, shadow and compare read the file as the commands do.
	p.rf, err = routes.Parse("routes.yaml", []byte(cfg.Routes))
	fail("routes", err)
	routesFile := filepath.Join(t.TempDir(), "routes.yaml")
	fail("routes file", os.WriteFile(routesFile, []byte(cfg.Routes), 0o600))

	// taps in front of the legacy services, echoing the capture id.
	secret := make([]byte, 32)
	rand.Read(secret)
	for service, upstream := range cfg.Upstreams {
		if _, ok := p.rf.Service(service); !ok {
			t.Fatalf("routes file has no service %q", service)
		}
		var te wiring.TapEnv
		load(&te)
		te.Service, te.RoutesFile, te.Upstream, te.EchoID, te.UserKeySecret = service, routesFile, upstream, true, hex.EncodeToString(secret)
		tap, err := wiring.NewTap(te, wiring.TapDeps{Logger: wp.Stage("tap").Log, Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"tap": service}, p.reg),
			Connect: func(context.Context) (*natsx.Conn, error) { return nc, nil }, SharedConn: true})
		fail("tap", err)
		p.st.Run("tap "+service, tap)
		u, err := p.st.ServeLoopback(tap.Handler)
		fail("tap listener", err)
		p.taps[service] = u
	}

	// shadow replayer.
	var she wiring.ShadowEnv
	load(&she)
	she.RoutesFile = routesFile
	shCfg, err := she.Config()
	fail("shadow config", err)
	rep, err := wiring.NewShadow(wp.Stage("shadow"), nc, shCfg)
	fail("shadow", err)
	p.st.Run("shadow", rep)

	// comparator.
	var cme wiring.CompareEnv
	load(&cme)
	cme.RoutesFile, cme.StoreURL = routesFile, cfg.StoreURL
	cmpr, err := cme.Comparator()
	fail("comparator", err)
	cons, store, err := wiring.NewCompare(ctx, wp.Stage("compare"), nc, &cme, cmpr)
	fail("comparator consumer", err)
	p.store = store
	p.st.Run("compare", cons)
	// sync connects in Run: the pipeline is up once its appliers exist (the
	// tests read its start-up log).
	for deadline := time.Now().Add(time.Minute); len(syncer.Appliers()) == 0; time.Sleep(10 * time.Millisecond) {
		if p.syncStopped.Load() {
			t.Fatalf("sync stopped at start-up: %v", p.syncErr.Load())
		}
		if time.Now().After(deadline) {
			t.Fatal("sync did not connect to its target within a minute")
		}
	}
	return p
}

// stageErr fails the test when a stage stopped on its own.
func (p *e2ePipeline) stageErr() {
	p.t.Helper()
	if p.syncStopped.Load() {
		p.t.Fatalf("sync stopped while the pipeline ran: %v", p.syncErr.Load())
	}
	if err := p.st.Err(); err != nil {
		p.t.Fatalf("a stage stopped: %v", err)
	}
}

// waitFor polls cond every 100ms until it holds, a stage stops, or within
// passes (then the test fails with what).
func (p *e2ePipeline) waitFor(within time.Duration, what func() string, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		p.stageErr()
		if time.Now().After(deadline) {
			p.t.Fatalf("not within %s: %s", within, what())
		}
		select {
		case <-p.ctx.Done():
			p.t.Fatalf("stopped while waiting: %s", what())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// storedPairs is the number of requests with a result (compared or
// skipped) in the store.
func (p *e2ePipeline) storedPairs() int64 {
	p.t.Helper()
	var n int64
	if err := p.storeConn().QueryRow(p.ctx, fmt.Sprintf("SELECT count(DISTINCT request_id) FROM %s.pairs", p.store.Schema())).Scan(&n); err != nil {
		p.t.Fatalf("count stored pairs: %v", err)
	}
	return n
}

// storeConn is a connection to the mismatch store for the test's queries.
func (p *e2ePipeline) storeConn() *pgx.Conn {
	if p.storeDB == nil {
		p.storeDB = testenv.Connect(p.t, p.cfg.StoreURL)
	}
	return p.storeDB
}

// waitAllStored waits until the store holds a result for each of want
// captured requests.
func (p *e2ePipeline) waitAllStored(want int64, within time.Duration) {
	p.t.Helper()
	var got int64
	p.waitFor(within, func() string { return fmt.Sprintf("%d of %d requests have a result in the mismatch store", got, want) },
		func() bool { got = p.storedPairs(); return got >= want })
}

// waitCaughtUp waits until the target's checkpoint passed the source's
// current WAL position at a whole stream transaction.
func (p *e2ePipeline) waitCaughtUp(within time.Duration) {
	p.t.Helper()
	src := testenv.Connect(p.t, p.cfg.SourceURL)
	dst := testenv.Connect(p.t, p.cfg.TargetURL)
	var walText string
	if err := src.QueryRow(p.ctx, "SELECT pg_current_wal_lsn()::text").Scan(&walText); err != nil {
		p.t.Fatal(err)
	}
	wal, err := schemas.ParseLSN(walText)
	if err != nil {
		p.t.Fatal(err)
	}
	var cp consumers.Checkpoint
	p.waitFor(within, func() string {
		return fmt.Sprintf("target %s checkpoint %s passing source WAL %s", p.cfg.Target, cp.LSN, wal)
	},
		func() bool {
			cp, err = consumers.ReadCheckpoint(p.ctx, dst, p.cfg.Target, p.cfg.Slot)
			return err == nil && cp.LSN >= wal && cp.Index == 1<<31-1
		})
}

// deadLetters lists the sync stage's dead letters.
func (p *e2ePipeline) deadLetters() []string {
	p.t.Helper()
	var out []string
	err := consumers.ListDLQ(p.ctx, p.js, func(m consumers.DLQMessage) error {
		out = append(out, fmt.Sprintf("seq %d: %s", m.Seq, m.Entry.Error))
		return nil
	})
	if err != nil {
		p.t.Fatalf("list the sync DLQ: %v", err)
	}
	return out
}

// reconcile compares the legacy and cube databases through the mapping,
// sequences included.
func (p *e2ePipeline) reconcile() []consumers.TableReport {
	p.t.Helper()
	src, err := consumers.ConnectSource(p.ctx, p.cfg.SourceURL)
	if err != nil {
		p.t.Fatal(err)
	}
	defer src.Close(context.Background())
	dst, err := consumers.ConnectSource(p.ctx, p.cfg.TargetURL)
	if err != nil {
		p.t.Fatal(err)
	}
	defer dst.Close(context.Background())
	reps, err := consumers.Reconcile(p.ctx, consumers.ReconcileConfig{Mapping: p.mapping, Target: p.mapping.Target(p.cfg.Target),
		Source: src, Dest: dst, Settle: 30 * time.Second})
	if err != nil {
		p.t.Fatalf("reconcile: %v", err)
	}
	return reps
}

// stop stops every stage and returns sync's Run result.
func (p *e2ePipeline) stop() error {
	p.t.Helper()
	p.stageErr()
	p.cancel()
	select {
	case err := <-p.syncDone:
		return err
	case <-time.After(time.Minute):
		p.t.Fatalf("sync did not return within a minute of the stop")
		return nil
	}
}

// ownerRole creates a LOGIN role that is not a superuser, owns the given
// tables of the database at dbURL and may create schemas in it (sync keeps
// its checkpoint in schema shadowcube), and returns dbURL as that role.
func ownerRole(t *testing.T, pg *testenv.PG, dbURL string, tables ...string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	db := strings.TrimPrefix(u.Path, "/")
	name := fmt.Sprintf("owner_%s", db)
	conn := testenv.Connect(t, dbURL)
	ctx := testenv.Context(t, time.Minute)
	stmts := []string{fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD 'pw' NOSUPERUSER", name), fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s", db, name)}
	for _, tb := range tables {
		stmts = append(stmts, fmt.Sprintf("ALTER TABLE %s OWNER TO %s", tb, name))
	}
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	t.Cleanup(func() { // before the database is dropped: hand its objects back, then drop the role
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, u := range []string{dbURL, pg.AdminURL()} {
			c, err := pgx.Connect(ctx, u)
			if err != nil {
				t.Logf("drop role %s: %v", name, err)
				return
			}
			q := fmt.Sprintf("REASSIGN OWNED BY %[1]s TO CURRENT_USER; DROP OWNED BY %[1]s", name)
			if u != dbURL {
				q = "DROP ROLE IF EXISTS " + name
			}
			if _, err := c.Exec(ctx, q); err != nil {
				t.Logf("drop role %s: %v", name, err)
			}
			c.Close(ctx)
		}
	})
	u.User = url.UserPassword(name, "pw")
	return u.String()
}

// e2eRequest is one request a test sent through a tap, and what its
// result in the mismatch store must be.
type e2eRequest struct {
	Name      string      // for messages
	CaptureID string      // the tap's capture id (the store's request_id)
	Operation string      // operation key the result must carry ("": none)
	Key       int64       // the record the request is about (0: none), for the test's own bookkeeping
	Write     bool        // must be stored as skipped by policy (reason write)
	Planted   string      // the one differing path of a planted difference ("": must match)
	Header    http.Header // sent with the request
}

// e2eClient sends requests through a tap and remembers them.
type e2eClient struct {
	t    *testing.T
	ctx  context.Context
	base string
	mu   sync.Mutex
	sent []e2eRequest
}

// call sends one request with a JSON body (nil: none) and decodes a JSON
// answer into out (nil: not decoded). A transport error or a status not in
// ok fails the test (returns false); a request the tap captured is
// remembered as r.
func (c *e2eClient) call(r e2eRequest, method, path string, body, out any, ok ...int) bool {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(c.ctx, method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Errorf("%s: %v", r.Name, err)
		return false
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Errorf("%s: read the answer: %v", r.Name, err)
		return false
	}
	if len(ok) == 0 {
		ok = []int{http.StatusOK}
	}
	if !slices.Contains(ok, resp.StatusCode) {
		c.t.Errorf("%s: status %d (%s)", r.Name, resp.StatusCode, truncate(string(raw), 300))
		return false
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Errorf("%s: answer %q: %v", r.Name, truncate(string(raw), 300), err)
			return false
		}
	}
	if r.CaptureID = resp.Header.Get(publisher.CaptureIDHeader); r.CaptureID != "" {
		c.mu.Lock()
		c.sent = append(c.sent, r)
		c.mu.Unlock()
	}
	return true
}

// requests returns what was sent and captured so far.
func (c *e2eClient) requests() []e2eRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sent)
}

// parallel runs fns on n goroutines and waits for them.
func parallel(n int, fns []func()) {
	var wg sync.WaitGroup
	var next atomic.Int64
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(fns)); i = next.Add(1) - 1 {
				fns[i]()
			}
		}()
	}
	wg.Wait()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// checkVerdicts checks the mismatch store against what was sent: one result
// per request and nothing else; every write skipped by policy (reason
// write); every read compared, not stale, no cube error, and matching
// unless planted, a planted one mismatching on exactly its planted path;
// the summary counting the skipped writes and one signature, of the planted
// differences. It returns the number of planted differences.
func (p *e2ePipeline) checkVerdicts(reqs []e2eRequest) int {
	t := p.t
	t.Helper()
	type stored struct {
		verdict, op, skipped, diffs, cubeErr string
		causes                               []string
		stale                                bool
		n                                    int
	}
	byID := map[string]*stored{}
	rows, err := p.storeConn().Query(p.ctx, fmt.Sprintf(`SELECT request_id, verdict, coalesce(operation, ''), coalesce(skipped, ''), causes,
		diffs::text, stale, coalesce(cube_error, '') FROM %s.pairs`, p.store.Schema()))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var r stored
		if err := rows.Scan(&id, &r.verdict, &r.op, &r.skipped, &r.causes, &r.diffs, &r.stale, &r.cubeErr); err != nil {
			t.Fatal(err)
		}
		if prev, dup := byID[id]; dup {
			prev.n++
			continue
		}
		r.n = 1
		byID[id] = &r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(byID) != len(reqs) {
		t.Errorf("the store holds results of %d requests, %d were sent", len(byID), len(reqs))
	}
	planted, writes := 0, 0
	for _, q := range reqs {
		r, ok := byID[q.CaptureID]
		switch {
		case !ok:
			t.Errorf("%s (capture %s): no result", q.Name, q.CaptureID)
			continue
		case r.n != 1:
			t.Errorf("%s (capture %s): %d results", q.Name, q.CaptureID, r.n)
		}
		if r.op != q.Operation {
			t.Errorf("%s: stored under operation %q, want %q", q.Name, r.op, q.Operation)
		}
		if q.Write {
			writes++
			if r.verdict != "skipped" || r.skipped != "write" {
				t.Errorf("write %s: verdict %s, skipped %q; want skipped (write)", q.Name, r.verdict, r.skipped)
			}
			continue
		}
		if r.stale || r.cubeErr != "" {
			t.Errorf("read %s: stale %v, cube error %q", q.Name, r.stale, r.cubeErr)
		}
		want := "match"
		if q.Planted != "" {
			want = "mismatch"
			planted++
		}
		if r.verdict != want {
			t.Errorf("read %s: verdict %s (causes %v, diffs %s); want %s", q.Name, r.verdict, r.causes, truncate(r.diffs, 300), want)
			continue
		}
		if q.Planted != "" {
			var diffs []struct{ Path string }
			if err := json.Unmarshal([]byte(r.diffs), &diffs); err != nil || len(diffs) != 1 || diffs[0].Path != q.Planted {
				t.Errorf("planted %s: diffs %s, want one at %s", q.Name, r.diffs, q.Planted)
			}
		}
	}
	if planted == 0 {
		t.Fatal("no planted difference was read: the test proves nothing about reporting")
	}

	// The summary a user reads says the same.
	sum, err := p.store.Summary(p.ctx, 20, comparator.AIConfig{}, comparator.NoiseConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var skipped, mismatches int64
	for _, k := range sum.Skipped {
		if k.Reason != "write" {
			t.Errorf("skipped for reason %q: %+v", k.Reason, k)
		}
		skipped += k.Count
	}
	if skipped != int64(writes) {
		t.Errorf("the summary counts %d writes skipped, %d were sent", skipped, writes)
	}
	for _, r := range sum.Routes {
		mismatches += r.Mismatches
		if r.Errors != 0 || r.Stale != 0 || r.MovedOn != 0 || r.Noise != 0 {
			t.Errorf("summary %s %s: %+v; want no error, stale, moved-on or noise-only pair", r.Route, r.Operation, r)
		}
	}
	if mismatches != int64(planted) {
		t.Errorf("the summary counts %d mismatches, %d were planted", mismatches, planted)
	}
	if len(sum.Signatures) != 1 || sum.Signatures[0].Count != int64(planted) {
		t.Errorf("signatures %+v; want one, of the %d planted differences", sum.Signatures, planted)
	}
	return planted
}

// checkSync checks that sync caught up with the source, never stopped and
// dead-lettered nothing, waits for two periodic sequence passes after that,
// and reconciles: no difference, sequences included (want: the number of
// tables and of sequences reconcile must have checked).
func (p *e2ePipeline) checkSync(tables, sequences int) {
	t := p.t
	t.Helper()
	p.waitCaughtUp(time.Minute)
	if dl := p.deadLetters(); len(dl) > 0 {
		t.Errorf("sync dead letters: %v", dl)
	}
	if n := testenv.MetricSum(p.t, p.reg, "shadowcube_sync_dlq_total"); n != 0 {
		t.Errorf("shadowcube_sync_dlq_total = %v", n)
	}
	// Sequences: a periodic pass that started after sync caught up moved
	// them (SequenceInterval); then reconcile is clean, sequences included.
	passes := testenv.MetricSum(p.t, p.reg, "shadowcube_sync_sequence_passes_total", "reason", "interval")
	p.waitFor(time.Minute, func() string { return "two sequence passes after catching up" }, func() bool {
		return testenv.MetricSum(p.t, p.reg, "shadowcube_sync_sequence_passes_total", "reason", "interval") >= passes+2
	})
	reps := p.reconcile()
	seqs := 0
	for _, r := range reps {
		t.Logf("reconcile %s: source rows %d, target rows %d, differences %d", r.Table, r.SourceRows, r.TargetRows, r.Differences)
		if r.Differences != 0 || r.SourceRows != r.TargetRows {
			b, _ := json.Marshal(r.Diffs)
			t.Errorf("reconcile %s: %d differences: %s", r.Table, r.Differences, truncate(string(b), 1000))
		}
		for _, s := range r.Sequences {
			seqs++
			b, _ := json.Marshal(s)
			t.Logf("reconcile %s: sequence %s", r.Table, b)
			if s.Behind || s.Error != "" || s.Skipped != "" {
				t.Errorf("reconcile %s: sequence %s", r.Table, b)
			}
		}
	}
	if len(reps) != tables || seqs != sequences {
		t.Errorf("reconcile covered %d tables and %d sequences, want %d and %d", len(reps), seqs, tables, sequences)
	}
}

// randomID is a request id of a test service's answers (noise to ignore).
func randomID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// cdcEvents decodes every change event now on the CDC stream.
func (p *e2ePipeline) cdcEvents() []schemas.ChangeEvent {
	p.t.Helper()
	s, err := p.js.Stream(p.ctx, schemas.StreamCDC)
	if err != nil {
		p.t.Fatalf("CDC stream: %v", err)
	}
	info, err := s.Info(p.ctx)
	if err != nil {
		p.t.Fatalf("CDC stream: %v", err)
	}
	last := info.State.LastSeq
	cons, err := s.OrderedConsumer(p.ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		p.t.Fatalf("CDC stream consumer: %v", err)
	}
	var out []schemas.ChangeEvent
	for seq := uint64(0); seq < last; {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			p.t.Fatalf("read the CDC stream: %v", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				p.t.Fatal(err)
			}
			seq = md.Sequence.Stream
			var ev schemas.ChangeEvent
			if err := json.Unmarshal(m.Data(), &ev); err != nil {
				p.t.Fatalf("CDC message %d: %v", seq, err)
			}
			out = append(out, ev)
		}
		if err := batch.Error(); err != nil {
			p.t.Fatalf("read the CDC stream: %v", err)
		}
		if n == 0 {
			p.t.Fatalf("CDC stream: read up to %d of %d", seq, last)
		}
	}
	return out
}
