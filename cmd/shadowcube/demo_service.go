package main

import (
	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/demo"
	"github.com/heal7/shadowcube/internal/wiring"
)

func newDemoServiceCmd() *cobra.Command {
	var e wiring.DemoServiceEnv
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
SHADOWCUBE_METRICS_ADDR is not used: the metrics are on the service's own address.` +
			wiring.EnvHelp("Environment", &e) + commonEnvHelp,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{demo.LegacySajuName, demo.SajuCubeName, demo.LegacyAIName, demo.AICubeName},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := load(cmd, &e); err != nil {
				return err
			}
			if err := e.Check(args[0]); err != nil {
				return usageError{err}
			}
			ctx, p, err := setup(cmd, "demo-"+args[0], false)
			if err != nil {
				return err
			}
			defer p.Close()
			return wiring.RunDemoService(ctx, p, args[0], &e)
		},
	}
	wiring.BindFlags(cmd.Flags(), &e)
	return cmd
}
