package main

import (
	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/demo"
	"github.com/heal7/shadowcube/internal/wiring"
)

func newDemoServiceCmd() *cobra.Command {
	var e wiring.DemoServiceEnv
	cmd := configured("demo-service", "demo-service <legacy-saju|saju-cube|legacy-ai|ai-cube>",
		"Run one demo system under test (legacy saju, saju cube, legacy AI, AI cube)", &e, "",
		func(cmd *cobra.Command, args []string) error {
			if err := e.Check(args[0]); err != nil {
				return usageError{err}
			}
			ctx, p, err := setup(cmd, "demo-"+args[0], false)
			if err != nil {
				return err
			}
			defer p.Close()
			return wiring.RunDemoService(ctx, p, args[0], &e)
		})
	cmd.Args = cobra.ExactArgs(1)
	cmd.ValidArgs = []string{demo.LegacySajuName, demo.SajuCubeName, demo.LegacyAIName, demo.AICubeName}
	return cmd
}
