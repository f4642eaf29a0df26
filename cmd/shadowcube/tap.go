package main

import (
	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/wiring"
)

func newTapCmd() *cobra.Command {
	var te wiring.TapEnv
	return configured("tap", "tap", "Reverse proxy in front of the legacy service that captures traffic into JetStream", &te, "",
		func(cmd *cobra.Command, _ []string) error {
			if _, _, err := te.Check(); err != nil {
				return usageError{err}
			}
			ctx, p, err := setup(cmd, "tap", true)
			if err != nil {
				return err
			}
			defer p.Close()
			return wiring.RunTap(ctx, p, te)
		})
}
