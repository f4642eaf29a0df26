package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/demo"
	"github.com/heal7/shadowcube/internal/wiring"
)

func newLoadgenCmd() *cobra.Command {
	var e wiring.LoadgenEnv
	return configured("loadgen", "loadgen", "Send realistic saju (and AI) traffic to the legacy services, through the tap or directly", &e, "",
		func(cmd *cobra.Command, _ []string) error {
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
		})
}
