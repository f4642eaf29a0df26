package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/natsx"
	"github.com/heal7/shadowcube/internal/wiring"
)

func newShadowCmd() *cobra.Command {
	var e wiring.ShadowEnv
	return configured("shadow", "shadow", "Replay captured legacy requests against the cubes and publish the answer pairs", &e, `
  The variables the routes file names in credentials (token_env, secret_env).`,
		func(cmd *cobra.Command, _ []string) error {
			cfg, err := e.Config()
			if err != nil {
				return err
			}
			return runStage(cmd, "shadow", func(_ context.Context, p *Env, conn *natsx.Conn) (wiring.Stage, error) {
				return wiring.NewShadow(p, conn, cfg)
			})
		})
}
