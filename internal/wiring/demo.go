package wiring

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heal7/shadowcube/comparator"
	"github.com/heal7/shadowcube/consumers"
	"github.com/heal7/shadowcube/internal/demo"
	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/pgcluster"
)

// DemoOptions are the knobs of `shadowcube demo`.
type DemoOptions struct {
	Requests  int           // births sent (each: a saju chart + an AI analysis)
	Rate      float64       // births per second (0 = as fast as possible)
	EdgeShare float64       // share of births in the divergence zones
	AIDrop    float64       // AI cube error rate above legacy, in percentage points
	Timeout   time.Duration // longest wait for the pipeline to drain
	SourceURL string        // PostgreSQL server to create the demo databases on ("" = a throwaway cluster)
	Rollout   int           // after the shadow phase, serve this percent of saju users from the cube (0: no rollout phase; demo_rollout.go)
}

// DemoReport is what the demo found.
type DemoReport struct {
	Load      *demo.Summary
	Sent      int64
	Reconcile []consumers.TableReport
	Summary   *comparator.Summary
	Drill     string // the rollout phase's report (--rollout)
	Clean     bool   // the rollback drill was clean (true without --rollout)
}

// demoStack is the running demo: its group and its progress lines.
type demoStack struct {
	*Group
	log *slog.Logger
	out io.Writer
}

func (s *demoStack) onStop(f func()) { s.OnStop(f) }

func (s *demoStack) step(format string, args ...any) {
	fmt.Fprintf(s.out, "demo: "+format+"\n", args...)
}

// DemoSystems are the demo's systems under test: its three databases and
// the legacy and cube services (saju with a database, AI without).
type DemoSystems struct {
	LegacyDB, CubeDB, StoreDB              string // database URLs
	LegacySaju, SajuCube, LegacyAI, AICube string // service base URLs
}

// StartDemoSystems creates the demo databases (on a throwaway cluster, or
// on sourceURL's server) and starts the four services under g; progress
// lines go to progress. aiDrop is the AI cube's accuracy drop in
// percentage points.
func StartDemoSystems(ctx context.Context, g *Group, log *slog.Logger, progress io.Writer, sourceURL string, aiDrop float64) (DemoSystems, error) {
	return startDemoSystems(ctx, &demoStack{Group: g, log: log, out: progress}, sourceURL, aiDrop)
}

func startDemoSystems(ctx context.Context, st *demoStack, sourceURL string, aiDrop float64) (DemoSystems, error) {
	dbs, err := demoDatabases(ctx, st, sourceURL)
	if err != nil {
		return DemoSystems{}, err
	}
	svc, err := startDemoServices(ctx, st, dbs, aiDrop)
	if err != nil {
		return DemoSystems{}, err
	}
	return DemoSystems{LegacyDB: dbs.legacy, CubeDB: dbs.cube, StoreDB: dbs.store,
		LegacySaju: svc.legacySaju, SajuCube: svc.sajuCube, LegacyAI: svc.legacyAI, AICube: svc.aiCube}, nil
}

// RunDemo runs the whole pipeline on this machine, every stage built by the
// same builders the subcommands use (cdc, sync, tap, shadow, compare,
// reconcile), sends the traffic and waits for every verdict. Progress goes
// to p.Stderr; everything started is stopped before it returns.
func RunDemo(parent context.Context, p *Process, opts DemoOptions) (rep *DemoReport, err error) {
	st := &demoStack{Group: NewGroup(parent), log: p.Log, out: p.Stderr}
	defer func() {
		if serr := st.Stop(); err == nil && serr != nil {
			err = serr
		}
	}()
	ctx := st.Context()
	sys, err := startDemoSystems(ctx, st, opts.SourceURL, opts.AIDrop)
	if err != nil {
		return nil, err
	}
	dbs := demoDBs{legacy: sys.LegacyDB, cube: sys.CubeDB, store: sys.StoreDB}
	svc := demoServices{legacySaju: sys.LegacySaju, sajuCube: sys.SajuCube, legacyAI: sys.LegacyAI, aiCube: sys.AICube}
	if p.Common.NATSURL == "" && p.Common.NATSDataDir == "" {
		dir, err := os.MkdirTemp("", "shadowcube-demo-nats-")
		if err != nil {
			return nil, fmt.Errorf("demo: NATS data dir: %w", err)
		}
		st.onStop(func() { os.RemoveAll(dir) })
		p.Common.NATSDataDir = dir
	}
	nc, err := natsx.Connect(ctx, p.Common.NATS("shadowcube-demo"), p.Log)
	if err != nil {
		return nil, err
	}
	st.onStop(nc.Close)
	st.step("NATS JetStream at %s", nc.ClientURL())
	// What the builders open for the demo (the mismatch store, the fused
	// sink) is released after the stages stopped and before NATS closes.
	p = p.Child()
	st.onStop(p.Close)

	if opts.Rollout > 0 {
		if err := demoPrepareRollout(ctx, dbs); err != nil {
			return nil, err
		}
	}
	// cdc: legacy database → CDC stream (without what reverse sync wrote).
	var ce CDCEnv
	if err := Load(&ce, nil); err != nil {
		return nil, err
	}
	ce.SourceDatabaseURL, ce.Slot, ce.Publication, ce.IgnoreOrigins = dbs.legacy, demoForwardSlot, "shadowcube_demo", demoReverseSlot
	cfg, err := ce.Config(p.StartupTimeout())
	if err != nil {
		return nil, err
	}
	reader, err := NewCDC(p.Stage("cdc"), nc, cfg)
	if err != nil {
		return nil, err
	}
	st.Run("cdc", reader)
	st.step("cdc reading the legacy database (slot shadowcube_demo)")

	// sync: CDC stream → the saju cube's database.
	mapping, err := consumers.ParseMapping("demo-mapping.yaml", []byte(demoForwardMapping(opts)))
	if err != nil {
		return nil, err
	}
	m := &Mapping{Mapping: mapping, SourceURL: dbs.legacy, TargetURLs: map[string]string{"saju-cube": dbs.cube}}
	var se SyncEnv
	if err := Load(&se, nil); err != nil {
		return nil, err
	}
	se.Targets = nil
	syncer, err := NewSync(p.Stage("sync"), nc, &se, m)
	if err != nil {
		return nil, err
	}
	st.Run("sync", syncer)
	st.step("sync applying to the saju cube's database (target saju-cube)")
	var reverse *Mapping
	if opts.Rollout > 0 {
		if reverse, err = startDemoReverse(st, p, nc, dbs); err != nil {
			return nil, err
		}
	}

	// routes for tap, shadow and compare: a file, read as the commands read theirs.
	dir, err := os.MkdirTemp("", "shadowcube-demo-")
	if err != nil {
		return nil, err
	}
	st.onStop(func() { os.RemoveAll(dir) })
	routesFile := filepath.Join(dir, "demo-routes.yaml")
	if err := os.WriteFile(routesFile, []byte(fmt.Sprintf(DemoRoutes, svc.sajuCube, svc.aiCube)), 0o600); err != nil {
		return nil, err
	}

	// taps in front of the legacy services.
	secret := make([]byte, 32)
	rand.Read(secret)
	tapURL := map[string]string{}
	for _, s := range []struct{ name, upstream string }{{"saju", svc.legacySaju}, {"ai", svc.legacyAI}} {
		var te TapEnv
		if err := Load(&te, nil); err != nil {
			return nil, err
		}
		te.Service, te.RoutesFile, te.Upstream, te.UserKeySecret = s.name, routesFile, s.upstream, hex.EncodeToString(secret)
		tp := p.Stage("tap")
		t, err := NewTap(te, TapDeps{Logger: tp.Log, Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"tap": s.name}, p.Reg),
			Connect: func(context.Context) (*natsx.Conn, error) { return nc, nil }, SharedConn: true, Instance: "demo-tap"})
		if err != nil {
			return nil, err
		}
		st.Run("tap "+s.name, t)
		if tapURL[s.name], err = st.ServeLoopback(t.Handler); err != nil {
			return nil, err
		}
		st.step("tap for %s at %s → %s", s.name, tapURL[s.name], s.upstream)
	}

	// comparator, fused with the replayer (shadow --compare): verdicts are
	// stored in process, results still published to SHADOW_RESULTS.
	var cme CompareEnv
	if err := Load(&cme, nil); err != nil {
		return nil, err
	}
	cme.RoutesFile, cme.StoreURL = routesFile, dbs.store
	cmpr, err := cme.Comparator()
	if err != nil {
		return nil, err
	}
	fused, store, err := NewFused(ctx, p, nc, &cme, cmpr)
	if err != nil {
		return nil, err
	}
	// shadow replayer.
	var she ShadowEnv
	if err := Load(&she, nil); err != nil {
		return nil, err
	}
	she.RoutesFile = routesFile
	shcfg, err := she.Config()
	if err != nil {
		return nil, err
	}
	shcfg.Sink = fused
	rep2, err := NewShadow(p.Stage("shadow"), nc, shcfg)
	if err != nil {
		return nil, err
	}
	st.Run("shadow", rep2)
	st.step("shadow replaying to the cubes (freshness barrier on sync target saju-cube), comparing in process (fused) and storing verdicts in the mismatch store")

	// traffic.
	gen := demo.DefaultGenConfig()
	gen.EdgeShare = opts.EdgeShare
	st.step("sending %d births through the taps (saju chart + AI analysis each)", opts.Requests)
	sum, err := demo.RunLoad(ctx, demo.LoadConfig{SajuURL: tapURL["saju"], AIURL: tapURL["ai"], Count: opts.Requests, Rate: opts.Rate, Concurrency: 4, Gen: gen})
	if err != nil {
		return nil, fmt.Errorf("demo: traffic: %w", err)
	}
	out := &DemoReport{Load: sum}
	for _, r := range sum.Routes {
		out.Sent += int64(r.Sent)
	}
	st.step("sent %d requests in %s; waiting for every pair to be compared", out.Sent, sum.Elapsed.Round(time.Millisecond))
	if out.Summary, err = waitCompared(ctx, st, store, cmpr, out.Sent, opts.Timeout); err != nil {
		return nil, err
	}
	out.Reconcile, err = Reconcile(ctx, p.Stage("reconcile"), m, []ReconcileTarget{{Target: m.Target("saju-cube")}}, consumers.ReconcileConfig{Settle: 20 * time.Second}, "")
	if err != nil {
		return nil, fmt.Errorf("demo: reconcile: %w", err)
	}
	out.Clean = true
	if opts.Rollout > 0 {
		more := func(ctx context.Context) (int, error) {
			g := demo.DefaultGenConfig()
			g.Seed++ // other births and users than the shadow phase
			s, err := demo.RunLoad(ctx, demo.LoadConfig{SajuURL: tapURL["saju"], AIURL: tapURL["ai"], Count: max(50, opts.Requests/2), Rate: opts.Rate, Concurrency: 4, Gen: g})
			if err != nil {
				return 0, err
			}
			return s.Births, nil
		}
		var drill strings.Builder
		if out.Clean, err = runDemoRollout(ctx, st, nc, dbs, m, reverse, opts.Rollout, more, &drill); err != nil {
			return nil, fmt.Errorf("demo: rollout: %w", err)
		}
		out.Drill = drill.String()
	}
	return out, st.Err()
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

func startDemoServices(ctx context.Context, st *demoStack, dbs demoDBs, aiDrop float64) (demoServices, error) {
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
	aiCube, err := demo.NewAICube(demo.AIConfig{ErrorRate: demo.DefaultLegacyAIErrorRate + aiDrop/100, Log: st.log})
	if err != nil {
		return out, err
	}
	for _, s := range []struct {
		name string
		h    http.Handler
		url  *string
	}{{demo.LegacySajuName, legacy, &out.legacySaju}, {demo.SajuCubeName, cube, &out.sajuCube}, {demo.LegacyAIName, legacyAI, &out.legacyAI}, {demo.AICubeName, aiCube, &out.aiCube}} {
		u, err := st.ServeLoopback(s.h)
		if err != nil {
			return out, fmt.Errorf("demo: %s: %w", s.name, err)
		}
		*s.url = u
		st.step("%s at %s", s.name, u)
	}
	return out, nil
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

// DemoMapping is docs/architecture.md's saju mapping: the legacy flat saju_records row
// becomes the cube's nested document.
var DemoMapping = strings.TrimSpace(`
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

// DemoRoutes is the demo's routes file; %s are the cube URLs (saju, AI).
const DemoRoutes = `
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
