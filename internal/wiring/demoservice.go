package wiring

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/heal7/shadowcube/internal/demo"
)

// DemoServiceEnv is the configuration of `shadowcube demo-service`.
type DemoServiceEnv struct {
	Listen      string   `envconfig:"DEMO_LISTEN" flag:"listen" desc:"listen address (default :8000 legacy-saju, :8001 saju-cube, :8002 legacy-ai, :8003 ai-cube)"`
	DatabaseURL string   `envconfig:"DEMO_DATABASE_URL" flag:"database-url" desc:"the saju service's PostgreSQL; legacy-saju falls back to SHADOWCUBE_SOURCE_DATABASE_URL"`
	SourceURL   string   `envconfig:"SOURCE_DATABASE_URL" desc:"legacy-saju's PostgreSQL when SHADOWCUBE_DEMO_DATABASE_URL is not set"`
	ErrorRate   *float64 `envconfig:"DEMO_AI_ERROR_RATE" flag:"error-rate" min:"0" max:"1" desc:"AI services: share of charts mislabelled, 0..1 (default 0.03 legacy-ai, 0.05 ai-cube)"`
	ZiRule      string   `envconfig:"DEMO_ZI_RULE" flag:"zi-rule" desc:"saju services: when the day pillar changes, midnight, 23:30 or 23:00 (default 23:30 legacy-saju, midnight saju-cube; 23:00 makes the zi-hour divergence touch 1/24 of birth times instead of 1/48)"`
}

var demoDefaultListen = map[string]string{
	demo.LegacySajuName: ":8000",
	demo.SajuCubeName:   ":8001",
	demo.LegacyAIName:   ":8002",
	demo.AICubeName:     ":8003",
}

// resolve resolves e for the service called name: its listen
// address, database, error rate and conventions.
func (e *DemoServiceEnv) resolve(name string) (listen, dbURL string, errRate float64, conv *demo.Conventions, err error) {
	def, ok := demoDefaultListen[name]
	if !ok {
		return "", "", 0, nil, fmt.Errorf("unknown demo service %q: want legacy-saju, saju-cube, legacy-ai or ai-cube", name)
	}
	listen, dbURL = e.Listen, e.DatabaseURL
	if listen == "" {
		listen = def
	}
	if dbURL == "" && name == demo.LegacySajuName {
		dbURL = e.SourceURL
	}
	errRate = demo.DefaultLegacyAIErrorRate
	if name == demo.AICubeName {
		errRate = demo.DefaultAICubeErrorRate
	}
	if e.ErrorRate != nil {
		errRate = *e.ErrorRate
	}
	if e.ZiRule != "" {
		r, err := demo.ParseZiRule(e.ZiRule)
		if err != nil {
			return "", "", 0, nil, &FlagError{Flag: "zi-rule", Value: e.ZiRule, Msg: err.Error()}
		}
		c := demo.LegacyConventions
		if name == demo.SajuCubeName {
			c = demo.CubeConventions
		}
		c.Zi = r
		conv = &c
	}
	return listen, dbURL, errRate, conv, nil
}

// CheckDemoService rejects an unknown service name or a bad setting.
func (e *DemoServiceEnv) Check(name string) error {
	_, _, _, _, err := e.resolve(name)
	return err
}

// RunDemoService serves the demo system called name until ctx ends.
func RunDemoService(ctx context.Context, p *Process, name string, e *DemoServiceEnv) error {
	listen, dbURL, errRate, conv, err := e.resolve(name)
	if err != nil {
		return err
	}
	h, err := buildDemoService(ctx, p, name, dbURL, errRate, conv)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("%s: listen on %s: %w", name, listen, err)
	}
	p.Log.Info("demo service listening", "service", name, "addr", ln.Addr().String())
	return Serve(ctx, ln, h, p.ShutdownTimeout())
}

func buildDemoService(ctx context.Context, p *Process, name, dbURL string, errRate float64, conv *demo.Conventions) (http.Handler, error) {
	switch name {
	case demo.LegacyAIName, demo.AICubeName:
		cfg := demo.AIConfig{ErrorRate: errRate, Registry: p.Reg, Log: p.Log}
		if name == demo.LegacyAIName {
			return demo.NewLegacyAI(cfg)
		}
		return demo.NewAICube(cfg)
	}
	cfg := demo.SajuConfig{Registry: p.Reg, Log: p.Log, Conventions: conv}
	if dbURL != "" {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		pool, err := pgxpool.New(pctx, dbURL)
		if err != nil {
			return nil, fmt.Errorf("%s: database: %w", name, err)
		}
		p.OnClose(pool.Close)
		cfg.DB = pool
	} else {
		p.Log.Warn("no database configured: only dry-run requests (X-Shadow-Request: 1) are answered")
	}
	var svc *demo.SajuService
	var err error
	if name == demo.LegacySajuName {
		svc, err = demo.NewLegacySaju(cfg)
	} else {
		svc, err = demo.NewSajuCube(cfg)
	}
	if err != nil {
		return nil, err
	}
	if cfg.DB != nil {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := svc.EnsureSchema(sctx); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return svc, nil
}

// LoadgenEnv is the configuration of `shadowcube loadgen`.
type LoadgenEnv struct {
	SajuURL     string        `envconfig:"LOADGEN_SAJU_URL" flag:"saju-url" default:"http://localhost:8000" desc:"base URL for POST /api/saju/chart (the tap, or the service)"`
	AIURL       string        `envconfig:"LOADGEN_AI_URL" flag:"ai-url" desc:"base URL for POST /api/ai/analyze (none: no AI requests)"`
	Rate        float64       `envconfig:"LOADGEN_RATE" flag:"rate" min:"0" default:"20" desc:"births per second (0 = unlimited)"`
	Duration    time.Duration `envconfig:"LOADGEN_DURATION" flag:"duration" min:"0s" desc:"run length (0: until --count or interrupted)"`
	Count       int           `envconfig:"LOADGEN_COUNT" flag:"count" min:"0" desc:"number of births (0: until --duration or interrupted)"`
	Concurrency int           `envconfig:"LOADGEN_CONCURRENCY" flag:"concurrency" min:"1" default:"4" desc:"parallel requests"`
	EdgeShare   float64       `envconfig:"LOADGEN_EDGE_SHARE" flag:"edge-share" min:"0" max:"1" default:"0.1" desc:"share of edge-case births"`
	LunarShare  float64       `envconfig:"LOADGEN_LUNAR_SHARE" flag:"lunar-share" min:"0" max:"1" default:"0.1" desc:"share of births entered in the lunar calendar"`
	UnknownTime float64       `envconfig:"LOADGEN_UNKNOWN_TIME_SHARE" flag:"unknown-time-share" min:"0" max:"1" default:"0.05" desc:"share of births without birth time"`
	Users       int           `envconfig:"LOADGEN_USERS" flag:"users" min:"1" default:"20000" desc:"user population"`
	Seed        uint64        `envconfig:"LOADGEN_SEED" flag:"seed" min:"0" desc:"random seed (0 = the clock)"`
	DryRun      bool          `envconfig:"LOADGEN_DRY_RUN" flag:"dry-run" desc:"send X-Shadow-Request: 1"`
}

// Config builds and checks the load generator's configuration.
func (e *LoadgenEnv) Config() (demo.LoadConfig, error) {
	seed := e.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	cfg := demo.LoadConfig{
		SajuURL: e.SajuURL, AIURL: e.AIURL, Rate: e.Rate, Duration: e.Duration, Count: e.Count,
		Concurrency: e.Concurrency, DryRun: e.DryRun,
		Gen: demo.GenConfig{Seed: seed, EdgeShare: e.EdgeShare, LunarShare: e.LunarShare, UnknownTimeShare: e.UnknownTime, Users: e.Users},
	}
	return cfg, cfg.Validate()
}
