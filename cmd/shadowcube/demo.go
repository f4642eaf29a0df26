package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/cdc"
	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/demo"
	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/pgcluster"
	"github.com/heal7/shadowcube/internal/process"
	"github.com/heal7/shadowcube/internal/routes"
	"github.com/heal7/shadowcube/publisher"
	"github.com/heal7/shadowcube/shadow"
)

const demoHelp = `demo runs the whole shadowcube pipeline on this machine with no set-up and
prints the verdict:

  1. a throwaway PostgreSQL cluster from the local binaries (initdb into a temp
     dir, wal_level=logical), or the server of SHADOWCUBE_SOURCE_DATABASE_URL,
     with three databases: the legacy one, the saju cube's and the mismatch store;
  2. an embedded NATS JetStream server (or SHADOWCUBE_NATS_URL);
  3. the systems under test: legacy saju + saju cube, legacy AI + AI cube
     (internal/demo), on free loopback ports;
  4. cdc (legacy database → CDC stream) and sync (CDC → the cube's database,
     mapping saju_records to cube.saju_charts);
  5. a tap in front of each legacy service (capture into LEGACY_REQUESTS);
  6. the shadow replayer (waits on the cube's sync watermark, replays to the
     cubes) and the comparator (saju by domain with cause tags, AI by accuracy);
  7. the traffic generator sending realistic births through the taps;
  8. when every pair is compared: reconcile of legacy vs cube database, and the
     mismatch summary by route, cause and signature.
  9. with --rollout N (two-way sync from the start: reverse cdc on the cube
     database and sync with the reverse mapping into legacy): the flag
     rollout.saju at N%, more traffic (rolled-out users are served by the saju
     cube, which writes charts to its own database; reverse sync brings them
     to legacy saju_records), then the rollback drill of 'shadowcube rollout
     rollback', its output at the end of the summary (exit 1 unless clean).

Everything it started is stopped and removed at the end (databases it created
on a given server are dropped).

Environment:
  SHADOWCUBE_SOURCE_DATABASE_URL  use this PostgreSQL server instead of a throwaway cluster
  SHADOWCUBE_NATS_URL             use this NATS server instead of an embedded one`

type demoOptions struct {
	Requests  int           // births sent (each: a saju chart + an AI analysis)
	Rate      float64       // births per second (0 = as fast as possible)
	EdgeShare float64       // share of births in the divergence zones
	AIDrop    float64       // AI cube error rate above legacy, in percentage points
	Timeout   time.Duration // longest wait for the pipeline to drain
	Rollout   int           // after the shadow phase, serve this percent of saju users from the cube (0: no rollout phase; demo_rollout.go)
}

func newDemoCmd() *cobra.Command {
	opts := demoOptions{Requests: 400, EdgeShare: 0.2, AIDrop: 2, Timeout: 3 * time.Minute}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole pipeline on embedded infrastructure and print the verdict",
		Long:  demoHelp + commonEnvHelp,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Rollout < 0 || opts.Rollout > 100 {
				return usageError{fmt.Errorf("--rollout must be in 0..100 (got %d)", opts.Rollout)}
			}
			if opts.Requests <= 0 || opts.EdgeShare < 0 || opts.EdgeShare > 1 || opts.AIDrop < 0 || opts.AIDrop > 50 {
				return usageError{fmt.Errorf("--requests must be > 0, --edge-share in 0..1, --ai-drop in 0..50 (got %d, %v, %v)", opts.Requests, opts.EdgeShare, opts.AIDrop)}
			}
			ctx, e, err := setup(cmd, "demo", true)
			if err != nil {
				return err
			}
			defer e.Close()
			var env struct {
				SourceURL string `envconfig:"SOURCE_DATABASE_URL"`
			}
			if err := process.Load(&env); err != nil {
				return err
			}
			return runDemo(ctx, e, env.SourceURL, opts)
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Requests, "requests", opts.Requests, "births to send (each makes a saju request and an AI request)")
	f.Float64Var(&opts.Rate, "rate", opts.Rate, "births per second (0 = as fast as the services allow)")
	f.Float64Var(&opts.EdgeShare, "edge-share", opts.EdgeShare, "share of births in the known divergence zones (0..1)")
	f.Float64Var(&opts.AIDrop, "ai-drop", opts.AIDrop, "AI cube accuracy drop in percentage points (2 passes the gate rule, 8 fails it)")
	f.DurationVar(&opts.Timeout, "timeout", opts.Timeout, "longest wait for the pipeline to compare every pair")
	f.IntVar(&opts.Rollout, "rollout", 0, "then serve this percent of saju users from the cube with two-way sync, and run the rollback drill (0: no rollout phase)")
	return cmd
}

// demoStack is the running pipeline; stop releases everything, newest first.
type demoStack struct {
	log     *slog.Logger
	out     io.Writer
	stops   []func()
	wg      sync.WaitGroup
	errMu   sync.Mutex
	runErrs []error
}

func (s *demoStack) onStop(f func()) { s.stops = append(s.stops, f) }

func (s *demoStack) stop() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
	s.stops = nil
}

// goRun runs a stage until ctx ends; an error stops the demo.
func (s *demoStack) goRun(ctx context.Context, cancel context.CancelFunc, name string, run func(context.Context) error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := run(ctx); err != nil && ctx.Err() == nil {
			s.errMu.Lock()
			s.runErrs = append(s.runErrs, fmt.Errorf("%s: %w", name, err))
			s.errMu.Unlock()
			cancel()
		}
	}()
}

func (s *demoStack) err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return errors.Join(s.runErrs...)
}

func (s *demoStack) step(format string, args ...any) {
	fmt.Fprintf(s.out, "demo: "+format+"\n", args...)
}

// runDemo runs the pipeline end to end and writes its report to e.Stdout.
func runDemo(parent context.Context, e *Env, sourceURL string, opts demoOptions) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	st := &demoStack{log: e.Log, out: e.Stderr}
	defer func() {
		cancel()
		st.wg.Wait()
		st.stop()
	}()

	dbs, err := demoDatabases(ctx, st, sourceURL)
	if err != nil {
		return err
	}

	if e.Common.NATSURL == "" && e.Common.NATSDataDir == "" {
		dir, err := os.MkdirTemp("", "shadowcube-demo-nats-")
		if err != nil {
			return fmt.Errorf("demo: NATS data dir: %w", err)
		}
		st.onStop(func() { os.RemoveAll(dir) })
		e.Common.NATSDataDir = dir
	}
	nc, err := natsx.Connect(ctx, e.Common.NATS("shadowcube-demo"), e.Log)
	if err != nil {
		return err
	}
	st.onStop(nc.Close)
	st.step("NATS JetStream at %s", nc.ClientURL())

	svc, err := startDemoServices(ctx, st, dbs, opts)
	if err != nil {
		return err
	}

	if opts.Rollout > 0 {
		if err := demoPrepareRollout(ctx, dbs); err != nil {
			return err
		}
	}
	// cdc: legacy database → CDC stream (without what reverse sync wrote).
	reader, err := cdc.New(cdc.Config{DatabaseURL: dbs.legacy, Slot: demoForwardSlot, Publication: "shadowcube_demo", IgnoreOrigins: []string{demoReverseSlot}}, cdc.Deps{JetStream: nc.JS, Logger: e.Base.With("stage", "cdc"), Registerer: e.Reg})
	if err != nil {
		return err
	}
	st.goRun(ctx, cancel, "cdc", reader.Run)
	st.step("cdc reading the legacy database (slot shadowcube_demo)")

	// sync: CDC stream → the saju cube's database.
	mapping, err := consumers.ParseMapping("demo-mapping.yaml", []byte(demoForwardMapping(opts)))
	if err != nil {
		return err
	}
	syncer, err := consumers.New(consumers.Config{Mapping: mapping, SourceURL: dbs.legacy, TargetURLs: map[string]string{"saju-cube": dbs.cube}},
		consumers.Deps{JetStream: nc.JS, Logger: e.Base.With("stage", "sync"), Registerer: e.Reg})
	if err != nil {
		return err
	}
	st.onStop(func() { syncer.Close() })
	st.goRun(ctx, cancel, "sync", syncer.Run)
	st.step("sync applying to the saju cube's database (target saju-cube)")
	var reverse *consumers.Mapping
	if opts.Rollout > 0 {
		if reverse, err = startDemoReverse(ctx, cancel, st, e, nc, dbs); err != nil {
			return err
		}
	}

	// routes for tap, shadow and compare.
	rf, err := routes.Parse("demo-routes.yaml", []byte(fmt.Sprintf(demoRoutes, svc.sajuCube, svc.aiCube)))
	if err != nil {
		return err
	}

	// taps in front of the legacy services.
	if err := publisher.EnsureStream(ctx, nc.JS, natsx.StreamSettings{}); err != nil {
		return err
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	sajuTap, err := startDemoTap(ctx, cancel, st, nc, rf, "saju", svc.legacySaju, secret, e, opts.Rollout > 0)
	if err != nil {
		return err
	}
	aiTap, err := startDemoTap(ctx, cancel, st, nc, rf, "ai", svc.legacyAI, secret, e, false)
	if err != nil {
		return err
	}

	// comparator, fused with the replayer (shadow --compare): verdicts are
	// stored in process, results still published to SHADOW_RESULTS.
	cmpr, err := comparator.New(comparator.Config{Routes: routeRules(rf)})
	if err != nil {
		return err
	}
	store, err := comparator.OpenStore(ctx, comparator.StoreConfig{DatabaseURL: dbs.store})
	if err != nil {
		return err
	}
	st.onStop(func() { store.Close() })
	fused, err := comparator.NewFused(comparator.FusedConfig{},
		comparator.Deps{JetStream: nc.JS, Comparator: cmpr, Store: store, Logger: e.Base.With("stage", "compare"), Registerer: e.Reg})
	if err != nil {
		return err
	}
	st.onStop(func() { fused.Close() }) // after the replayer's Close (stops run newest first)

	// shadow replayer.
	rep, err := shadow.New(shadow.Config{Routes: rf, LookupEnv: os.LookupEnv, Sink: fused},
		shadow.Deps{JetStream: nc.JS, Logger: e.Base.With("stage", "shadow"), Registerer: e.Reg})
	if err != nil {
		return err
	}
	st.onStop(func() { rep.Close() })
	st.goRun(ctx, cancel, "shadow", rep.Run)
	st.step("shadow replaying to the cubes (freshness barrier on sync target saju-cube), comparing in process (fused) and storing verdicts in the mismatch store")

	// traffic.
	gen := demo.DefaultGenConfig()
	gen.EdgeShare = opts.EdgeShare
	st.step("sending %d births through the taps (saju chart + AI analysis each)", opts.Requests)
	sum, err := demo.RunLoad(ctx, demo.LoadConfig{SajuURL: sajuTap, AIURL: aiTap, Count: opts.Requests, Rate: opts.Rate, Concurrency: 4, Gen: gen})
	if err != nil {
		return errors.Join(fmt.Errorf("demo: traffic: %w", err), st.err())
	}
	sent := int64(0)
	for _, r := range sum.Routes {
		sent += int64(r.Sent)
	}
	st.step("sent %d requests in %s; waiting for every pair to be compared", sent, sum.Elapsed.Round(time.Millisecond))

	summary, err := waitCompared(ctx, st, store, cmpr, sent, opts.Timeout)
	if err != nil {
		return errors.Join(err, st.err())
	}

	reports, err := demoReconcile(ctx, mapping, dbs)
	if err != nil {
		return errors.Join(err, st.err())
	}
	var drill strings.Builder
	drillClean := true
	if opts.Rollout > 0 {
		more := func(ctx context.Context) (int, error) {
			g := demo.DefaultGenConfig()
			g.Seed++ // other births and users than the shadow phase
			s, err := demo.RunLoad(ctx, demo.LoadConfig{SajuURL: sajuTap, AIURL: aiTap, Count: max(50, opts.Requests/2), Rate: opts.Rate, Concurrency: 4, Gen: g})
			if err != nil {
				return 0, err
			}
			return s.Births, nil
		}
		if drillClean, err = runDemoRollout(ctx, st, nc, dbs, mapping, reverse, opts.Rollout, more, &drill); err != nil {
			return errors.Join(fmt.Errorf("demo: rollout: %w", err), st.err())
		}
	}

	out := e.Stdout
	fmt.Fprintln(out, "== traffic")
	fmt.Fprintf(out, "births %d (lunar %d, unknown hour %d), users %d, requests %d\n", sum.Births, sum.Lunar, sum.UnknownHr, sum.Users, sent)
	fmt.Fprintln(out, "== reconcile (legacy saju_records vs cube.saju_charts)")
	diffs := 0
	for _, r := range reports {
		fmt.Fprintf(out, "%s → %s: source rows %d, target rows %d, differences %d\n", r.Source, r.Table, r.SourceRows, r.TargetRows, r.Differences)
		diffs += r.Differences
	}
	fmt.Fprintln(out, "== mismatch summary")
	if err := summary.WriteText(out); err != nil {
		return err
	}
	if _, err := io.WriteString(out, drill.String()); err != nil {
		return err
	}
	if err := st.err(); err != nil {
		return err
	}
	if !drillClean {
		return &exitError{code: 1, err: errors.New("demo: the rollback drill is not clean")}
	}
	if diffs > 0 {
		return &exitError{code: 1, err: fmt.Errorf("demo: reconcile found %d differences between legacy and cube", diffs)}
	}
	return nil
}

type demoDBs struct{ legacy, cube, store string }

// demoDatabases starts a throwaway cluster (or uses sourceURL's server) and
// creates the demo's three databases.
func demoDatabases(ctx context.Context, st *demoStack, sourceURL string) (demoDBs, error) {
	admin := sourceURL
	prefix := "heal7_"
	if admin == "" {
		st.step("starting a throwaway PostgreSQL cluster (wal_level=logical)")
		cl, err := pgcluster.Start(ctx, pgcluster.Options{})
		if err != nil {
			return demoDBs{}, fmt.Errorf("demo: %w (or set SHADOWCUBE_SOURCE_DATABASE_URL)", err)
		}
		st.onStop(cl.Close)
		admin = cl.URL("postgres")
		st.step("PostgreSQL on 127.0.0.1:%d (data in %s)", cl.Port, cl.DataDir)
	} else {
		prefix = fmt.Sprintf("shadowcube_demo_%d_", time.Now().Unix())
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return demoDBs{}, fmt.Errorf("demo: connect to PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	cfg := conn.Config()
	dbURL := func(name string) string {
		return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
	}
	if cfg.Password != "" {
		dbURL = func(name string) string {
			return fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Password, cfg.Host, cfg.Port, name)
		}
	}
	var out demoDBs
	for _, d := range []struct {
		name string
		url  *string
	}{{"legacy", &out.legacy}, {"saju_cube", &out.cube}, {"compare_store", &out.store}} {
		name := prefix + d.name
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
			return demoDBs{}, fmt.Errorf("demo: create database %s: %w", name, err)
		}
		*d.url = dbURL(name)
		if sourceURL != "" {
			st.onStop(func() { dropDemoDatabase(admin, name) })
		}
	}
	return out, nil
}

func dropDemoDatabase(admin, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`, name)
	conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
}

type demoServices struct{ legacySaju, sajuCube, legacyAI, aiCube string }

func startDemoServices(ctx context.Context, st *demoStack, dbs demoDBs, opts demoOptions) (demoServices, error) {
	var out demoServices
	pool := func(url string) (*pgxpool.Pool, error) {
		p, err := pgxpool.New(ctx, url)
		if err != nil {
			return nil, fmt.Errorf("demo: database pool: %w", err)
		}
		st.onStop(p.Close)
		return p, nil
	}
	legacyDB, err := pool(dbs.legacy)
	if err != nil {
		return out, err
	}
	cubeDB, err := pool(dbs.cube)
	if err != nil {
		return out, err
	}
	legacy, err := demo.NewLegacySaju(demo.SajuConfig{DB: legacyDB, Log: st.log})
	if err != nil {
		return out, err
	}
	cube, err := demo.NewSajuCube(demo.SajuConfig{DB: cubeDB, Log: st.log})
	if err != nil {
		return out, err
	}
	for _, s := range []*demo.SajuService{legacy, cube} {
		if err := s.EnsureSchema(ctx); err != nil {
			return out, fmt.Errorf("demo: %w", err)
		}
	}
	legacyAI, err := demo.NewLegacyAI(demo.AIConfig{ErrorRate: demo.DefaultLegacyAIErrorRate, Log: st.log})
	if err != nil {
		return out, err
	}
	aiCube, err := demo.NewAICube(demo.AIConfig{ErrorRate: demo.DefaultLegacyAIErrorRate + opts.AIDrop/100, Log: st.log})
	if err != nil {
		return out, err
	}
	for _, s := range []struct {
		name string
		h    http.Handler
		url  *string
	}{{demo.LegacySajuName, legacy, &out.legacySaju}, {demo.SajuCubeName, cube, &out.sajuCube}, {demo.LegacyAIName, legacyAI, &out.legacyAI}, {demo.AICubeName, aiCube, &out.aiCube}} {
		u, err := serveLoopback(st, s.h)
		if err != nil {
			return out, fmt.Errorf("demo: %s: %w", s.name, err)
		}
		*s.url = u
		st.step("%s at %s", s.name, u)
	}
	return out, nil
}

// serveLoopback serves h on a free loopback port until the demo stops.
func serveLoopback(st *demoStack, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	st.onStop(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
	return "http://" + ln.Addr().String(), nil
}

func startDemoTap(ctx context.Context, cancel context.CancelFunc, st *demoStack, nc *natsx.Conn, rf *routes.File, service, upstream string, secret []byte, e *Env, followFlag bool) (string, error) {
	svc, _ := rf.Service(service)
	reg := prometheus.WrapRegistererWith(prometheus.Labels{"tap": service}, e.Reg)
	c, err := publisher.New(publisher.Config{Service: service, Routes: svc, Privacy: publisher.PrivacyConfig{Secret: secret}},
		publisher.Deps{Conn: nc.NC, Logger: e.Base.With("stage", "tap"), Registerer: reg})
	if err != nil {
		return "", err
	}
	st.onStop(func() { c.Close() })
	st.goRun(ctx, cancel, "tap "+service, c.Run)
	tcfg := publisher.TapConfig{Upstream: upstream}
	var flags *publisher.Flags
	var fw *publisher.FlagWatcher
	if followFlag {
		if flags, err = publisher.OpenFlags(ctx, nc.JS); err != nil {
			return "", err
		}
		if fw, err = publisher.WatchFlag(ctx, flags.KV(), service, e.Log); err != nil {
			return "", err
		}
		tcfg.Rollout = fw
	}
	tap, err := publisher.NewTap(c, tcfg)
	if err != nil {
		return "", err
	}
	st.onStop(func() { tap.Close() })
	if followFlag {
		demoRolloutTap(ctx, st, tap, fw, flags)
	}
	u, err := serveLoopback(st, tap)
	if err != nil {
		return "", err
	}
	st.step("tap for %s at %s → %s", service, u, upstream)
	return u, nil
}

// waitCompared polls the mismatch store until every sent request has a
// verdict, or the timeout passes (then it reports what is missing).
func waitCompared(ctx context.Context, st *demoStack, store *comparator.Store, cmpr *comparator.Comparator, want int64, timeout time.Duration) (*comparator.Summary, error) {
	deadline := time.Now().Add(timeout)
	last := int64(-1)
	for {
		sum, err := store.Summary(ctx, 10, comparator.AIConfig{}, comparator.NoiseConfig{})
		if err != nil {
			return nil, fmt.Errorf("demo: read the mismatch store: %w", err)
		}
		got := int64(0)
		for _, r := range sum.Routes {
			got += r.Pairs
		}
		if got >= want {
			st.step("all %d pairs compared", got)
			return sum, nil
		}
		if got != last {
			st.step("compared %d of %d pairs", got, want)
			last = got
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("demo: only %d of %d pairs compared within %s (see the log above for the stage that is behind)", got, want, timeout)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("demo: stopped while waiting for verdicts: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// demoReconcile compares the legacy and cube databases through the mapping,
// waiting for sync to settle first.
func demoReconcile(ctx context.Context, m *consumers.Mapping, dbs demoDBs) ([]consumers.TableReport, error) {
	src, err := consumers.ConnectSource(ctx, dbs.legacy) // the pinned session settings, as the reconcile command
	if err != nil {
		return nil, fmt.Errorf("demo: reconcile: %w", err)
	}
	defer src.Close(context.Background())
	dst, err := consumers.ConnectSource(ctx, dbs.cube)
	if err != nil {
		return nil, fmt.Errorf("demo: reconcile: %w", err)
	}
	defer dst.Close(context.Background())
	reps, err := consumers.Reconcile(ctx, consumers.ReconcileConfig{Mapping: m, Target: m.Target("saju-cube"), Source: src, Dest: dst, Settle: 20 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("demo: reconcile: %w", err)
	}
	return reps, nil
}

// demoMapping is docs/architecture.md's saju mapping: the legacy flat saju_records row
// becomes the cube's nested document.
var demoMapping = strings.TrimSpace(`
source: {database_url_env: SHADOWCUBE_SOURCE_DATABASE_URL, slot: shadowcube_demo}
targets:
  - name: saju-cube
    database_url_env: SAJU_CUBE_DATABASE_URL
    tables:
      - source: public.saju_records
        target: cube.saju_charts
        key: [id]
        columns:
          id: id
          user_id: user_id
          birth_info: "jsonb_build_object('year', birth_year, 'month', birth_month, 'day', birth_day, 'hour', birth_hour, 'solar_calendar', is_solar)"
          saju_chart: "jsonb_build_object('year_pillar', year_pillar, 'month_pillar', month_pillar, 'day_pillar', day_pillar, 'hour_pillar', hour_pillar)"
          interpretation: interpretation
          created_at: created_at
`)

// demoRoutes is the demo's routes file; %s are the cube URLs (saju, AI).
const demoRoutes = `
services:
  - name: saju
    cube_url: %s
    sync_target: saju-cube
    freshness_wait: 5s
    timeout: 5s
    routes:
      - route: /api/saju/chart
        methods: [POST]
        replay: dry-run
        compare: {kind: saju, presence: [$.interpretation]}
      - route: /api/saju/chart/{id}
        methods: [GET]
        replay: idempotent-only
        compare: {kind: saju, presence: [$.interpretation]}
  - name: ai
    cube_url: %s
    timeout: 5s
    routes:
      - route: /api/ai/analyze
        methods: [POST]
        replay: always
        compare: {kind: ai, label: $.label, score: $.confidence, truth_header: X-Truth-Label}
`
