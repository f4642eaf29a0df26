package main

import (
	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/wiring"
)

func newServeCmd() *cobra.Command {
	var e wiring.ServeEnv
	return configured("serve", "serve", "Serve the report as a live web UI; accept signatures with SHADOWCUBE_UI_TOKEN", &e, "",
		func(cmd *cobra.Command, _ []string) error {
			crit, err := e.Check()
			if err != nil {
				return usageError{err}
			}
			ctx, p, err := setup(cmd, "serve", true)
			if err != nil {
				return err
			}
			defer p.Close()
			return wiring.ServeUI(ctx, p, &e, crit)
		})
}
