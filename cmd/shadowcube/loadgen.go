package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/demo"
	"github.com/heal7/shadowcube/internal/process"
)

// loadgenEnv is the traffic generator's configuration (flags override).
type loadgenEnv struct {
	SajuURL     string        `envconfig:"LOADGEN_SAJU_URL" default:"http://localhost:8000"`
	AIURL       string        `envconfig:"LOADGEN_AI_URL"`
	Rate        float64       `envconfig:"LOADGEN_RATE" min:"0" default:"20"`
	Duration    time.Duration `envconfig:"LOADGEN_DURATION" min:"0s"`
	Count       int           `envconfig:"LOADGEN_COUNT" min:"0"`
	Concurrency int           `envconfig:"LOADGEN_CONCURRENCY" min:"1" default:"4"`
	EdgeShare   float64       `envconfig:"LOADGEN_EDGE_SHARE" min:"0" max:"1" default:"0.1"`
	LunarShare  float64       `envconfig:"LOADGEN_LUNAR_SHARE" min:"0" max:"1" default:"0.1"`
	UnknownTime float64       `envconfig:"LOADGEN_UNKNOWN_TIME_SHARE" min:"0" max:"1" default:"0.05"`
	Users       int           `envconfig:"LOADGEN_USERS" min:"1" default:"20000"`
	Seed        uint64        `envconfig:"LOADGEN_SEED" min:"0"`
	DryRun      bool          `envconfig:"LOADGEN_DRY_RUN"`
}

func newLoadgenCmd() *cobra.Command {
	var env loadgenEnv
	cmd := &cobra.Command{
		Use:   "loadgen",
		Short: "Send realistic saju (and AI) traffic to the legacy services, through the tap or directly",
		Long: `loadgen generates realistic births and sends them as POST /api/saju/chart with the
user id in X-User-Id; with --ai-url each chart answer is then sent to POST /api/ai/analyze
with X-Truth-Label (the chart's dominant element by the reference rule). Point the URLs
at the tap to capture the traffic, or at the services directly. It prints a summary:
births by kind, statuses and latency per route, AI answers equal to the truth.

Births: years 1930–2010, uniform date and minute, a share entered in the lunar calendar,
a share without birth time; plus a share of edge cases, equally: within ±3 h of a jie
term, 23:00–00:59, 1954–1961 (UTC+8:30) and 1987–1988 (summer time).

Flags and environment (flags win):
  --saju-url URL          SHADOWCUBE_LOADGEN_SAJU_URL     base URL for charts (default http://localhost:8000)
  --ai-url URL            SHADOWCUBE_LOADGEN_AI_URL       base URL for AI analysis (default: none sent)
  --rate N                SHADOWCUBE_LOADGEN_RATE         births per second; 0 = as fast as possible (default 20)
  --duration D            SHADOWCUBE_LOADGEN_DURATION     run length, e.g. 30s
  --count N               SHADOWCUBE_LOADGEN_COUNT        number of births (one of duration/count is required)
  --concurrency N         SHADOWCUBE_LOADGEN_CONCURRENCY  parallel requests (default 4)
  --edge-share S          SHADOWCUBE_LOADGEN_EDGE_SHARE   share of edge-case births, 0..1 (default 0.1)
  --lunar-share S         SHADOWCUBE_LOADGEN_LUNAR_SHARE  share of lunar-calendar input (default 0.1)
  --unknown-time-share S  SHADOWCUBE_LOADGEN_UNKNOWN_TIME_SHARE  share without birth time (default 0.05)
  --users N               SHADOWCUBE_LOADGEN_USERS        user population size (default 20000)
  --seed N                SHADOWCUBE_LOADGEN_SEED         random seed; 0 = from the clock (default 0)
  --dry-run               SHADOWCUBE_LOADGEN_DRY_RUN      send X-Shadow-Request: 1 (services write nothing)` + commonEnvHelp,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			var fromEnv loadgenEnv
			if err := process.Load(&fromEnv); err != nil {
				return err
			}
			// Environment values fill the flags the user did not set.
			fl := cmd.Flags()
			set := func(name string, apply func()) {
				if !fl.Changed(name) {
					apply()
				}
			}
			set("saju-url", func() { env.SajuURL = fromEnv.SajuURL })
			set("ai-url", func() { env.AIURL = fromEnv.AIURL })
			set("rate", func() { env.Rate = fromEnv.Rate })
			set("duration", func() { env.Duration = fromEnv.Duration })
			set("count", func() { env.Count = fromEnv.Count })
			set("concurrency", func() { env.Concurrency = fromEnv.Concurrency })
			set("edge-share", func() { env.EdgeShare = fromEnv.EdgeShare })
			set("lunar-share", func() { env.LunarShare = fromEnv.LunarShare })
			set("unknown-time-share", func() { env.UnknownTime = fromEnv.UnknownTime })
			set("users", func() { env.Users = fromEnv.Users })
			set("seed", func() { env.Seed = fromEnv.Seed })
			set("dry-run", func() { env.DryRun = fromEnv.DryRun })
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			seed := env.Seed
			if seed == 0 {
				seed = uint64(time.Now().UnixNano())
			}
			cfg := demo.LoadConfig{
				SajuURL: env.SajuURL, AIURL: env.AIURL, Rate: env.Rate, Duration: env.Duration, Count: env.Count,
				Concurrency: env.Concurrency, DryRun: env.DryRun,
				Gen: demo.GenConfig{Seed: seed, EdgeShare: env.EdgeShare, LunarShare: env.LunarShare, UnknownTimeShare: env.UnknownTime, Users: env.Users},
			}
			if err := cfg.Validate(); err != nil {
				return usageError{err}
			}
			ctx, e, err := setup(cmd, "loadgen", false)
			if err != nil {
				return err
			}
			defer e.Close()
			e.Log.Info("loadgen starting", "saju_url", cfg.SajuURL, "ai_url", cfg.AIURL, "rate", cfg.Rate, "seed", seed)
			sum, err := demo.RunLoad(ctx, cfg)
			if err != nil {
				return err
			}
			sum.Print(cmd.OutOrStdout())
			if sum.Births > 0 && sum.Routes["/api/saju/chart"].Status[200] == 0 {
				return fmt.Errorf("loadgen: no chart request succeeded (first error: %s)", sum.FirstError)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&env.SajuURL, "saju-url", "", "base URL for POST /api/saju/chart")
	f.StringVar(&env.AIURL, "ai-url", "", "base URL for POST /api/ai/analyze")
	f.Float64Var(&env.Rate, "rate", 0, "births per second (0 = unlimited)")
	f.DurationVar(&env.Duration, "duration", 0, "run length")
	f.IntVar(&env.Count, "count", 0, "number of births")
	f.IntVar(&env.Concurrency, "concurrency", 0, "parallel requests")
	f.Float64Var(&env.EdgeShare, "edge-share", 0, "share of edge-case births")
	f.Float64Var(&env.LunarShare, "lunar-share", 0, "share of lunar input")
	f.Float64Var(&env.UnknownTime, "unknown-time-share", 0, "share without birth time")
	f.IntVar(&env.Users, "users", 0, "user population")
	f.Uint64Var(&env.Seed, "seed", 0, "random seed (0 = clock)")
	f.BoolVar(&env.DryRun, "dry-run", false, "send X-Shadow-Request: 1")
	return cmd
}
