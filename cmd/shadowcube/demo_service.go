package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/demo"
	"github.com/heal7/shadowcube/internal/process"
)

// demoServiceEnv is the demo services' configuration.
type demoServiceEnv struct {
	Listen      string   `envconfig:"DEMO_LISTEN"`
	DatabaseURL string   `envconfig:"DEMO_DATABASE_URL"`
	SourceURL   string   `envconfig:"SOURCE_DATABASE_URL"`
	ErrorRate   *float64 `envconfig:"DEMO_AI_ERROR_RATE" min:"0" max:"1"`
	ZiRule      string   `envconfig:"DEMO_ZI_RULE"`
}

var demoDefaultListen = map[string]string{
	demo.LegacySajuName: ":8000",
	demo.SajuCubeName:   ":8001",
	demo.LegacyAIName:   ":8002",
	demo.AICubeName:     ":8003",
}

func newDemoServiceCmd() *cobra.Command {
	var listen, dbURL, ziRule string
	var errRate float64
	cmd := &cobra.Command{
		Use:   "demo-service <legacy-saju|saju-cube|legacy-ai|ai-cube>",
		Short: "Run one demo system under test (legacy saju, saju cube, legacy AI, AI cube)",
		Long: `demo-service runs one of the demo systems under test over HTTP:

  legacy-saju  POST /api/saju/chart, GET /api/saju/chart/{id}; Hanja output; legacy conventions
               (23:30 day change, wall clock fed to the UTC+8 term table, fixed UTC+9);
               writes table saju_records (created when missing)
  saju-cube    the same API in Hangul with the cube's conventions (midnight day change, true
               UTC+8 term basis, Asia/Seoul clock history); reads and writes cube.saju_charts
               (created when missing; the sync stage fills it from saju_records)
  legacy-ai    POST /api/ai/analyze: dominant-element label of a chart (error rate 0.03)
  ai-cube      the same with a larger error rate (0.05 = 2 pp less accurate; 0.11 = 8 pp)

Every service serves /healthz and Prometheus /metrics on its own listen address and
accepts X-Shadow-Request: 1 to compute without writing (dry-run). Without a database
a saju service answers only dry-runs (others get 503).

Flags and environment:
  --listen ADDR         SHADOWCUBE_DEMO_LISTEN   listen address (default :8000 legacy-saju,
                                                 :8001 saju-cube, :8002 legacy-ai, :8003 ai-cube)
  --database-url URL    SHADOWCUBE_DEMO_DATABASE_URL  the saju service's PostgreSQL;
                        legacy-saju falls back to SHADOWCUBE_SOURCE_DATABASE_URL
  --error-rate R        SHADOWCUBE_DEMO_AI_ERROR_RATE  AI services: share of charts mislabelled, 0..1
                        (default 0.03 legacy-ai, 0.05 ai-cube)
  --zi-rule RULE        SHADOWCUBE_DEMO_ZI_RULE  saju services: when the day pillar changes, midnight,
                        23:30 or 23:00 (default 23:30 legacy-saju, midnight saju-cube; 23:00 makes
                        the zi-hour divergence touch 1/24 of birth times instead of 1/48)
SHADOWCUBE_METRICS_ADDR is not used: the metrics are on the service's own address.` + commonEnvHelp,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{demo.LegacySajuName, demo.SajuCubeName, demo.LegacyAIName, demo.AICubeName},
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if _, ok := demoDefaultListen[name]; !ok {
				return usageError{fmt.Errorf("unknown demo service %q: want legacy-saju, saju-cube, legacy-ai or ai-cube", name)}
			}
			var env demoServiceEnv
			if err := process.Load(&env); err != nil {
				return err
			}
			if !cmd.Flags().Changed("listen") {
				listen = env.Listen
				if listen == "" {
					listen = demoDefaultListen[name]
				}
			}
			if !cmd.Flags().Changed("database-url") {
				dbURL = env.DatabaseURL
				if dbURL == "" && name == demo.LegacySajuName {
					dbURL = env.SourceURL
				}
			}
			if !cmd.Flags().Changed("error-rate") {
				errRate = demo.DefaultLegacyAIErrorRate
				if name == demo.AICubeName {
					errRate = demo.DefaultAICubeErrorRate
				}
				if env.ErrorRate != nil {
					errRate = *env.ErrorRate
				}
			}
			if !cmd.Flags().Changed("zi-rule") {
				ziRule = env.ZiRule
			}
			var conv *demo.Conventions
			if ziRule != "" {
				r, err := demo.ParseZiRule(ziRule)
				if err != nil {
					return usageError{err}
				}
				c := demo.LegacyConventions
				if name == demo.SajuCubeName {
					c = demo.CubeConventions
				}
				c.Zi = r
				conv = &c
			}
			ctx, e, err := setup(cmd, "demo-"+name, false)
			if err != nil {
				return err
			}
			defer e.Close()
			h, err := buildDemoService(ctx, e, name, dbURL, errRate, conv)
			if err != nil {
				return err
			}
			return serveDemo(ctx, e, name, listen, h)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "listen address (see below)")
	cmd.Flags().StringVar(&dbURL, "database-url", "", "PostgreSQL URL of a saju service")
	cmd.Flags().Float64Var(&errRate, "error-rate", 0, "AI services: error rate 0..1")
	cmd.Flags().StringVar(&ziRule, "zi-rule", "", "saju services: midnight, 23:30 or 23:00")
	return cmd
}

func buildDemoService(ctx context.Context, e *Env, name, dbURL string, errRate float64, conv *demo.Conventions) (http.Handler, error) {
	switch name {
	case demo.LegacyAIName, demo.AICubeName:
		cfg := demo.AIConfig{ErrorRate: errRate, Registry: e.Reg, Log: e.Log}
		if name == demo.LegacyAIName {
			return demo.NewLegacyAI(cfg)
		}
		return demo.NewAICube(cfg)
	}
	cfg := demo.SajuConfig{Registry: e.Reg, Log: e.Log, Conventions: conv}
	if dbURL != "" {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		pool, err := pgxpool.New(pctx, dbURL)
		if err != nil {
			return nil, fmt.Errorf("%s: database: %w", name, err)
		}
		e.OnClose(pool.Close)
		cfg.DB = pool
	} else {
		e.Log.Warn("no database configured: only dry-run requests (X-Shadow-Request: 1) are answered")
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

func serveDemo(ctx context.Context, e *Env, name, listen string, h http.Handler) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("%s: listen on %s: %w", name, listen, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	e.Log.Info("demo service listening", "service", name, "addr", ln.Addr().String())
	select {
	case err := <-done:
		return fmt.Errorf("%s: serve: %w", name, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
