package main

import (
	"github.com/spf13/cobra"

	"github.com/heal7/shadowcube/internal/wiring"
)

func newSniffCmd() *cobra.Command {
	var se wiring.SniffEnv
	return configured("sniff", "sniff", "Capture the legacy service's HTTP/1.1 traffic passively from a network interface", &se, "",
		func(cmd *cobra.Command, _ []string) error {
			if err := se.Check(); err != nil {
				return usageError{err}
			}
			ctx, p, err := setup(cmd, "sniff", true)
			if err != nil {
				return err
			}
			defer p.Close()
			return wiring.RunSniff(ctx, p, se)
		})
}
