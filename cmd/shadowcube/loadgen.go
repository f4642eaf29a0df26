package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/demo"
	"github.com/heal7/shadowcube/internal/wiring"
)

func newLoadgenCmd() *cobra.Command {
	var e wiring.LoadgenEnv
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
term, 23:00–00:59, 1954–1961 (UTC+8:30) and 1987–1988 (summer time).` + wiring.EnvHelp("Environment (flags win)", &e) + commonEnvHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := load(cmd, &e); err != nil {
				return err
			}
			cfg, err := e.Config()
			if err != nil {
				return usageError{err}
			}
			ctx, p, err := setup(cmd, "loadgen", false)
			if err != nil {
				return err
			}
			defer p.Close()
			p.Log.Info("loadgen starting", "saju_url", cfg.SajuURL, "ai_url", cfg.AIURL, "rate", cfg.Rate, "seed", cfg.Gen.Seed)
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
	wiring.BindFlags(cmd.Flags(), &e)
	return cmd
}
