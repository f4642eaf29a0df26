package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/wiring"
)

func newCDCCmd() *cobra.Command {
	var e wiring.CDCEnv
	return configured("cdc", "cdc", "Stream the legacy PostgreSQL database's changes into the JetStream stream CDC", &e, "",
		func(cmd *cobra.Command, _ []string) error {
			cfg, err := e.Config(0)
			if err != nil {
				return err
			}
			return runStage(cmd, "cdc", func(_ context.Context, p *Env, conn *natsx.Conn) (wiring.Stage, error) {
				cfg.StartupTimeout = p.StartupTimeout()
				return wiring.NewCDC(p, conn, cfg)
			})
		})
}
